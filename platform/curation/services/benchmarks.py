"""Benchmark sets registered with the platform: what every dataset build keeps out of train.

A set is a JSONL file, one evaluation item a line: `{"id", "prompt", "answer"}`. The
names other benchmark dumps use are read too (`question`/`input`/`instruction` for the
prompt, `response`/`output`/`target` for the answer, `choices` appended to the prompt),
so C-Eval-, CMMLU- or GSM8K-style exports register as they are. A registered set is
immutable (its items and their sha256); a maintainer may deactivate it.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts.models import User
from curation.models import BenchmarkItem, BenchmarkSet
from curation.services.batches import APPROVE_PERMISSION

BENCHMARK_BYTES_MAX = 64 * 1024 * 1024
BENCHMARK_ITEMS_MAX = 200_000
PROMPT_KEYS = ("prompt", "question", "input", "instruction")
ANSWER_KEYS = ("answer", "response", "output", "target")
# Errors listed before giving up on a file: enough to fix several at once, not a wall of text.
ERRORS_SHOWN = 10


@dataclass(frozen=True)
class ParsedItem:
    item_id: str
    prompt: str
    answer: str


def _first_text(record: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # GSM8K-style numeric answers
    return None


def _item(number: int, record: Any) -> ParsedItem:
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: expected a JSON object, got {type(record).__name__}")
    prompt = _first_text(record, PROMPT_KEYS)
    if prompt is None:
        raise ValueError(f"line {number}: no prompt (one of {', '.join(PROMPT_KEYS)}, a non-empty string)")
    choices = record.get("choices")
    if isinstance(choices, list) and choices:
        prompt += "\n" + "\n".join(str(choice) for choice in choices)
    item_id = record.get("id", number)
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or not str(item_id).strip():
        raise ValueError(f"line {number}: id must be a non-empty string or number")
    return ParsedItem(item_id=str(item_id).strip()[:200], prompt=prompt, answer=_first_text(record, ANSWER_KEYS) or "")


def benchmark_parse(*, data: bytes) -> list[ParsedItem]:
    """The items of a benchmark JSONL file; raises ValidationError listing what is wrong (with line numbers)."""
    if len(data) > BENCHMARK_BYTES_MAX:
        raise ValidationError(f"The file is {len(data):,} bytes; at most {BENCHMARK_BYTES_MAX:,} are accepted.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"The file is not UTF-8 text (byte {exc.start}).", code="not_utf8") from exc
    items: list[ParsedItem] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = _item(number, json.loads(line))
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not JSON ({exc.msg}, column {exc.colno})")
            continue
        except RecursionError:
            errors.append(f"line {number}: nested too deep to read")
            continue
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if item.item_id in first_line:
            errors.append(f"line {number}: duplicate id {item.item_id!r} (first on line {first_line[item.item_id]})")
            continue
        first_line[item.item_id] = number
        items.append(item)
    if errors:
        more = f" (and {len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
        raise ValidationError("; ".join(errors[:ERRORS_SHOWN]) + more, code="bad_benchmark")
    if not items:
        raise ValidationError("The file holds no items.", code="empty_benchmark")
    if len(items) > BENCHMARK_ITEMS_MAX:
        raise ValidationError(f"{len(items):,} items; at most {BENCHMARK_ITEMS_MAX:,} per set.", code="too_many")
    return items


def _check_maintainer(by: User | None) -> None:
    # None is the operator at the shell (`manage.py register_benchmark`); every web path passes its user.
    if by is not None and (not by.is_active or not by.has_perm(APPROVE_PERMISSION)):
        raise PermissionDenied("Only maintainers can register benchmark sets.")


@transaction.atomic
def benchmark_register(*, name: str, data: bytes, by: User | None, description: str = "") -> BenchmarkSet:
    """Register a JSONL benchmark; the same file under the same name again returns the set already stored.

    Raises ValidationError (nothing stored) on a bad file or a name already taken by other content.
    """
    _check_maintainer(by)
    digest = hashlib.sha256(data).hexdigest()
    existing = BenchmarkSet.objects.filter(name=name).first()
    if existing is not None:
        if existing.sha256 == digest:
            return existing
        raise ValidationError(f"A benchmark named {name!r} is already registered with other content; "
                              "registered sets do not change: choose a new name.", code="name_taken")
    items = benchmark_parse(data=data)
    benchmark = BenchmarkSet(name=name, description=description.strip()[:300], sha256=digest,
                             item_count=len(items), created_by=by)
    benchmark.full_clean()
    benchmark.save()
    BenchmarkItem.objects.bulk_create(
        (BenchmarkItem(benchmark=benchmark, item_id=i.item_id, prompt=i.prompt, answer=i.answer) for i in items),
        batch_size=2000,
    )
    return benchmark


def benchmark_set_active(*, benchmark: BenchmarkSet, active: bool, by: User | None) -> BenchmarkSet:
    """Switch a set on or off for the builds from now on (versions already built keep what they dropped)."""
    _check_maintainer(by)
    BenchmarkSet.objects.filter(pk=benchmark.pk).update(active=active)
    benchmark.refresh_from_db()
    return benchmark
