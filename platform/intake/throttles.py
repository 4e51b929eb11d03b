"""Rate limits on case submission, per signed-in user and per client address.

Both apply to every submission: one person cannot flood from many addresses, and
one address cannot flood with many accounts. Rates are settings
(COTRAIN_SUBMIT_RATE_USER / COTRAIN_SUBMIT_RATE_IP); counts live in the cache.
"""

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView


class _SubmitThrottle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        # Read at request time (DRF reads it at import), so a changed setting applies.
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class SubmitUserRateThrottle(_SubmitThrottle):
    scope = "submit_user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class SubmitIpRateThrottle(_SubmitThrottle):
    scope = "submit_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
