"""Text and links from GitHub made storable: pure functions, no Django models, no I/O.

GitHub accepts what a case cannot hold (terminal colour codes pasted from a log,
NUL, lone surrogates, right-to-left overrides that disguise text, logins longer
than ours), and a signed delivery may still carry any link. A request is never
refused for its text: each function returns what can be stored and a note of what
was changed, which the item keeps (`GithubItem.cleaning`) and the delivery reports.
"""

import json
import re
import unicodedata
from urllib.parse import urlsplit

# CSI sequences (`ESC [ 31 m`, cursor moves) go whole: removing only ESC would leave "[31m" in the text.
_ANSI_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Line breaks and tabs are part of real prompts (GitHub sends \r\n from its web editor).
_KEPT_CONTROLS = {"\n", "\r", "\t"}
# Bidirectional embeddings, overrides and isolates: they make text read differently than it is stored.
_BIDI = {chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def _unstorable(char: str) -> bool:
    if char in _KEPT_CONTROLS:
        return False
    # Cc: controls (NUL is refused by PostgreSQL); Cs: lone surrogates (not encodable as UTF-8).
    return unicodedata.category(char) in {"Cc", "Cs"} or char in _BIDI or char in {"\ufffe", "\uffff"}


def clean_text(text: str, *, field: str, notes: list[str]) -> str:
    """`text` without ANSI escapes, control characters (but \\n, \\r, \\t) and bidi controls; noted when changed."""
    cleaned = _ANSI_CSI.sub("", text)
    cleaned = "".join(char for char in cleaned if not _unstorable(char))
    if cleaned != text:
        notes.append(f"{field}: removed {len(text) - len(cleaned)} control or escape character(s)")
    return cleaned


def cut(text: str, *, limit: int, field: str, notes: list[str]) -> str:
    """`text` cut to `limit` characters (noted), for fields whose database column has that length."""
    if len(text) <= limit:
        return text
    notes.append(f"{field}: cut from {len(text)} to {limit} characters")
    return text[:limit]


def web_host_for(api_url: str) -> str:
    """The host GitHub's web pages live on for an API base URL (api.github.com -> github.com; GHES: its host)."""
    host = (urlsplit(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def github_url(url: object, *, host: str, field: str, notes: list[str]) -> str:
    """`url` when it is an http(s) link on `host` (what GitHub's `html_url` always is), else "" (noted).

    Links end up in maintainers' pages as `href`: a `javascript:` or foreign link from
    a payload must never get there.
    """
    if url is None or url == "":
        return ""
    if isinstance(url, str) and http_url(url) and (urlsplit(url).hostname or "").lower() == host:
        return url
    notes.append(f"{field}: dropped {str(url)[:80]!r} (not an http(s) link on {host})")
    return ""


def http_url(url: str) -> bool:
    """An absolute http or https URL with a host, free of characters that browsers strip or reinterpret."""
    if any(char.isspace() or unicodedata.category(char) in {"Cc", "Cf"} for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _storable_str(text: str) -> str:
    return "".join(char for char in text if char != "\x00" and unicodedata.category(char) != "Cs")


def storable_json(value: object) -> object:
    """A parsed JSON payload without NUL and lone surrogates, which PostgreSQL's jsonb refuses; else as received."""
    if isinstance(value, str):
        return _storable_str(value)
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    if isinstance(value, dict):
        return {_storable_str(key): storable_json(item) for key, item in value.items()}
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> object:
    """Strict JSON: NaN and Infinity (which Python's json accepts, and neither jsonb nor SQLite stores) refused.

    Raises ValueError (also for nesting too deep to parse) and UnicodeDecodeError.
    """
    try:
        return storable_json(json.loads(body, parse_constant=_refuse_constant))
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
