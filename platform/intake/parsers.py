"""The API's JSON parser: DRF's, plus a nesting limit and no lone surrogates.

A body of 2 KB can nest a thousand arrays deep: Python's json module, and every
recursive walk after it (validation, rendering an error), then runs out of stack
and the request ends in a 500. And JSON may spell half of a UTF-16 pair
(`"\\ud800"`), which Python decodes into a string that cannot be encoded as UTF-8:
PostgreSQL, the templates and every JSON renderer refuse it later, far from the
input. Both are refused here, with a 400 that says why, before any view runs.
"""

import io
import json
import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Our bodies nest two levels (an object of strings and lists); this leaves room for any client's wrapping.
MAX_DEPTH = 20
# JSON string literals, whose brackets are text, not nesting.
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def json_check_depth(raw: bytes, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ParseError when arrays and objects nest deeper than `max_depth` (a linear scan, no recursion)."""
    depth = 0
    for byte in _STRING_RE.sub(b"", raw):
        if byte in _OPENERS:
            depth += 1
            if depth > max_depth:
                raise ParseError(f"JSON parse error - arrays and objects are nested more than {max_depth} deep.")
        elif byte in _CLOSERS:
            depth -= 1


def json_check_text(data: object) -> None:
    """Raise ParseError when a key or a string holds a lone UTF-16 surrogate (a `\\ud800` escape without its pair)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParseError(
            "JSON parse error - the body contains a lone surrogate escape (such as \\ud800), "
            "half of a character: send the whole character, or plain UTF-8 text."
        ) from exc


class StrictJSONParser(JSONParser):
    def parse(self, stream: IO[bytes], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        raw = stream.read()
        json_check_depth(raw)
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        json_check_text(data)
        return data
