"""Precision, recall and speed of the personal-data detector on the labelled set.

    .venv/bin/python bench/pii_eval.py [--repeats R] [--out FILE]

The set is tests/web/fixtures/pii_eval.jsonl: hand-written Chinese/English snippets, each
with the findings it should give (kind, value, start in the original text); the tricky
negatives expect none. A finding counts as correct only when kind, start and value all
match an expected one, so a span that swallows a neighbouring character is a false
positive and a miss at once. Throughput: snippets/s of `find_pii` over the whole set,
best of R runs, one process on this CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform")]
SET = ROOT / "tests" / "web" / "fixtures" / "pii_eval.jsonl"

from intake.pii import KINDS, find_pii  # noqa: E402


def load(path: Path = SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(rows: list[dict]) -> dict:
    """Per-kind and overall true/false positives and misses, with the failing snippets."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    failures = []
    for row in rows:
        expected = Counter((e["kind"], e["start"], e["value"]) for e in row["expected"])
        found = Counter((f.kind, f.start, f.value) for f in find_pii(row["text"]))
        for key in found | expected:
            hit = min(found[key], expected[key])
            tp[key[0]] += hit
            fp[key[0]] += found[key] - hit
            fn[key[0]] += expected[key] - hit
        if found != expected:
            failures.append({"id": row["id"], "text": row["text"],
                             "extra": sorted(found - expected), "missed": sorted(expected - found)})

    def prf(t: int, p: int, n: int) -> dict:
        precision = t / (t + p) if t + p else 1.0
        recall = t / (t + n) if t + n else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"tp": t, "fp": p, "fn": n, "precision": round(precision, 4), "recall": round(recall, 4),
                "f1": round(f1, 4)}

    per_kind = {kind: prf(tp[kind], fp[kind], fn[kind]) for kind in KINDS}
    overall = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {"per_kind": per_kind, "overall": overall, "failures": failures}


def throughput(rows: list[dict], repeats: int) -> float:
    texts = [row["text"] for row in rows]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            for text in texts:
                find_pii(text)
        best = min(best, time.perf_counter() - t0)
    return 10 * len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pii-2026-12-02.json")
    args = parser.parse_args()

    rows = load()
    result = score(rows)
    speed = throughput(rows, args.repeats)
    positives = sum(1 for row in rows if row["expected"])
    print(f"{len(rows)} snippets: {positives} positive, {len(rows) - positives} negative")
    print(f"{'kind':<10} {'tp':>4} {'fp':>4} {'fn':>4} {'prec':>7} {'recall':>7} {'f1':>7}")
    for kind, m in [*result["per_kind"].items(), ("overall", result["overall"])]:
        counts = f"{m['tp']:>4} {m['fp']:>4} {m['fn']:>4}"
        print(f"{kind:<10} {counts} {m['precision']:>7.4f} {m['recall']:>7.4f} {m['f1']:>7.4f}")
    print(f"throughput: {speed:,.0f} snippets/s (one process, best of {args.repeats})")
    for failure in result["failures"]:
        print(f"  FAIL {failure['id']}: {failure['text']!r} extra={failure['extra']} missed={failure['missed']}")

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (CPU)",
        "python": platform.python_version(),
        "snippets": len(rows),
        "positive_snippets": positives,
        "negative_snippets": len(rows) - positives,
        "expected_findings": sum(len(row["expected"]) for row in rows),
        **result,
        "snippets_per_s": round(speed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
