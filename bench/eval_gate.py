"""The platform's evaluation gate at the Yuan2-2B shape, timed as the worker runs it.

    python bench/eval_gate.py [--cases 500] [--max-new-tokens 256] [--out FILE]

Builds a random-initialised Yuan2-2B checkpoint with the real Yuan tokenizer (bf16, as real
checkpoints are stored), writes N eval cases from the repository's hand-written Chinese and
English requests, then runs exactly the two commands `training.services.evaluations` runs
(`worker.launcher.eval_command`: base vs tuned on the cases, then on the general set), each a
fresh `python -m trainer eval` process: model loads, per-example losses and greedy decoding
included. Base and tuned are the same checkpoint (a random model never stops early, so every
answer runs the full budget: the worst case). The row `eval_gate_500x256` is the sum of the two
commands' wall times. The device is whatever `--device auto` picks (the GPU when there is one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "web" / "fixtures"
sys.path[:0] = [str(ROOT)]

from worker.launcher import eval_command  # noqa: E402


def _prompts() -> list[str]:
    found: list[str] = []
    for name, key in (("quality_eval", "prompt"), ("decontam_eval", "prompt"), ("neardup_eval", "a"),
                      ("neardup_eval", "b")):
        for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(json.loads(line)[key])
    return list(dict.fromkeys(found))


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--preset", default="yuan2_2b", help="yuan2_tiny for a smoke run on a CPU")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eval-gate-"))
    base = work / "base"
    yuan = ROOT / "tests" / "fixtures" / "yuan_tokenizer"
    tokenizer = ["--tokenizer", str(yuan)] if args.preset == "yuan2_2b" else []
    init_s = _timed([sys.executable, "-m", "trainer", "init", "--preset", args.preset, "--dtype", "bfloat16",
                     *tokenizer, "--out", str(base)])
    prompts = _prompts()
    cases = work / "cases.jsonl"
    with cases.open("w", encoding="utf-8") as handle:
        for i in range(args.cases):
            prompt = prompts[i % len(prompts)]
            handle.write(json.dumps({"id": f"case-{i}", "prompt": prompt, "response": prompt[:40], "source": "web"},
                                    ensure_ascii=False) + "\n")
    seconds = {}
    for name, data in (("cases", cases), ("general", ROOT / "trainer" / "assets" / "general.jsonl")):
        command = eval_command(base=base, model=base, data=data, split="eval", out=work / name,
                               max_new_tokens=args.max_new_tokens, seq_len=args.seq_len)
        seconds[name] = round(_timed(command), 1)
        print(name, seconds[name], "s", flush=True)
    summary = json.loads((work / "cases" / "comparison.json").read_text(encoding="utf-8"))["summary"]
    import torch

    result = {
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "preset": args.preset,
        "rows": [{"name": f"eval_gate_{args.cases}x{args.max_new_tokens}", "seconds": round(sum(seconds.values()), 1),
                  "cases_s": seconds["cases"], "general_s": seconds["general"], "cases": args.cases,
                  "max_new_tokens": args.max_new_tokens, "seq_len": args.seq_len}],
        "init_2b_s": round(init_s, 1),
        "cases_summary": summary,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
