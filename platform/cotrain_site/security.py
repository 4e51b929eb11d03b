"""Response headers that limit what a page can do, whatever text people managed to put in it.

The Content-Security-Policy is the second line behind escaping: even if a case's
text or a stored link reached a page as markup, the browser runs no inline script,
no `javascript:` URL, no event-handler attribute and nothing from another origin.
The pages keep their scripts and styles in static files for this (there is no
inline `<script>`, `on...=` or `style` in templates/). Django's SecurityMiddleware
sends Referrer-Policy (SECURE_REFERRER_POLICY), X-Content-Type-Options and
Cross-Origin-Opener-Policy; X-Frame-Options comes from its clickjacking middleware.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


def _policy(**overrides: str) -> str:
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "object-src": "'none'",
        "base-uri": "'self'",
        "frame-ancestors": "'none'",
        "form-action": "'self'",
        **overrides,
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = _policy()
# Swagger UI's page (drf-spectacular's template, served as the split view so that its
# script is a separate file) carries one small inline <style>; scripts stay strict.
RELAXED_STYLE_POLICY = _policy(**{"style-src": "'self' 'unsafe-inline'"})
RELAXED_STYLE_VIEWS = frozenset({"api-docs"})
# Browser features no page of the platform uses.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer",
        "microphone", "midi", "payment", "usb",
    )
)  # fmt: skip


class SecurityHeadersMiddleware:
    """Adds Content-Security-Policy and Permissions-Policy to every response that has none."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        relaxed = match is not None and match.view_name in RELAXED_STYLE_VIEWS
        policy = RELAXED_STYLE_POLICY if relaxed else CONTENT_SECURITY_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
