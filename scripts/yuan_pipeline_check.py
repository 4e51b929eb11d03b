"""The trainer's ids against the Yuan team's own preprocessing, run for real, on Yuan data-file lines.

    .venv/bin/python scripts/yuan_pipeline_check.py [--lines FILE.txt] [--tokenizer DIR] [--transformers 4.36.2]

The Yuan side is `tools/preprocess_data_yuan.py`'s encoding as the Yuan repository
runs it: transformers' slow `LlamaTokenizer` (installed into `.venv-compat/` by
`scripts/transformers_compat.py`; 4.36.2 is what Yuan's docs pin) with Yuan's
`add_tokens` list, the line cleaned as that script cleans it, `<eod>` appended.
The trainer's side is what a run does with the same file: `trainer.data.load_examples`
on the `.txt` file, then `encode_example`. Without `--lines`, the lines are this
repository's own Chinese/English data and Python source (bench/tokenize_throughput.py's
corpus), the test cases and the two real lines of the Yuan docs.

Two kinds of line differ by design and are counted apart: a literal `<sep>`, `[SEP]`
or `<eod>` inside the text (the trainer keeps people's text as text; Yuan's script
makes it a delimiter), and a response that cleans to whitespace only (the trainer
drops the example and counts it). Exits 1 if any other line differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
FIXTURE = ROOT / "tests" / "fixtures" / "yuan_tokenizer"

#: Runs inside the old transformers: Yuan's encoding of each line, as its script does it.
_YUAN_CHILD = r'''
import json, re, sys
from transformers import LlamaTokenizer
tokenizer = LlamaTokenizer.from_pretrained(sys.argv[1], add_eos_token=False, add_bos_token=False, eos_token="<eod>")
tokenizer.add_tokens(["<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>",
                      "<commit_before>", "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>",
                      "<jupyter_code>", "<jupyter_output>", "<empty_output>"], special_tokens=True)
out = []
with open(sys.argv[2], encoding="utf-8") as fh:
    for line in fh:
        if line == "\n":
            out.append(None)
            continue
        data = line[3:].strip() if line[:3] == "<n>" else line.strip()
        data = data.replace("\r", "").replace("\n", "").replace("<n>", "\n").replace("\u2583", "")
        data = data.replace("[SEP]", "<sep>")
        if re.sub(r"(\n)+", "", data) == "":
            out.append(None)
            continue
        out.append(tokenizer.encode(data) + [tokenizer.eos_token_id])
json.dump(out, open(sys.argv[3], "w"))
'''


def default_lines() -> list[str]:
    sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "trainer")]
    from test_yuan_tokenization import CASES, REAL_LINES, as_line  # type: ignore[import-not-found]
    from tokenize_throughput import corpus  # type: ignore[import-not-found]

    pairs = [*corpus(3000, seed=1), *((p, r) for p, r in CASES if "\r" not in p + r)]
    return [*REAL_LINES, *(as_line(p, r) for p, r in pairs)]


def yuan_ids(version: str, tokenizer: Path, lines_file: Path) -> list[list[int] | None]:
    spec = importlib.util.spec_from_file_location("transformers_compat", ROOT / "scripts" / "transformers_compat.py")
    assert spec and spec.loader
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    site, _ = compat.ensure_installed(version)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "yuan.json"
        env = {**os.environ, "PYTHONPATH": str(site), "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
        subprocess.run([sys.executable, "-c", _YUAN_CHILD, str(tokenizer), str(lines_file), str(out)],
                       env=env, check=True, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def check(lines_file: Path, tokenizer: Path, version: str) -> dict[str, Any]:
    from trainer.data import encode_example, load_examples
    from trainer.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    raw = lines_file.read_text(encoding="utf-8").split("\n")
    by_line = {int(ex.id.split("-")[1]): ex for ex in load_examples(lines_file)}
    theirs = yuan_ids(version, tokenizer, lines_file)
    counts = {"lines": 0, "identical": 0, "literal_delimiter": 0, "whitespace_response": 0, "other": 0}
    examples = []
    for number, want in enumerate(theirs, start=1):
        if want is None:
            continue
        counts["lines"] += 1
        ex = by_line.get(number)
        enc = encode_example(ex, tok, seq_len=1 << 20) if ex else "not loaded"
        got = enc if isinstance(enc, str) else enc.input_ids
        if got == want:
            counts["identical"] += 1
            continue
        line = raw[number - 1]
        _, _, tail = line.replace("[SEP]", "<sep>").partition("<sep>")
        if "<sep>" in tail or "<eod>" in line:
            counts["literal_delimiter"] += 1
        elif got == "empty_response":
            counts["whitespace_response"] += 1
        else:
            counts["other"] += 1
            examples.append({"line": number, "text": line[:200], "trainer": got if isinstance(got, str) else got[:40],
                             "yuan": want[:40]})
    return {"transformers": version, "tokenizer": str(tokenizer), **counts, "differing": examples[:10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=Path, help="a Yuan fine-tuning .txt file (default: a built-in corpus)")
    parser.add_argument("--tokenizer", type=Path, default=FIXTURE)
    parser.add_argument("--transformers", default="4.36.2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lines_file = args.lines
        if lines_file is None:
            lines_file = Path(tmp) / "lines.txt"
            lines_file.write_text("\n".join(default_lines()) + "\n", encoding="utf-8")
        result = check(lines_file, args.tokenizer, args.transformers)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if result["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
