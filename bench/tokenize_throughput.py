"""Encoding speed of fine-tuning data with the real Yuan tokenizer: the trainer against transformers' fast tokenizer.

    .venv/bin/python bench/tokenize_throughput.py [--examples N] [--repeats R] [--out FILE]

Baseline: what `trainer.load_tokenizer` used before (`AutoTokenizer` on the folder,
which turns `tokenizer.model` into a `tokenizers` BPE), encoding the same texts in one
batch call (Rust, all cores). Ours: `trainer.data.build_rows`'s path, the texts
cleaned as Yuan cleans a line and encoded in one `Tokenizer.encode_batch` call
(sentencepiece's C++ thread pool), plus the whole `build_rows` (encoding, masks,
packing). The corpus is this repository's own text: bundled cases and demo data
(Chinese and English requests) and Python source lines (indented code), cut into
prompt/response pairs. Also reported: the share of examples whose baseline ids
differ from Yuan's pipeline (the trainer's ids are checked equal to it in
tests/trainer/test_yuan_tokenization.py). Best of R runs each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
FIXTURE = ROOT / "tests" / "fixtures" / "yuan_tokenizer"


def corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (prompt, response) pairs from the repository's own Chinese/English data and code."""
    texts: list[str] = []
    sources = [ROOT / "platform/intake/fixtures/sample_cases.jsonl",
               *sorted((ROOT / "trainer/assets").rglob("*.jsonl"))]
    for path in sources:
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                row = json.loads(line)
                texts += [v for k, v in row.items() if isinstance(v, str) and k not in ("id", "source") and v.strip()]
    code = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "trainer").glob("*.py"))]
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        if i % 3 == 2:  # a code answer: 3-15 consecutive source lines, indentation kept
            src = rng.choice(code).split("\n")
            at = rng.randrange(max(1, len(src) - 15))
            pairs.append((rng.choice(texts), "\n".join(src[at:at + rng.randint(3, 15)])))
        else:
            pairs.append((rng.choice(texts), rng.choice(texts)))
    return pairs


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import transformers
    from transformers import AutoTokenizer

    from trainer.data import Example, build_rows, yuan_line_parts
    from trainer.tokenizer import load_tokenizer

    pairs = corpus(args.examples)
    ours = load_tokenizer(FIXTURE)
    baseline = AutoTokenizer.from_pretrained(str(FIXTURE), local_files_only=True)
    cleaned = [text for p, r in pairs for text in yuan_line_parts(p, r)]
    examples = [Example(id=str(i), prompt=p, response=r, source="bench") for i, (p, r) in enumerate(pairs)]

    base_ids: list[list[int]] = []

    def run_baseline() -> None:
        base_ids[:] = baseline(cleaned, add_special_tokens=False)["input_ids"]

    our_ids: list[list[int]] = []

    def run_ours() -> None:
        our_ids[:] = ours.encode_batch(cleaned)

    timings = {
        "baseline_fast_tokenizer": best(run_baseline, args.repeats),
        "ours_encode_batch": best(run_ours, args.repeats),
        "ours_build_rows": best(lambda: build_rows(examples, ours, seq_len=4096), args.repeats),
    }
    tokens = sum(len(ids) for ids in our_ids)
    differ = sum(base_ids[2 * i] != our_ids[2 * i] or base_ids[2 * i + 1] != our_ids[2 * i + 1]
                 for i in range(len(pairs)))
    rows = {name: {"seconds": round(t, 4), "examples_per_s": round(len(pairs) / t),
                   "tokens_per_s": round(tokens / t)} for name, t in timings.items()}
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (CPU)",
        "python": platform.python_version(),
        "transformers": transformers.__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "sentencepiece": __import__("sentencepiece").__version__,
        "examples": len(pairs), "tokens": tokens, "repeats": args.repeats,
        "baseline_examples_differing_from_yuan": differ,
        "baseline_share_differing": round(differ / len(pairs), 4),
        "rows": rows,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
