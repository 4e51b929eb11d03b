"""Rate limits on case submission, per signed-in user and per client address.

Both apply to every submission: one person cannot flood from many addresses, and
one address cannot flood with many accounts. Rates are settings
(COTRAIN_SUBMIT_RATE_USER / COTRAIN_SUBMIT_RATE_IP); counts live in the cache.
The address is `cotrain_site.client_ip`'s, as for the sign-up and login limits.
The API applies the throttles through DRF; the web form calls
`submit_refusal`, which runs the same throttles on the same counters, so a
person has one allowance whichever way they submit.
"""

import math

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from cotrain_site.client_ip import client_ip


class _SubmitThrottle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        # Read at request time (DRF reads it at import), so a changed setting applies.
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]

    def get_ident(self, request: Request | HttpRequest) -> str:
        # The address every limit counts (X-Forwarded-For only from trusted proxies),
        # rather than DRF's own reading of the header.
        return client_ip(request)

    def allow_request(self, request: Request | HttpRequest, view: APIView | None) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class SubmitUserRateThrottle(_SubmitThrottle):
    scope = "submit_user"

    def get_cache_key(self, request: Request | HttpRequest, view: APIView | None) -> str | None:
        if not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class SubmitIpRateThrottle(_SubmitThrottle):
    scope = "submit_ip"

    def get_cache_key(self, request: Request | HttpRequest, view: APIView | None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def submit_refusal(request: HttpRequest) -> str | None:
    """Why this submission is refused, or None when it may go ahead (always None for GET).

    Like DRF's APIView.check_throttles: every throttle is asked, so every attempt
    counts, and the longest wait is the one reported.
    """
    throttles = [SubmitUserRateThrottle(), SubmitIpRateThrottle()]
    waits = [throttle.wait() for throttle in throttles if not throttle.allow_request(request, None)]
    if not waits:
        return None
    known = [wait for wait in waits if wait is not None]
    when = f"in about {max(1, math.ceil(max(known) / 60))} minute(s)" if known else "later"
    return f"Too many submissions from your account or network: nothing was saved. Please try again {when}."
