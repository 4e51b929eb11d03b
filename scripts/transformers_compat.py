"""Does a released checkpoint folder load every way Yuan users load models?

A release (written by `trainer/export.py`) must give the same token ids and the same
greedy tokens as cotrain itself under the transformers versions Yuan users have:
4.36 (what Yuan's docs pin), 4.46, and the 5.x installed in this project's `.venv`.
For each version this script runs a child process that loads the folder

1. `LlamaTokenizer.from_pretrained(folder, add_eos_token=False, add_bos_token=False,
   eos_token='<eod>')` plus Yuan's `add_tokens([...], special_tokens=True)`,
2. `AutoTokenizer.from_pretrained(folder, trust_remote_code=True)`,
3. `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` and
   `generate(ids, max_new_tokens=N, do_sample=False)`,

and reports ids, decodes and greedy tokens as JSON; the parent compares them with
cotrain's tokenizer (`trainer.load_tokenizer`), with plain sentencepiece applied by
Yuan's rules (the added-token strings split the text, each other chunk is
`sentencepiece.encode(chunk)`), and with `trainer.generation`'s greedy decoding, then
prints a table and exits 1 when anything differed.

Under transformers 5, `LlamaTokenizer` is a `tokenizers` conversion of the
sentencepiece model and does not give Yuan's ids; that row is reported (as "known")
but does not fail the run unless `--strict-llama5`.

The old versions are installed once each with `pip install --target` into
`.venv-compat/transformers-X/` (only transformers, tokenizers and huggingface_hub:
torch, numpy, safetensors, sentencepiece and the rest come from `.venv`, so no second
torch is ever downloaded); a later run finds them and installs nothing.

    .venv/bin/python scripts/transformers_compat.py --build-tiny
    .venv/bin/python scripts/transformers_compat.py --release runs/x/export/merged

Only the standard library is imported at the top: the same file runs as the child,
under each transformers version.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COMPAT_ROOT = REPO / ".venv-compat"
FIXTURE_TOKENIZER = REPO / "tests" / "fixtures" / "yuan_tokenizer" / "tokenizer.model"
#: Installed per version, without their dependencies (those come from .venv): tokenizers
#: is the newest release inside that transformers' pin (<0.19 and <0.21), huggingface_hub
#: one current when it came out (both accept any 0.x from 0.19.3 / 0.23.2 on).
PINNED: dict[str, list[str]] = {
    "4.36.2": ["transformers==4.36.2", "tokenizers==0.15.2", "huggingface_hub==0.20.3"],
    "4.46.3": ["transformers==4.46.3", "tokenizers==0.20.3", "huggingface_hub==0.26.5"],
}
INSTALLED = "installed"
#: Yuan's `add_tokens` list (`tools/preprocess_data_yuan.py`), in its order.
YUAN_ADD_TOKENS = [
    "<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>",
    "<commit_before>", "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>",
    "<jupyter_code>", "<jupyter_output>", "<empty_output>",
]
EOD, SEP = "<eod>", "<sep>"
#: Text that Yuan users send: each must encode to Yuan's ids and decode back to itself.
PROMPTS = [
    "John买了3件衬衫，每件售价为20美元。他总共支付了多少钱？",
    "The quick brown fox jumps over the lazy dog. What does it say about foxes?",
    "def add(a, b):\n    \"\"\"Sum.\"\"\"\n    return a + b\n\n\tif x:\n\t\treturn 1\n",
    "求解 $\\int_0^1 x^2\\,dx = \\frac{1}{3}$，并证明 \\(a^2+b^2\\ge 2ab\\)。",
    "今天天气很好 😀🎉👍🏽 let's go! 👨‍👩‍👧",
    "全角空格：　你好，ＡＢＣ１２３！不间断\u00a0空格\u00a0here",
    "   leading and trailing spaces   ",
    "第一行\n\n\n第四行\r\n结束\n",
    "写着 <sep> 和 <eod> 结束",
    "问题<sep>回答<eod>",
    "<mask>填空<FIM_PREFIX>前缀<FIM_SUFFIX>后缀<FIM_MIDDLE>",
    "<commit_before>old<commit_msg>fix bug<commit_after>new<jupyter_code>print(1)<empty_output>",
    "<n>写成 <n> 的换行 and <pad> tokens",
    "literal <s>, <unk> and </s> in text",
    " ",
    "x",
]


# -- environments -------------------------------------------------------------------


def site_dir(version: str) -> Path:
    return COMPAT_ROOT / f"transformers-{version}"


def ensure_installed(version: str, python: str = sys.executable) -> tuple[Path, float]:
    """The folder holding transformers `version` (installed now if missing) and the install time.

    A folder is complete only with its `INSTALLED.json` naming exactly the pinned
    requirements; an interrupted install leaves a temporary folder, never a half one.
    Raises `RuntimeError` with pip's output when pip fails.
    """
    requirements = PINNED[version]
    target = site_dir(version)

    def complete() -> bool:
        try:
            marker = json.loads((target / "INSTALLED.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return marker.get("requirements") == requirements

    if complete():
        return target, 0.0
    COMPAT_ROOT.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".transformers-{version}-", dir=COMPAT_ROOT))
    try:
        # --no-deps: everything else (torch above all) is the main venv's; --target
        # would otherwise install a full second set of dependencies.
        cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-deps",
               "--target", str(tmp), *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(
                f"pip could not install transformers {version} (exit {proc.returncode}):\n$ {' '.join(cmd)}\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        (tmp / "INSTALLED.json").write_text(json.dumps({"requirements": requirements}) + "\n", encoding="utf-8")
        # Another process (a parallel test, say) may have finished the same install meanwhile:
        # keep its folder, which it may be using, and drop ours.
        if not complete():
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, time.monotonic() - start


def child_env(site: Path | None, modules: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The child must see only the transformers under test (and no project code).
    paths = [str(site)] if site is not None else []
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    # transformers copies the remote code into a modules cache: a fresh one per run and
    # version, so that no copy from another run or version is ever imported.
    env["HF_MODULES_CACHE"] = str(modules)
    return env


# -- the child: one transformers version ---------------------------------------------


def _attempt(out: dict[str, Any], key: str, fn: Any) -> None:
    """Run one load way; its result, or its error with the traceback's last lines, goes to `out[key]`."""
    import traceback

    try:
        out[key] = fn()
    except Exception as exc:  # each way is reported on its own; one failing must not hide the others
        out[key] = {"error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc().splitlines()[-12:]}


def run_child(release: str, job: dict[str, Any]) -> dict[str, Any]:
    """Load `release` the three ways under the importable transformers; JSON-able results."""
    import warnings

    warnings.filterwarnings("ignore")
    import tokenizers
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    prompts: list[str] = job["prompts"]
    out: dict[str, Any] = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "transformers_file": transformers.__file__,
        "torch": torch.__version__,
    }

    def tokenizer_report(tok: Any) -> dict[str, Any]:
        ids = [tok.encode(p) for p in prompts]
        called = [tok(p)["input_ids"] for p in prompts]
        return {
            "class": type(tok).__name__,
            "len": len(tok),
            "added_ids": {t: tok.convert_tokens_to_ids(t) for t in [EOD, SEP, *YUAN_ADD_TOKENS]},
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "ids": ids,
            "call_ids": called,
            "decoded": [tok.decode(i) for i in ids],
            "decoded_skip": [tok.decode(i, skip_special_tokens=True) for i in ids],
            "batch_decoded": tok.batch_decode(ids),
        }

    def llama() -> dict[str, Any]:
        from transformers import LlamaTokenizer

        tok = LlamaTokenizer.from_pretrained(release, add_eos_token=False, add_bos_token=False, eos_token=EOD)
        added = tok.add_tokens(YUAN_ADD_TOKENS, special_tokens=True)
        return {**tokenizer_report(tok), "newly_added": added}

    def auto_tokenizer() -> dict[str, Any]:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(release, trust_remote_code=True)
        report = tokenizer_report(tok)
        # A user's save_pretrained copy must load and encode the same.
        with tempfile.TemporaryDirectory() as tmp:
            tok.save_pretrained(tmp)
            again = AutoTokenizer.from_pretrained(tmp, trust_remote_code=True)
            report["resaved_ids"] = [again.encode(p) for p in prompts]
            report["resaved_class"] = type(again).__name__
        # Yuan's scripts call add_tokens on whatever tokenizer they load: it must add nothing.
        report["newly_added"] = tok.add_tokens(YUAN_ADD_TOKENS, special_tokens=True)
        report["ids_after_add"] = [tok.encode(p) for p in prompts]
        return report

    def model() -> dict[str, Any]:
        from transformers import AutoModelForCausalLM

        dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        hf = AutoModelForCausalLM.from_pretrained(release, trust_remote_code=True, **{dtype_key: torch.float32})
        hf.eval()
        eos = job["eod_id"]
        n = job["max_new_tokens"]

        def new_tokens(row: list[int], prompt_len: int) -> list[int]:
            new = row[prompt_len:]
            # cotrain stops at <eod> and leaves it out; generate() pads finished rows with it.
            return new[: new.index(eos)] if eos in new else new

        greedy = []
        for ids in job["prompt_ids"]:
            # Exactly the call of Yuan's docs: no attention mask, eos from the generation config.
            with torch.no_grad():
                gen = hf.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
            greedy.append(new_tokens(gen[0].tolist(), len(ids)))
        # A user's batch: the remote tokenizer left-pads, the model reads the mask.
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(release, trust_remote_code=True)
        batch = tok([p + SEP for p in prompts], padding=True, return_tensors="pt")
        with torch.no_grad():
            gen = hf.generate(**batch, max_new_tokens=n, do_sample=False)
        width = batch["input_ids"].shape[1]
        batched = [new_tokens(row, width) for row in gen.tolist()]
        batch_inputs = [[t for t, m in zip(r, mk, strict=True) if m]
                        for r, mk in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True)]
        return {"class": type(hf).__name__, "dtype": str(next(hf.parameters()).dtype), "greedy": greedy,
                "batched": batched, "batch_inputs": batch_inputs, "padding_side": tok.padding_side}

    _attempt(out, "llama", llama)
    _attempt(out, "auto_tokenizer", auto_tokenizer)
    _attempt(out, "model", model)
    return out


# -- the parent: what cotrain says ----------------------------------------------------


def yuan_added_tokens(model_file: Path) -> dict[str, int]:
    """The added tokens of Yuan's pipeline: `<eod>`, then the add list; names the model lacks get the next ids."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    added: dict[str, int] = {}
    next_id = sp.get_piece_size()
    for token in [EOD, *YUAN_ADD_TOKENS]:
        piece = sp.piece_to_id(token)
        if sp.id_to_piece(piece) == token:
            added[token] = piece
        else:
            added[token] = next_id
            next_id += 1
    return added


def rules_encode(sp: Any, added: dict[str, int], text: str) -> list[int]:
    """Yuan's rules, independently of cotrain's code: added strings split, chunks through sentencepiece."""
    pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
    ids: list[int] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            ids += sp.encode(text[pos:match.start()])
        ids.append(added[match.group()])
        pos = match.end()
    if pos < len(text):
        ids += sp.encode(text[pos:])
    return ids


def expected(release: Path, prompts: list[str], max_new_tokens: int) -> dict[str, Any]:
    """cotrain's ids and greedy tokens, and Yuan's rules applied with plain sentencepiece."""
    import sentencepiece
    import torch

    sys.path.insert(0, str(REPO))
    from trainer.checkpoint import load_model
    from trainer.generation import SamplingConfig, encode_prompt, generate
    from trainer.tokenizer import load_tokenizer

    tok = load_tokenizer(release)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(release / "tokenizer.model"))
    config = json.loads((release / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = {entry["content"]: int(i) for i, entry in config.get("added_tokens_decoder", {}).items()}
    # LlamaTokenizer also splits out its named special tokens (`<s>`, `<unk>`): pieces of the model.
    for key in ("bos_token", "unk_token"):
        name = config.get(key)
        if isinstance(name, str) and name not in added and sp.id_to_piece(sp.piece_to_id(name)) == name:
            added[name] = sp.piece_to_id(name)
    rules = [rules_encode(sp, added, p) for p in prompts]
    try:
        cotrain = [tok.encode(p, allow_special=True) for p in prompts]
    except TypeError:  # a tokenizer without the flag (an older trainer)
        cotrain = [tok.encode(p) for p in prompts]
    model = load_model(release, dtype=torch.float32)
    # `python -m trainer generate`: cotrain's own prompt encoding, one prompt at a time.
    prompt_ids = [encode_prompt(tok, p) for p in prompts]
    greedy = generate(model, prompt_ids, eod_id=tok.eod_id, sampling=SamplingConfig(max_new_tokens=max_new_tokens),
                      batch_size=1)
    # What a transformers user feeds: `prompt<sep>` through the tokenizer, all prompts in one
    # left-padded batch; cotrain decodes the same ids in its own batches.
    batch_ids = [rules_encode(sp, added, p + SEP) for p in prompts]
    batch_greedy = generate(model, batch_ids, eod_id=tok.eod_id,
                            sampling=SamplingConfig(max_new_tokens=max_new_tokens), batch_size=len(prompts))
    return {"rules": rules, "cotrain": cotrain, "prompt_ids": prompt_ids, "greedy": greedy,
            "batch_ids": batch_ids, "batch_greedy": batch_greedy,
            "eod_id": tok.eod_id, "added": added, "tokenizer_kind": type(tok).__name__}


def compare(version: str, got: dict[str, Any], want: dict[str, Any], prompts: list[str],
            strict_llama5: bool) -> list[dict[str, Any]]:
    """One row per (load way, check): status "ok", "FAIL" or "known" (5.x LlamaTokenizer)."""
    rows: list[dict[str, Any]] = []
    major = int(str(got.get("transformers", "0")).split(".")[0] or 0)

    def row(way: str, check: str, bad: list[str], known: bool = False) -> None:
        status = "ok" if not bad else ("known" if known else "FAIL")
        rows.append({"version": version, "way": way, "check": check, "status": status, "details": bad})

    def diffs(name: str, values: list[Any], targets: list[Any]) -> list[str]:
        out = []
        for i, (a, b) in enumerate(zip(values, targets, strict=True)):
            if a != b:
                out.append(f"{name} #{i} {prompts[i][:30]!r}: got {str(a)[:120]} want {str(b)[:120]}")
        return out

    for way in ("llama", "auto_tokenizer"):
        res = got.get(way) or {"error": "no result"}
        known = way == "llama" and major >= 5 and not strict_llama5
        if "error" in res:
            row(way, "load", [res["error"], *res.get("traceback", [])[-3:]], known)
            continue
        bad = diffs("ids", res["ids"], want["rules"]) + diffs("tok(text)", res["call_ids"], want["rules"])
        want_added = {t: want["added"][t] for t in [EOD, *YUAN_ADD_TOKENS]}
        if {t: res["added_ids"][t] for t in want_added} != want_added:
            bad.append(f"added-token ids {res['added_ids']} want {want_added}")
        row(way, "ids", bad, known)
        if way == "auto_tokenizer":
            bad = diffs("decode", res["decoded"], prompts) + diffs("batch_decode", res["batch_decoded"], prompts)
            bad += diffs("save_pretrained ids", res["resaved_ids"], want["rules"])
            bad += diffs("ids after Yuan's add_tokens", res["ids_after_add"], want["rules"])
            if res["newly_added"]:
                bad.append(f"Yuan's add_tokens added {res['newly_added']} tokens (want 0)")
            row(way, "decode", bad)
    res = got.get("model") or {"error": "no result"}
    if "error" in res:
        row("model", "load", [res["error"], *res.get("traceback", [])[-3:]])
    else:
        row("model", "greedy", diffs("greedy", res["greedy"], want["greedy"]))
        bad = diffs("batch input", res["batch_inputs"], want["batch_ids"])
        bad += diffs("batched greedy", res["batched"], want["batch_greedy"])
        if res["padding_side"] != "left":
            bad.append(f"tokenizer pads on the {res['padding_side']}")
        row("model", "batched", bad)
    return rows


def build_tiny(folder: Path, seed: int = 0) -> Path:
    """A tiny random release with the real Yuan tokenizer, through the trainer's own export steps."""
    sys.path.insert(0, str(REPO))
    from trainer.checkpoint import save_model
    from trainer.config import YuanConfig
    from trainer.hf import write_remote_code
    from trainer.hf.tokenizer_files import write_sentencepiece_tokenizer
    from trainer.model import YuanForCausalLM

    # initializer_range 0.1 makes the random logits peaked enough that greedy
    # arg-maxes are not near-ties (which float rounding could flip between two paths).
    config = YuanConfig(vocab_size=135040, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=1024, initializer_range=0.1,
                        torch_dtype="float32")
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} exists and is not empty; give --out a new folder")
    model = YuanForCausalLM(config)
    model.init_weights(seed=seed)
    save_model(model.eval(), folder)
    write_sentencepiece_tokenizer(folder, FIXTURE_TOKENIZER, yuan_added_tokens(FIXTURE_TOKENIZER))
    write_remote_code(folder)
    return folder


def print_table(rows: list[dict[str, Any]], versions: dict[str, str]) -> None:
    ways = [("llama", "LlamaTokenizer + add_tokens"), ("auto_tokenizer", "AutoTokenizer (remote)"),
            ("model", "AutoModelForCausalLM.generate")]
    header = ["load way", *[versions[v] for v in versions]]
    table = [header]
    for way, label in ways:
        line = [label]
        for v in versions:
            statuses = [r["status"] for r in rows if r["version"] == v and r["way"] == way]
            worst = "FAIL" if "FAIL" in statuses else "known diff" if "known" in statuses else "ok" if statuses else "-"
            line.append(worst)
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, line in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if r["status"] != "ok":
            print(f"\n[{r['status']}] transformers {versions[r['version']]} / {r['way']} / {r['check']}:")
            for detail in r["details"][:12]:
                print(f"    {detail}")
            if len(r["details"]) > 12:
                print(f"    ... {len(r['details']) - 12} more")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--release", type=Path, help="a released checkpoint folder")
    source.add_argument("--build-tiny", action="store_true", help="build a tiny random release and check it")
    source.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="with --build-tiny: where to build it (default: a temp folder)")
    parser.add_argument("--versions", default=",".join([*PINNED, INSTALLED]),
                        help=f"comma-separated: {', '.join(PINNED)} and/or '{INSTALLED}' (the .venv's 5.x)")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--strict-llama5", action="store_true",
                        help="count transformers 5's LlamaTokenizer differences as failures")
    parser.add_argument("--json", type=Path, help="also write every result and row here")
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        job = json.loads(args.job.read_text(encoding="utf-8"))
        result = run_child(str(args.child), job)
        args.result.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        return 0

    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    for v in versions:
        if v not in PINNED and v != INSTALLED:
            parser.error(f"unknown version {v!r}; choose from {', '.join([*PINNED, INSTALLED])}")
    with tempfile.TemporaryDirectory(prefix="transformers-compat-") as tmp:
        if args.build_tiny:
            release = build_tiny((args.out or Path(tmp) / "tiny_release").resolve())
            print(f"built tiny release at {release}")
        else:
            release = args.release.resolve()
            for name in ("config.json", "tokenizer.model", "tokenizer_config.json"):
                if not (release / name).is_file():
                    parser.error(f"{release}: no {name} (this checks releases with Yuan's sentencepiece tokenizer)")
        timings: dict[str, dict[str, float]] = {}
        sites: dict[str, Path | None] = {}
        for v in versions:
            if v == INSTALLED:
                sites[v] = None
                continue
            sites[v], took = ensure_installed(v)
            timings[v] = {"install_s": round(took, 1)}
            done = f"installed in {took:.1f} s" if took else "already installed"
            print(f"transformers {v}: {done} ({sites[v]})")

        want = expected(release, PROMPTS, args.max_new_tokens)
        job = {"prompts": PROMPTS, "prompt_ids": want["prompt_ids"], "eod_id": want["eod_id"],
               "max_new_tokens": args.max_new_tokens}
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        rows: list[dict[str, Any]] = []
        results: dict[str, Any] = {}
        labels: dict[str, str] = {}
        if want["cotrain"] != want["rules"]:
            bad = [f"#{i} {PROMPTS[i][:30]!r}: cotrain {a} rules {b}"
                   for i, (a, b) in enumerate(zip(want["cotrain"], want["rules"], strict=True)) if a != b]
            rows.append({"version": "cotrain", "way": "cotrain", "check": "ids vs rules", "status": "FAIL",
                         "details": bad})
            labels["cotrain"] = "cotrain"
        for v in versions:
            result_file = Path(tmp) / f"result-{v}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(release), "--job", str(job_file),
                   "--result", str(result_file)]
            start = time.monotonic()
            env = child_env(sites[v], Path(tmp) / f"modules-{v}")
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
            timings.setdefault(v, {})["run_s"] = round(time.monotonic() - start, 1)
            if proc.returncode or not result_file.is_file():
                got: dict[str, Any] = {"error": f"child exited {proc.returncode}: {proc.stderr[-3000:]}"}
                rows.append({"version": v, "way": "child", "check": "run", "status": "FAIL",
                             "details": proc.stderr.splitlines()[-15:]})
            else:
                got = json.loads(result_file.read_text(encoding="utf-8"))
                rows += compare(v, got, want, PROMPTS, args.strict_llama5)
            results[v] = got
            labels[v] = str(got.get("transformers", v))
            print(f"transformers {labels[v]}: checked in {timings[v]['run_s']} s")

    print()
    print_table([r for r in rows if r["version"] in versions], {v: labels[v] for v in versions})
    for r in rows:
        if r["version"] == "cotrain":
            print("\n[FAIL] cotrain's own tokenizer differs from Yuan's rules:")
            for d in r["details"][:12]:
                print(f"    {d}")
    failed = any(r["status"] == "FAIL" for r in rows)
    summary = {"release": str(release), "versions": labels, "timings": timings, "rows": rows,
               "results": results, "expected": want, "passed": not failed}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\n{'FAILED' if failed else 'PASSED'} ({', '.join(f'{labels[v]}: {timings[v]}' for v in versions)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
