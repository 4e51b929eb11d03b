"""`{{ url|http_url }}`: the URL when it is an absolute http(s) link, else "" — never a `javascript:` href.

Links from GitHub are checked when stored (`ghsync.sanitize.github_url`); the templates
check again, so that a row written before that check (or by hand) cannot run script
in a maintainer's session.
"""

from django import template

from ghsync.sanitize import http_url as is_http_url

register = template.Library()


@register.filter
def http_url(url: object) -> str:
    return url if isinstance(url, str) and is_http_url(url) else ""
