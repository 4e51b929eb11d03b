"""The curation a dataset version's rows go through, in order (pure: no database, no Django).

    1. quality          `curation.quality`: control characters, empty / placeholder / echoed
                        responses, repetition and extreme lengths drop a row; a response in
                        another language than the request asked for, or a very short one, is
                        flagged (kept, the reason shown to maintainers)
    2. personal data    `intake.pii.scrub` of the scenario, prompt and response: typed placeholders
                        (`<PHONE>`, `<ID>`, ...) replace what the contributor typed; the row
                        records the kinds
    3. near-duplicates  `intake.neardup`: MinHash LSH over character n-grams with digits masked,
                        pairs verified by their estimated Jaccard; rows linked across cases form
                        a cluster, and a cluster keeps the rows of at most `keep_per_cluster`
                        cases (heavier weight first, then batch order: the earlier request)
    4. split            whole clusters (and whole cases) go to one side: no eval row has a
                        near-copy in train
    5. decontamination  `curation.decontam`: train rows overlapping the eval split, the general
                        regression set or a registered benchmark by a long n-gram are dropped

Rows of one case are never near-duplicates of each other: a request's examples are its
author's deliberate variants (the same task with other numbers), so the dedup unit is the
request. Every row that stays records what it passed (`filters`), what changed it
(`scrubbed`), what was flagged (`flags`) and its `cluster_id`; every row that goes is listed
with its filter and reason, and the counts per filter go into the manifest and the card.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.decontam import EvalIndex
from curation.quality import row_quality
from intake import neardup
from intake.pii import scrub

Rows = list[dict[str, Any]]
Progress = Callable[[str, int, int], None]
# The order filters run in, as the manifest and the card list them.
FILTERS = ("quality", "personal_data", "near_duplicate", "decontamination")
EVAL_FRACTION = 0.2
# The free text of a row, typed by people (a scenario may name someone too).
SCRUBBED_FIELDS = ("scenario", "prompt", "response")
# How often (in rows) a long stage reports progress.
PROGRESS_EVERY = 500


@dataclass(frozen=True)
class EvalItem:
    """An item a trained model is measured on: the general regression set's, or a registered benchmark's."""

    source: str  # "general", "benchmark:<name>"
    item_id: str
    prompt: str
    answer: str = ""


@dataclass(frozen=True)
class Dropped:
    id: str
    case_id: int | None
    filter: str
    reason: str
    prompt: str  # scrubbed when the row got as far as the scrubber, cut to a preview

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "case_id": self.case_id, "filter": self.filter, "reason": self.reason,
                "prompt": self.prompt}


@dataclass
class FilterStats:
    dropped: int = 0
    changed: int = 0
    flagged: int = 0
    # What made the filter act, counted by rule (`repetition`, `PHONE`, `general`, ...).
    why: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"dropped": self.dropped, "changed": self.changed, "flagged": self.flagged,
                "why": dict(sorted(self.why.items()))}


@dataclass
class Curated:
    splits: dict[str, Rows]
    dropped: list[Dropped]
    stats: dict[str, FilterStats]
    replaced: Counter[str]
    clusters: int  # clusters holding rows of two or more cases
    keep_per_cluster: int
    eval_sources: dict[str, int]  # items checked against, per source (the own eval split included)
    # Cases of the batch whose rows were not read because their authors withdrew them (set by the caller).
    withdrawn_cases: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the manifest records of the curation (the dropped rows included)."""
        return {
            "filters": {name: self.stats[name].as_dict() for name in FILTERS},
            "dropped": [row.as_dict() for row in self.dropped],
            "near_duplicate_clusters": self.clusters,
            "near_duplicate_keep_per_cluster": self.keep_per_cluster,
            "near_duplicate_method": f"MinHash LSH, character {neardup.NGRAM}-grams, digits masked, "
                                     f"Jaccard >= {neardup.THRESHOLD}",
            "decontamination_sources": dict(sorted(self.eval_sources.items())),
            "splits": {name: len(rows) for name, rows in self.splits.items()},
            "withdrawn_cases": self.withdrawn_cases,
            "flagged": [{"id": row["id"], "case_id": row.get("case_id"), "flags": row["flags"]}
                        for name in sorted(self.splits) for row in self.splits[name] if row["flags"]],
        }


def canonical(value: Any) -> bytes:
    """The one serialization content hashes are taken over: keys sorted, UTF-8, no spaces."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def row_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def _preview(text: str) -> str:
    return text if len(text) <= 200 else text[:199] + "…"


# Dataset row ids: `case-<pk>` for a case's first example pair, `case-<pk>-ex<n>` (n from 2) for the others.
ROW_ID = re.compile(r"case-(?P<case>\d+)(?:-ex(?P<example>\d+))?")


def case_pk_for_row(*, row_id: str) -> int | None:
    """The case a dataset (or evaluation) row belongs to: `case-12` and `case-12-ex3` -> 12; else None."""
    match = ROW_ID.fullmatch(row_id)
    return int(match.group("case")) if match else None


def _case_of(row: dict[str, Any]) -> Any:
    """The request a row is an example of: its `case_id`, else the case its id names; else the row alone."""
    if row.get("case_id") is not None:
        return row["case_id"]
    case_pk = case_pk_for_row(row_id=str(row["id"]))
    return case_pk if case_pk is not None else f"row:{row['id']}"


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None and (done == total or done % PROGRESS_EVERY == 0):
        progress(stage, done, total)


def _quality(rows: Rows, curated: Curated, progress: Progress | None) -> Rows:
    stats, kept = curated.stats["quality"], []
    for done, row in enumerate(rows, start=1):
        verdicts = row_quality(prompt=row["prompt"], response=row["response"], language=row["language"])
        drops = [v for v in verdicts if v.action == "drop"]
        if drops:
            stats.dropped += 1
            stats.why[drops[0].filter] += 1
            curated.dropped.append(Dropped(row["id"], row.get("case_id"), "quality",
                                           f"{drops[0].filter}: {drops[0].reason}", _preview(scrub(row["prompt"])[0])))
        else:
            flags = [f"{v.filter}: {v.reason}" for v in verdicts]
            stats.flagged += bool(flags)
            stats.why.update(v.filter for v in verdicts)
            kept.append({**row, "flags": flags, "filters": ["quality"]})
        _report(progress, "quality", done, len(rows))
    return kept


def _scrub(rows: Rows, curated: Curated, progress: Progress | None) -> Rows:
    stats = curated.stats["personal_data"]
    for done, row in enumerate(rows, start=1):
        kinds: Counter[str] = Counter()
        for name in SCRUBBED_FIELDS:
            row[name], counts = scrub(row[name])
            kinds.update(counts)
        row["scrubbed"] = sorted(kinds)
        row["filters"].append("personal_data")
        stats.changed += bool(kinds)
        stats.why.update(kinds)
        curated.replaced.update(kinds)
        _report(progress, "personal data", done, len(rows))
    return rows


def _signatures(rows: Rows, progress: Progress | None) -> np.ndarray:
    signatures = np.empty((len(rows), neardup.NUM_PERM), dtype=np.uint32)
    for i, row in enumerate(rows):
        signatures[i] = neardup.signature(f"{row['prompt']}\n{row['response']}")
        _report(progress, "near-duplicates", i + 1, len(rows))
    return signatures


def _deduplicate(rows: Rows, curated: Curated, progress: Progress | None) -> Rows:
    """Label each row with its cluster and keep the rows of the first K cases of every cluster."""
    # Rows of one case are its author's variants, never near-duplicates of each other.
    sets, linked = neardup.links(_signatures(rows, progress), groups=[_case_of(row) for row in rows])
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        members[sets.find(i)].append(i)
    stats, kept = curated.stats["near_duplicate"], []
    for root, indices in members.items():
        label = f"c-{rows[root]['id']}"
        # Heavier weight first, then batch order (the input's): the rows of the first K cases stay.
        first_at: dict[Any, tuple[float, int]] = {}
        for i in indices:
            first_at.setdefault(_case_of(rows[i]), (-rows[i]["weight"], i))
        keep = set(sorted(first_at, key=first_at.__getitem__)[:curated.keep_per_cluster])
        curated.clusters += len(first_at) > 1
        for i in indices:
            row = rows[i]
            if _case_of(row) in keep:
                kept.append({**row, "cluster_id": label, "filters": [*row["filters"], "near_duplicate"]})
                continue
            # A row may have joined through another example of its request rather than by itself.
            near = (f"near-copy of {rows[linked[i][0]]['id']} (similarity {linked[i][1]:.2f})" if i in linked
                    else f"another example of a request in cluster {label}")
            stats.dropped += 1
            stats.why["near-copy"] += 1
            curated.dropped.append(Dropped(
                row["id"], row.get("case_id"), "near_duplicate",
                f"{near}; cluster {label} keeps {curated.keep_per_cluster} request(s)", _preview(row["prompt"])))
    return sorted(kept, key=lambda row: row["id"])


def split_rows(*, rows: Rows, eval_fraction: float = EVAL_FRACTION) -> dict[str, Rows]:
    """Train/eval by groups: rows sharing a case or a cluster are one group, placed on one side
    (`split_groups`); a row of no case and no cluster is a group of its own."""
    sets = neardup.UnionFind(len(rows))
    first_of: dict[Any, int] = {}
    for i, row in enumerate(rows):
        keys = [("case", _case_of(row))] + ([("cluster", row["cluster_id"])] if row.get("cluster_id") else [])
        for key in keys:
            if key in first_of:
                sets.union(first_of[key], i)
            else:
                first_of[key] = i
    groups: dict[int, Rows] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[sets.find(i)].append(row)
    return split_groups(groups=list(groups.values()), eval_fraction=eval_fraction)


def split_groups(*, groups: list[Rows], eval_fraction: float = EVAL_FRACTION) -> dict[str, Rows]:
    """Deterministic train/eval split of whole groups, seeded by content: the same rows always split the same way.

    Within each scenario the groups are ordered by the sha256 of their first row and the
    first ones go to eval, so every scenario with two or more groups is represented in
    eval and keeps at least one group in train. If no scenario has two groups, the
    lowest-hashed group overall goes to eval so that neither split is empty.
    """
    by_scenario: dict[str, list[Rows]] = defaultdict(list)
    for group in groups:
        group.sort(key=lambda row: row["id"])
        by_scenario[group[0]["scenario"]].append(group)
    train: list[Rows] = []
    held_out: list[Rows] = []
    for scenario in sorted(by_scenario):
        ordered = sorted(by_scenario[scenario], key=lambda group: row_hash(group[0]))
        k = 0 if len(ordered) < 2 else min(len(ordered) - 1, max(1, round(len(ordered) * eval_fraction)))
        held_out += ordered[:k]
        train += ordered[k:]
    if not held_out and len(train) >= 2:
        first = min(train, key=lambda group: row_hash(group[0]))
        train.remove(first)
        held_out.append(first)
    return {
        "train": sorted((row for group in train for row in group), key=lambda r: r["id"]),
        "eval": sorted((row for group in held_out for row in group), key=lambda r: r["id"]),
    }


def _decontaminate(splits: dict[str, Rows], items: Sequence[EvalItem], curated: Curated,
                   progress: Progress | None) -> None:
    index = EvalIndex()
    sources: Counter[str] = Counter()
    for row in splits["eval"]:
        index.add(source="eval", item_id=row["id"], prompt=row["prompt"], answer=row["response"])
        sources["eval"] += 1
    for item in items:
        index.add(source=item.source, item_id=item.item_id, prompt=item.prompt, answer=item.answer)
        sources[item.source] += 1
    curated.eval_sources = dict(sources)
    stats, kept = curated.stats["decontamination"], []
    for done, row in enumerate(splits["train"], start=1):
        hit = index.match(prompt=row["prompt"], response=row["response"])
        if hit is None:
            kept.append({**row, "filters": [*row["filters"], "decontamination"]})
        else:
            stats.dropped += 1
            stats.why[hit.source.split(":")[0]] += 1
            curated.dropped.append(Dropped(row["id"], row.get("case_id"), "decontamination",
                                           f"overlaps {hit.source} item {hit.item_id} ({hit.ngram!r})",
                                           _preview(row["prompt"])))
        _report(progress, "decontamination", done, len(splits["train"]))
    splits["train"] = kept
    # Eval rows are what the model is measured on: they pass this filter by definition.
    splits["eval"] = [{**row, "filters": [*row["filters"], "decontamination"]} for row in splits["eval"]]


def curate(*, rows: Iterable[dict[str, Any]], eval_items: Sequence[EvalItem] = (), keep_per_cluster: int = 1,
           eval_fraction: float = EVAL_FRACTION, progress: Progress | None = None) -> Curated:
    """Run every filter over the rows (in batch order: earlier rows win a cluster) and split what stays.

    Each input row needs `id`, `prompt`, `response`, `language`, `scenario`, `weight` and
    `case_id` (None for a row of no case); other keys are carried through. The output rows
    gain `filters`, `flags`, `scrubbed` and `cluster_id`.
    """
    if keep_per_cluster < 1:
        raise ValueError(f"keep_per_cluster must be at least 1, not {keep_per_cluster}")
    curated = Curated(splits={}, dropped=[], stats={name: FilterStats() for name in FILTERS}, replaced=Counter(),
                      clusters=0, keep_per_cluster=keep_per_cluster, eval_sources={})
    kept = _quality(list(rows), curated, progress)
    kept = _scrub(kept, curated, progress)
    kept = _deduplicate(kept, curated, progress)
    curated.splits = split_rows(rows=kept, eval_fraction=eval_fraction)
    _decontaminate(curated.splits, eval_items, curated, progress)
    curated.dropped.sort(key=lambda row: (FILTERS.index(row.filter), row.id))
    return curated
