"""Command line: `python -m trainer {train,eval,generate,export}`.

`train` is also what the worker launches, as `python -m trainer train` or
`torchrun --nproc-per-node N -m trainer train`. Exit status (`contract.Exit`): 0 success,
1 failed run (reason in result.json), 2 bad arguments or config, 3 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import contract
from .config import ConfigError

# The platform's evaluation runs `eval` on the gpu queue without the flag: the GPU is used wherever there is one.
DEVICE_HELP = "auto (default: the first GPU, in bf16, when there is one; else the CPU, float32), cpu, cuda, cuda:N"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune per a YAML run config")
    p.add_argument("--config", required=True, help="run config YAML (see trainer/configs/)")
    p.add_argument("--output-dir", help="run folder (overrides output_dir in the config)")

    p = sub.add_parser("eval", help="score a model (or compare base vs tuned) on a dataset split")
    p.add_argument("--model", required=True, help="checkpoint folder to score")
    p.add_argument("--base", help="base checkpoint to compare against (writes a before/after table)")
    p.add_argument("--data", required=True, help="dataset folder or file")
    p.add_argument("--split", default="eval",
                   help="the split to score (default eval); a single file, which has no split names, is scored whole")
    p.add_argument("--out", required=True, help=f"folder for {', '.join(contract.COMPARISON_OUTPUTS)} "
                                                f"(with --base) or {contract.SCORES}")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int,
                   help="prompts decoded together (default: 64 on a GPU, where a decode step costs about the same "
                        "for 16 prompts as for 64; 16 on the CPU)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = sub.add_parser("generate", help="answer prompts with a checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--file", help="a text file with one prompt per line")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = sub.add_parser("init", help="write a randomly initialised checkpoint of a preset architecture")
    p.add_argument("--preset", required=True, help="yuan2_tiny, yuan2_small or yuan2_2b")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", help="a folder with the tokenizer to ship (Yuan's tokenizer.model for yuan2_2b); "
                                       "default: the built-in byte tokenizer of the small presets")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="storage dtype of the weights (real Yuan2 checkpoints are bfloat16)")
    p.add_argument("--out", required=True)

    p = sub.add_parser("demo-base", help="build (once) the bundled tiny demo base model from the shipped text")
    p.add_argument("--out", required=True, help="checkpoint folder to create; reused when already complete")

    p = sub.add_parser("export", help="write the adapter and merged checkpoint of a training checkpoint")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help=f"a {contract.CHECKPOINTS}/step_* folder")
    source.add_argument("--run", help="a run folder: its latest complete checkpoint")
    p.add_argument("--out", required=True)

    args = parser.parse_args(argv)
    try:
        return {"train": _train, "eval": _eval, "generate": _generate, "init": _init,
                "demo-base": _demo_base, "export": _export}[args.command](args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return contract.Exit.USAGE


def _train(args: argparse.Namespace) -> int:
    from .runconfig import RunConfig
    from .train import run, write_result

    try:
        cfg = RunConfig.from_yaml(args.config)
    except ConfigError as exc:
        if args.output_dir:  # the caller watches this folder: tell it why nothing ran
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            write_result(Path(args.output_dir), {"status": contract.Status.FAILED, "error": f"ConfigError: {exc}"})
        raise
    if args.output_dir:
        cfg.output_dir = args.output_dir
    result = run(cfg)
    print(json.dumps({k: result.get(k) for k in ("status", "final_loss", "eval_loss", "error")}))
    return contract.exit_for(result["status"])


def _eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_model, pick_device
    from .data import load_examples, single_split
    from .evaluate import compare, eval_report, write_comparison
    from .generation import SamplingConfig
    from .tokenizer import check_vocab, load_tokenizer

    device = pick_device(args.device)
    batch_size = args.batch_size if args.batch_size is not None else (64 if device.type == "cuda" else 16)
    examples = load_examples(args.data, split=single_split(args.data) or args.split)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    tokenizer = load_tokenizer(args.model)
    tuned = load_model(args.model, device=device)
    check_vocab(tokenizer, tuned.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.base:
        base = load_model(args.base, device=device)
        check_vocab(tokenizer, base.config)
        result = compare(base, tuned, tokenizer, examples, sampling=sampling, seq_len=args.seq_len,
                         batch_size=batch_size)
        write_comparison(result, out)
        print(json.dumps(result["summary"], ensure_ascii=False))
    else:
        report = eval_report(tuned, tokenizer, examples, sampling=sampling, seq_len=args.seq_len,
                             batch_size=batch_size)
        (out / contract.SCORES).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(json.dumps(report["summary"], ensure_ascii=False))
    return contract.Exit.SUCCEEDED


def _generate(args: argparse.Namespace) -> int:
    from .checkpoint import load_model, pick_device
    from .generation import SamplingConfig, generate_text
    from .tokenizer import load_tokenizer

    prompts = list(args.prompt)
    if args.file:
        prompts += [line for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError("give at least one --prompt or a --file of prompts")
    model = load_model(args.model, device=pick_device(args.device))
    tokenizer = load_tokenizer(args.model)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    answers = generate_text(model, tokenizer, prompts, sampling=sampling, batch_size=args.batch_size)
    for prompt, answer in zip(prompts, answers, strict=True):
        print(json.dumps({"prompt": prompt, "answer": answer}, ensure_ascii=False))
    return contract.Exit.SUCCEEDED


def _init(args: argparse.Namespace) -> int:
    from .checkpoint import save_model
    from .config import preset
    from .hf import write_remote_code
    from .model import YuanForCausalLM
    from .tokenizer import byte_tokenizer, check_vocab, load_tokenizer

    config = preset(args.preset)
    # A byte-vocabulary preset ships the built-in tokenizer; yuan2_2b needs Yuan's own (--tokenizer).
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else byte_tokenizer()
    check_vocab(tokenizer, config)
    model = YuanForCausalLM(config)
    model.init_weights(args.seed)  # the same weights `model: {preset, init_seed}` trains from
    import torch

    save_model(model, args.out, dtype={"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype])
    tokenizer.save(args.out)
    write_remote_code(Path(args.out))
    print(args.out)
    return contract.Exit.SUCCEEDED


def _demo_base(args: argparse.Namespace) -> int:
    import shutil
    from importlib import resources

    from .checkpoint import verify_sha256sums
    from .runconfig import RunConfig
    from .train import run

    out = Path(args.out)
    if (out / "SHA256SUMS").is_file() and not verify_sha256sums(out):
        print(f"{out}: demo base model already built")
        return contract.Exit.SUCCEEDED
    cfg = RunConfig.from_yaml(Path(str(resources.files("trainer") / "configs" / "demo_base.yaml")))
    cfg.output_dir = str(out.with_name(out.name + ".run"))
    result = run(cfg)
    if result["status"] != contract.Status.SUCCEEDED:
        print(f"error: demo base training {result['status']}: {result.get('error')}", file=sys.stderr)
        return contract.Exit.FAILED
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(Path(cfg.output_dir) / contract.EXPORT / contract.EXPORT_MERGED, out)
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # checkpoints and optimizer state are not needed
    print(out)
    return contract.Exit.SUCCEEDED


def _export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint
    from .train import latest_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(Path(args.run))
    if checkpoint is None:
        raise FileNotFoundError(f"{args.run}: no complete checkpoint to export")
    print(json.dumps(export_checkpoint(checkpoint, args.out), indent=2))
    return contract.Exit.SUCCEEDED


if __name__ == "__main__":
    sys.exit(main())
