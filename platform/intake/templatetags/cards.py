"""Filters that put people's text into Markdown cards (README.md of releases and datasets) as text.

The Hub and GitHub render cards as CommonMark with raw HTML allowed: a scenario of
`<script>...</script>` or `[x](javascript:...)` pasted into a card verbatim becomes a
script or a link there. So the card templates keep Django's autoescaping on, and each
value of people's text goes through one of these filters, which return it escaped for
the place it goes (and marked safe, so it is not escaped twice):

- `md_text`: one line of inline text (a list item, a link text, a table cell);
- `md_block`: text kept as written, line breaks included, in a fenced code block;
- `md_code`: an inline code span;
- `md_url`: an http(s) link destination, or nothing;
- `py_string`: a Python string literal inside a code example.

`web_url` serves the HTML pages: a stored link is shown as a link only when it is http(s)
(rows written before links were checked at the door may hold `javascript:` URLs).
"""

import json
import re
from urllib.parse import quote, urlsplit

from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# HTML's specials become entities (CommonMark decodes them back into literal text); the
# ASCII punctuation of Markdown's inline syntax (emphasis, code, links, images, tables,
# strikethrough) gets a backslash. The rest (letters, CJK, digits, '-', '.', '#') stays as it
# is, so that the card reads naturally: the values never start a line, where '-', '#' or '='
# would mean a list, a heading or an underline.
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]()!|~")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_BACKTICK_RUNS = re.compile(r"`+")
# Characters a URL keeps as they are (RFC 3986's reserved and unreserved ones but the
# parentheses, and '%' for escapes it already has); everything else, '<', '>', '(', ')' and
# spaces included, is %-encoded, so the URL is one destination in `[text](url)` or `<url>`.
_URL_SAFE = ":/?#[]@!$&'*+,;=%-._~"


def _escape_inline(text: str) -> str:
    out = []
    for char in _LINE_BREAKS.sub(" ", text):
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _fence_for(text: str, *, minimum: int) -> str:
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=0)
    return "`" * max(minimum, longest + 1)


@register.filter
def md_text(value: object) -> SafeString:
    """One line of literal text: HTML- and Markdown-escaped, line breaks as spaces."""
    return mark_safe(_escape_inline(str(value)))


@register.filter
def md_block(value: object) -> SafeString:
    """Literal text in a fenced code block, longer than any backtick run in it, so nothing inside can close it."""
    text = "\n".join(str(value).splitlines())
    fence = _fence_for(text, minimum=3)
    return mark_safe(f"{fence}text\n{text}\n{fence}")


@register.filter
def md_code(value: object) -> SafeString:
    """An inline code span (literal in CommonMark, HTML included), on one line."""
    text = _LINE_BREAKS.sub(" ", str(value))
    fence = _fence_for(text, minimum=1)
    # A span that starts or ends with a backtick needs a space inside the fence; CommonMark strips one.
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return mark_safe(f"{fence}{padded}{fence}")


@register.filter
def web_url(value: object) -> str:
    """The URL when its scheme is http or https, else "" (autoescaping still applies where it is used)."""
    url = str(value).strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return ""
    return url if scheme in {"http", "https"} else ""


@register.filter
def md_url(value: object) -> SafeString:
    """An http(s) URL, %-encoded so that it stays one link destination; "" for any other scheme."""
    return mark_safe(quote(web_url(value), safe=_URL_SAFE))


@register.filter
def py_string(value: object) -> SafeString:
    """A Python (and JSON) string literal on one line: quotes, backslashes and line breaks escaped."""
    literal = json.dumps(str(value), ensure_ascii=False)
    # JSON leaves U+2028/U+2029 raw; some editors and renderers take them for line breaks.
    return mark_safe(literal.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
