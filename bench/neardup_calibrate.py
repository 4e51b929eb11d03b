"""Calibrate the near-duplicate detector: n-gram length and Jaccard threshold, on the labelled set.

    .venv/bin/python bench/neardup_calibrate.py [--out FILE] [--texts N]

The set is tests/web/fixtures/neardup_eval.jsonl: hand-written pairs of requests (Chinese,
English, mixed), each labelled duplicate or not, with a note saying why. For every n in 2..7
and threshold in 0.30..0.90 (step 0.05) it scores the rule the platform applies, "estimated
Jaccard of the two signatures >= threshold", and the same rule on the exact Jaccard of the
shingle sets (what the estimate estimates, free of the seed's luck). It also reports the LSH
recall: the share of duplicates that share at least one band key (the candidates triage
looks at), and the end-to-end recall (sharing a key and passing the threshold).

The set's texts are at most ~600 characters, but a case can be a pasted document. So it also
measures the similarity of UNRELATED long texts: each draw splits the set's texts into two
halves (texts linked through a pair stay in one half) and glues each half's texts of one language into a
text of 300, 1,000, 3,000 or 10,000 characters (cases may hold 20,000; the set has not enough
text for more), and cuts the repository's docs/*.md and README.md (technical English with
code) into disjoint chunks of 3,000, 10,000 and 20,000 characters. Short n-grams saturate: two
unrelated English texts of 3,000 characters share most of their character bigrams. A cell is
eligible only when no unrelated long pair has an estimated similarity that reaches its
threshold. The chosen (n, threshold) is the eligible cell with the best estimated-rule F1;
ties go to the better end-to-end recall, then to the smaller n. The runner-up is the best
eligible cell at another n.

Last, clusters() is timed on N synthetic requests (default 10,000) of 100-400 characters
cut from the set's clauses, a tenth of them planted near-copies of another.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform")]
SET = ROOT / "tests" / "web" / "fixtures" / "neardup_eval.jsonl"

from intake import neardup  # noqa: E402

NS = range(2, 8)
THRESHOLDS = [round(0.30 + 0.05 * i, 2) for i in range(13)]


def load(path: Path = SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b)


def prf(predicted: list[bool], labels: list[bool]) -> dict:
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    fp = sum(p and not y for p, y in zip(predicted, labels, strict=True))
    fn = sum(y and not p for p, y in zip(predicted, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4)}


def distribution(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=20, method="inclusive")  # 5% steps
    histogram = [0] * 10
    for v in values:
        histogram[min(int(v * 10), 9)] += 1
    return {"min": round(min(values), 3), "p10": round(q[1], 3), "p25": round(q[4], 3), "median": round(q[9], 3),
            "p75": round(q[14], 3), "p90": round(q[17], 3), "max": round(max(values), 3),
            "histogram_tenths": histogram}


def shares_key(a: list[int], b: list[int]) -> bool:
    return bool(set(a) & set(b))


def evaluate(rows: list[dict]) -> dict:
    """Every (n, threshold) cell, and the Jaccard distributions per n."""
    labels = [row["duplicate"] for row in rows]
    texts = sorted({row[side] for row in rows for side in ("a", "b")})
    per_n = {}
    for n in NS:
        sig = dict(zip(texts, neardup.signatures(texts, n=n), strict=True))
        sh = {text: neardup.shingles(text, n=n) for text in texts}
        estimated = [neardup.similarity(sig[row["a"]], sig[row["b"]]) for row in rows]
        exact = [jaccard(sh[row["a"]], sh[row["b"]]) for row in rows]
        cells = []
        for t in THRESHOLDS:
            keys = {text: neardup.band_keys(sig[text], threshold=t) for text in texts}
            candidate = [shares_key(keys[row["a"]], keys[row["b"]]) for row in rows]
            found = [c and s >= t for c, s in zip(candidate, estimated, strict=True)]
            duplicates = sum(labels)
            cells.append({
                "threshold": t,
                "bands_rows": list(neardup.lsh_params(t)),
                "estimated": prf([s >= t for s in estimated], labels),
                "exact": prf([s >= t for s in exact], labels),
                "lsh_recall": round(sum(c and y for c, y in zip(candidate, labels, strict=True)) / duplicates, 4),
                "end_to_end": prf(found, labels),
            })
        per_n[n] = {
            "cells": cells,
            "exact_jaccard": {
                "duplicates": distribution([j for j, y in zip(exact, labels, strict=True) if y]),
                "non_duplicates": distribution([j for j, y in zip(exact, labels, strict=True) if not y]),
            },
            "estimated": estimated,
        }
    return per_n


LONG_LENGTHS = (300, 1_000, 3_000, 10_000)


def unrelated_long(rows: list[dict], draws: int = 60, seed: int = 7) -> dict:
    """Exact and estimated Jaccard of unrelated glued texts: {n: {lang: {length: figures}}}."""
    rng = random.Random(seed)
    groups = _related_groups(rows)
    exact: dict = {n: {lang: {length: [] for length in LONG_LENGTHS} for lang in ("zh", "en")} for n in NS}
    estimated: dict = {n: {lang: {length: [] for length in LONG_LENGTHS} for lang in ("zh", "en")} for n in NS}
    for _ in range(draws):
        halves: tuple[list[str], list[str]] = ([], [])
        for group in groups:
            halves[rng.randrange(2)].extend(group)
        for lang in ("zh", "en"):
            pools = []
            for half in halves:
                mine = [t for t in dict.fromkeys(half) if _lang_of(t) == lang]
                rng.shuffle(mine)
                pools.append("\n".join(mine))
            for length in LONG_LENGTHS:
                a, b = pools[0][:length], pools[1][:length]
                for n in NS:
                    exact[n][lang][length].append(jaccard(neardup.shingles(a, n=n), neardup.shingles(b, n=n)))
                    estimated[n][lang][length].append(
                        neardup.similarity(neardup.signature(a, n=n), neardup.signature(b, n=n)))
    return {n: {lang: {length: {"exact_median": round(statistics.median(exact[n][lang][length]), 3),
                                "exact_p95": round(statistics.quantiles(exact[n][lang][length], n=20,
                                                                        method="inclusive")[18], 3),
                                "estimated_max": round(max(estimated[n][lang][length]), 3)}
                       for length in LONG_LENGTHS} for lang in ("zh", "en")}
            for n in NS}


def _related_groups(rows: list[dict]) -> list[list[str]]:
    """Texts linked through the pairs they appear in (a text can be in several), as sorted groups:
    a group goes to one half, so the two halves share no text and no pair."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    for row in rows:
        parent[find(row["a"])] = find(row["b"])
    groups: dict[str, list[str]] = {}
    for text in sorted(parent):
        groups.setdefault(find(text), []).append(text)
    return sorted(groups.values())


def _lang_of(text: str) -> str:
    """"zh" when Han characters are at least a third of the letters, else "en" (for the long-text check)."""
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
    letters = sum(ch.isalpha() for ch in text)
    return "zh" if han * 3 >= letters else "en"


DOCS_LENGTHS = (3_000, 10_000, 20_000)


def unrelated_docs(root: Path = ROOT) -> dict:
    """Estimated similarity of disjoint chunks of the repository's own docs (docs/*.md, README.md):
    technical English with code, the kind of long text the set's requests lack."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in [*sorted((root / "docs").glob("*.md")),
                                                                    root / "README.md"])
    out: dict = {n: {} for n in NS}
    for length in DOCS_LENGTHS:
        chunks = [text[i : i + length] for i in range(0, len(text) - length + 1, length)]
        for n in NS:
            sigs = neardup.signatures(chunks, n=n)
            sims = [neardup.similarity(sigs[i], sigs[j]) for i in range(len(sigs)) for j in range(i + 1, len(sigs))]
            out[n][length] = {"pairs": len(sims), "estimated_median": round(statistics.median(sims), 3),
                              "estimated_max": round(max(sims), 3)}
    return {"chars": len(text), "by_n": out}


def long_max(n: int, long: dict) -> float:
    """The highest estimated similarity of any unrelated long pair at this n (glued set texts, docs)."""
    glued = max(f["estimated_max"] for by_len in long["glued"][n].values() for f in by_len.values())
    return max(glued, *(f["estimated_max"] for f in long["docs"]["by_n"][n].values()))


def eligible(n: int, threshold: float, long: dict) -> bool:
    return long_max(n, long) < threshold


def choose(per_n: dict, long: dict) -> list[tuple[int, dict]]:
    """Eligible cells, best first: estimated F1, then end-to-end recall, then the smaller n."""
    cells = [(n, cell) for n, data in per_n.items() for cell in data["cells"] if eligible(n, cell["threshold"], long)]
    return sorted(cells, key=lambda nc: (-nc[1]["estimated"]["f1"], -nc[1]["end_to_end"]["recall"], nc[0]))


def best_per_n(per_n: dict) -> dict[int, dict]:
    """The best cell of each n, eligible or not (what the long-text rule costs)."""
    return {n: max(data["cells"], key=lambda c: (c["estimated"]["f1"], c["end_to_end"]["recall"]))
            for n, data in per_n.items()}


def mistakes(rows: list[dict], estimated: list[float], threshold: float) -> list[dict]:
    out = []
    for row, s in zip(rows, estimated, strict=True):
        if (s >= threshold) != row["duplicate"]:
            kind = "false_positive" if s >= threshold else "false_negative"
            out.append({"kind": kind, "similarity": round(s, 3), "lang": row["lang"], "note": row["note"],
                        "a": row["a"][:80], "b": row["b"][:80]})
    return sorted(out, key=lambda m: (m["kind"], m["similarity"]))


# --- clusters() timing -------------------------------------------------------------------

_CLAUSE = re.compile(r"[^，。？！；：,.?!;:\n]+[，。？！；：,.?!;:\n]?")


def synthetic_texts(rows: list[dict], count: int, seed: int = 20261202) -> tuple[list[str], list[tuple[int, int]]]:
    """`count` requests glued from the set's clauses; every tenth is an edited copy of an earlier one."""
    rng = random.Random(seed)
    clauses = sorted({c for row in rows for side in ("a", "b") for c in _CLAUSE.findall(row[side]) if len(c) >= 6})
    texts: list[str] = []
    planted = []
    for i in range(count):
        if i % 10 == 9:
            source = rng.randrange(i)
            copy = re.sub(r"\d+", lambda m: str(rng.randint(1, 999)), texts[source])
            greeting, thanks = rng.choice(["你好，", "请问", "Hi, ", ""]), rng.choice(["谢谢！", " thanks", "", "？"])
            texts.append(greeting + copy + thanks)
            planted.append((source, i))
            continue
        target = rng.randint(100, 400)
        parts: list[str] = []
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(clauses))
        texts.append("".join(parts)[:target])
    return texts, planted


def time_clusters(texts: list[str], planted: list[tuple[int, int]], n: int, threshold: float) -> dict:
    t0 = time.perf_counter()
    sigs = neardup.signatures(texts, n=n)
    t_sig = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = neardup.clusters(texts, n=n, threshold=threshold)
    t_clusters = time.perf_counter() - t0
    del sigs
    return {
        "texts": len(texts),
        "mean_chars": round(statistics.mean(map(len, texts)), 1),
        "signatures_s": round(t_sig, 2),
        "clusters_s": round(t_clusters, 2),
        "clusters": len(set(labels)),
        "planted_pairs": len(planted),
        "planted_pairs_joined": sum(labels[a] == labels[b] for a, b in planted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "neardup-calibration-2026-12-02.json")
    parser.add_argument("--texts", type=int, default=10_000)
    args = parser.parse_args()

    rows = load()
    duplicates = sum(row["duplicate"] for row in rows)
    print(f"{len(rows)} pairs: {duplicates} duplicates, {len(rows) - duplicates} non-duplicates")
    per_n = evaluate(rows)

    print(f"{'n':>2} {'thr':>5} {'b,r':>6} | {'P est':>6} {'R est':>6} {'F1 est':>6} | {'P ex':>6} {'R ex':>6} "
          f"{'F1 ex':>6} | {'LSH R':>6} {'R e2e':>6}")
    for n, data in per_n.items():
        for cell in data["cells"]:
            est, ex = cell["estimated"], cell["exact"]
            b, r = cell["bands_rows"]
            print(f"{n:>2} {cell['threshold']:>5.2f} {f'{b},{r}':>6} | {est['precision']:>6.3f} {est['recall']:>6.3f} "
                  f"{est['f1']:>6.3f} | {ex['precision']:>6.3f} {ex['recall']:>6.3f} {ex['f1']:>6.3f} | "
                  f"{cell['lsh_recall']:>6.3f} {cell['end_to_end']['recall']:>6.3f}")
    print("exact Jaccard (median / p10 of duplicates, median / p90 of non-duplicates):")
    for n, data in per_n.items():
        d, nd = data["exact_jaccard"]["duplicates"], data["exact_jaccard"]["non_duplicates"]
        print(f"  n={n}: duplicates {d['median']:.3f} / {d['p10']:.3f}   "
              f"non-duplicates {nd['median']:.3f} / {nd['p90']:.3f}")

    long = {"glued": unrelated_long(rows), "docs": unrelated_docs()}
    print("unrelated glued set texts, exact Jaccard median / highest estimate, zh | en, by length:")
    for n in NS:
        glued = long["glued"][n]
        cells = "  ".join(
            f"{length}: {glued['zh'][length]['exact_median']:.2f}/{glued['zh'][length]['estimated_max']:.2f} | "
            f"{glued['en'][length]['exact_median']:.2f}/{glued['en'][length]['estimated_max']:.2f}"
            for length in LONG_LENGTHS)
        print(f"  n={n}: {cells}")
    print(f"unrelated chunks of docs/*.md and README.md ({long['docs']['chars']} chars), estimate median / max:")
    for n in NS:
        docs = long["docs"]["by_n"][n]
        cells = "  ".join(f"{length}: {docs[length]['estimated_median']:.2f}/{docs[length]['estimated_max']:.2f}"
                          for length in DOCS_LENGTHS)
        print(f"  n={n}: {cells}   (highest of all unrelated long pairs {long_max(n, long):.3f})")
    print("best cell of each n, before the long-text rule:")
    for n, cell in best_per_n(per_n).items():
        est = cell["estimated"]
        flag = "" if eligible(n, cell["threshold"], long) else "  (not eligible: unrelated long texts reach it)"
        print(f"  n={n} threshold={cell['threshold']:.2f}  P {est['precision']:.3f}  R {est['recall']:.3f}  "
              f"F1 {est['f1']:.3f}{flag}")

    ranked = choose(per_n, long)
    (n_best, best) = ranked[0]
    # The runner-up is the best cell at another n, so the two figures say what the n choice is worth.
    n_second, second = next((n, cell) for n, cell in ranked if n != n_best)
    for label, n, cell in (("chosen", n_best, best), ("runner-up", n_second, second)):
        est = cell["estimated"]
        print(f"{label}: n={n} threshold={cell['threshold']:.2f}  P {est['precision']:.3f}  R {est['recall']:.3f}  "
              f"F1 {est['f1']:.3f}  (LSH recall {cell['lsh_recall']:.3f}, end-to-end recall "
              f"{cell['end_to_end']['recall']:.3f})")
    in_module = (n_best, best["threshold"]) == (neardup.NGRAM, neardup.THRESHOLD)
    print(f"module constants NGRAM={neardup.NGRAM} THRESHOLD={neardup.THRESHOLD}: "
          f"{'agree' if in_module else 'DIFFER from the chosen values'}")
    errors = mistakes(rows, per_n[n_best]["estimated"], best["threshold"])
    for m in errors:
        print(f"  {m['kind']:<14} {m['similarity']:.3f} [{m['lang']}] {m['note']}: {m['a'][:40]!r} / {m['b'][:40]!r}")

    texts, planted = synthetic_texts(rows, args.texts)
    timing = time_clusters(texts, planted, neardup.NGRAM, neardup.THRESHOLD)
    print(f"clusters() on {timing['texts']} texts (mean {timing['mean_chars']} chars): {timing['clusters_s']} s "
          f"(signatures alone {timing['signatures_s']} s); {timing['clusters']} clusters, "
          f"{timing['planted_pairs_joined']}/{timing['planted_pairs']} planted copies joined")

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (CPU)",
        "python": platform.python_version(),
        "pairs": len(rows),
        "duplicates": duplicates,
        "non_duplicates": len(rows) - duplicates,
        "languages": {lang: sum(row["lang"] == lang for row in rows) for lang in ("zh", "en", "mixed")},
        "num_perm": neardup.NUM_PERM,
        "seed": neardup.SEED,
        "lsh_weights": list(neardup.LSH_WEIGHTS),
        "unrelated_glued_set_texts": {str(n): v for n, v in long["glued"].items()},
        "unrelated_docs_chunks": {"chars": long["docs"]["chars"],
                                  "by_n": {str(n): v for n, v in long["docs"]["by_n"].items()}},
        "highest_unrelated_long_estimate": {str(n): long_max(n, long) for n in NS},
        "best_per_n_before_long_text_rule": {str(n): c for n, c in best_per_n(per_n).items()},
        "chosen": {"n": n_best, **best},
        "runner_up": {"n": n_second, **second},
        "module_constants_agree": in_module,
        "mistakes_at_chosen": errors,
        "clusters_timing": timing,
        "grid": {str(n): {"cells": data["cells"], "exact_jaccard": data["exact_jaccard"]} for n, data in per_n.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
