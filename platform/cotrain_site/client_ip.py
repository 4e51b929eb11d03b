"""The client address of a request: the one identity every per-address limit counts.

`X-Forwarded-For` is written by whoever sends the request, so only the entries
appended by our own proxies can be believed. With NUM_PROXIES = N (the setting
COTRAIN_NUM_PROXIES), the proxy nearest the client appended that client's address
as the Nth entry from the right; anything left of it is the client's own claim.
With N = 0 the header is ignored. Submission, sign-up and login limits all ask
`client_ip`, so that none of them can be dodged by a header the others ignore.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request


def client_ip(request: HttpRequest | Request) -> str:
    """The address the limits count for `request`: REMOTE_ADDR unless NUM_PROXIES trusted proxies say otherwise."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies: int = settings.NUM_PROXIES
    if proxies == 0:
        return remote
    entries = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    # Fewer entries than proxies means the request did not come through all of them
    # (someone reached an inner hop directly): the header proves nothing then.
    if len(entries) < proxies:
        return remote
    try:
        # Normalized, so that one address cannot count as many by spelling (leading zeros, IPv6 case).
        return str(ipaddress.ip_address(entries[-proxies]))
    except ValueError:
        return remote
