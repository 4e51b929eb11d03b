"""The sign-up limit per client address (COTRAIN_SIGNUP_RATE_IP), counted in the cache."""

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from cotrain_site.client_ip import client_ip


class SignUpIpRateThrottle(SimpleRateThrottle):
    scope = "signup_ip"

    def get_rate(self) -> str:
        return settings.SIGNUP_RATE_IP

    def get_ident(self, request: HttpRequest) -> str:
        return client_ip(request)

    def get_cache_key(self, request: HttpRequest, view: APIView | None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
