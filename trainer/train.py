"""The fine-tuning recipe: setup -> train -> save -> evaluate -> export.

One linear loop. A step consumes a fixed, seeded slice of the row order
(`_step_rows`), so the data position is a pure function of the step number and
resuming from a checkpoint replays exactly the batches an uninterrupted run
would have seen. Each micro-batch's loss is divided by the total loss weight of
the whole global step (known up front on every rank), so accumulation and data
parallelism give the gradient of one big batch.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from . import contract
from . import data as data_mod
from .checkpoint import hf_state, load_model, save_checkpoint
from .config import preset
from .distributed import World, all_reduce_sum, barrier, close_world, init_world, shard_model
from .loss import CausalLMLoss
from .model import DecoderLayer, YuanForCausalLM
from .runconfig import RunConfig
from .tokenizer import Tokenizer, byte_tokenizer, check_vocab, load_tokenizer

CHECKPOINTS, COMPLETE = contract.CHECKPOINTS, contract.CHECKPOINT_COMPLETE


class TrainingError(RuntimeError):
    """The run cannot proceed (bad data, nothing to train on, ...)."""


class _Cancelled(Exception):
    pass


# -- setup helpers -------------------------------------------------------------


def base_model_and_tokenizer(cfg: RunConfig) -> tuple[YuanForCausalLM, Tokenizer]:
    """The base model in float32 on CPU, and its tokenizer (checked against each other)."""
    if cfg.model.path:
        model = load_model(cfg.model.path, dtype=torch.float32)
        tokenizer = load_tokenizer(cfg.model.path)
    else:
        assert cfg.model.preset is not None  # ModelSection: exactly one of path and preset
        model = YuanForCausalLM(preset(cfg.model.preset))
        model.init_weights(cfg.model.init_seed)
        tokenizer = byte_tokenizer()
    check_vocab(tokenizer, model.config)
    return model, tokenizer


def _load_training_data(cfg: RunConfig, tokenizer: Tokenizer, seed: int
                        ) -> tuple[data_mod.RowSet, data_mod.DataReport, list[data_mod.Example]]:
    examples = data_mod.load_examples(cfg.data.path, split=cfg.data.train_split)
    if cfg.data.replay_ratio > 0:
        replay_path = cfg.data.replay_path
        assert replay_path is not None  # DataSection: a replay ratio needs a replay path
        replay = (data_mod.general_replay_set() if replay_path == "builtin"
                  else data_mod.load_examples(replay_path, split=cfg.data.train_split))
        examples = data_mod.mix_replay(examples, replay, cfg.data.replay_ratio, seed)
    rows, report = data_mod.build_rows(examples, tokenizer, cfg.data.seq_len, pack=cfg.data.pack,
                                       loss_mask=cfg.data.loss_mask)
    if len(rows) == 0:
        raise TrainingError(f"no trainable examples in {cfg.data.path}: {report.summary()}")
    eval_examples: list[data_mod.Example] = []
    if cfg.data.eval_split and cfg.data.eval_split in data_mod.available_splits(cfg.data.path):
        eval_examples = data_mod.load_examples(cfg.data.path, split=cfg.data.eval_split)
    return rows, report, eval_examples


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Norm weights and biases are not decayed (standard practice for LLM fine-tuning).
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, cfg: RunConfig) -> float:
    """Linear warmup to the peak, then cosine decay to `min_lr_ratio` of it."""
    t = cfg.train
    if t.warmup_steps and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    span = max(1, t.max_steps - t.warmup_steps)
    progress = min(1.0, (step - t.warmup_steps) / span)
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _step_rows(step: int, n_rows: int, global_batch: int, seed: int) -> list[int]:
    """Row indices of one optimizer step: a seeded permutation per epoch, consumed in order."""
    out = []
    for pos in range(step * global_batch, (step + 1) * global_batch):
        epoch, offset = divmod(pos, n_rows)
        out.append(_epoch_order(n_rows, seed, epoch)[offset])
    return out


@functools.lru_cache(maxsize=4)
def _epoch_order(n_rows: int, seed: int, epoch: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_rows, generator=gen).tolist()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# -- checkpoints ---------------------------------------------------------------


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written (a crash mid-save leaves no COMPLETE)."""
    folder = run_dir / CHECKPOINTS
    done = sorted(p for p in folder.glob("step_*") if (p / COMPLETE).is_file()) if folder.is_dir() else []
    return done[-1] if done else None


def _save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     cfg: RunConfig, tokenizer: Tokenizer, world: World, base_config: Any) -> Path:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = cast(dict[str, torch.Tensor], get_model_state_dict(model, options=opts))
    optim_state = get_optimizer_state_dict(model, optimizer, options=opts)
    final = run_dir / CHECKPOINTS / f"step_{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if world.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if cfg.train.method == "lora":
            from .lora import save_adapter
            save_adapter(cfg.lora, model_state, tmp / "adapter")
        else:
            save_checkpoint(hf_state(model_state, base_config), base_config, tmp / "model")
            tokenizer.save(tmp / "model")
        torch.save(optim_state, tmp / "optimizer.pt")
        cfg.save(tmp / "config.yaml")
        (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n", encoding="utf-8")
    barrier(world)
    torch.save({"python": random.getstate(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
               tmp / f"rng-{world.rank}.pt")
    barrier(world)
    if world.is_main:
        (tmp / COMPLETE).write_text("", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        older = sorted(p for p in (run_dir / CHECKPOINTS).glob("step_*") if p.suffix != ".tmp")
        for stale in older[:-cfg.checkpoint.keep_last]:
            shutil.rmtree(stale, ignore_errors=True)
    barrier(world)
    return final


def _restore_rng(ckpt: Path, world: World) -> None:
    path = ckpt / f"rng-{world.rank}.pt"
    if not path.is_file():  # resumed on a different world size: reseed deterministically
        return
    state = torch.load(path, weights_only=False)  # our own file: python's RNG state is a tuple
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- metrics -------------------------------------------------------------------


class Metrics:
    """Appends one JSON object per line and flushes, so another process can tail it."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            # Lines after the resumed step were computed by the lost attempt: drop them.
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def last_loss(self) -> float:
        """The newest training loss on record (a run resumed at its end reports it again)."""
        if not self.path.exists():
            return float("nan")
        losses = [r["loss"] for r in map(json.loads, self.path.read_text(encoding="utf-8").splitlines())
                  if r.get("kind") == "train"]
        return losses[-1] if losses else float("nan")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    tmp = run_dir / f"{contract.RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / contract.RESULT)


# -- the run -------------------------------------------------------------------


def run(cfg: RunConfig) -> dict[str, Any]:
    """Train per `cfg`, writing everything into `cfg.output_dir`; returns result.json's content.

    Never raises for a failed run: the reason goes into result.json with
    status "failed" (or "cancelled" on SIGTERM), and the CLI exits non-zero.
    """
    world = init_world()
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result: dict[str, Any] = {"status": "running", "started_at": started, "world_size": world.size}
    cancelled = {"flag": False}

    def on_term(signum: int, frame: Any) -> None:  # finish the step in hand, then stop
        cancelled["flag"] = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        result.update(_train(cfg, run_dir, world, cancelled))
        result["status"] = contract.Status.SUCCEEDED
    except _Cancelled:
        result["status"] = contract.Status.CANCELLED
    except Exception as exc:
        result["status"] = contract.Status.FAILED
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=8)
        print(f"training failed: {result['error']}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        result["finished_at"] = time.time()
        if world.is_main:
            write_result(run_dir, result)
        close_world(world, wait_for_peers=result["status"] == contract.Status.SUCCEEDED)
    return result


def _train(cfg: RunConfig, run_dir: Path, world: World, cancelled: dict[str, bool]) -> dict[str, Any]:
    t = cfg.train
    _seed_everything(t.seed)
    if world.is_main:
        cfg.save(run_dir / contract.RESOLVED_CONFIG)
    resume_from = latest_checkpoint(run_dir)
    start_step = 0
    if resume_from is not None:
        _check_same_run(RunConfig.from_yaml(resume_from / "config.yaml"), cfg, resume_from)
        start_step = json.loads((resume_from / "state.json").read_text())["step"]

    # Setup: model, tokenizer, data. A full fine-tune resumes from the checkpoint's
    # weights; LoRA loads the base again and the checkpoint's adapter on top.
    if resume_from is not None and t.method == "full":
        model = load_model(resume_from / "model", dtype=torch.float32)
        tokenizer = load_tokenizer(resume_from / "model")
    else:
        model, tokenizer = base_model_and_tokenizer(cfg)
    base_config = model.config
    rows, report, eval_examples = _load_training_data(cfg, tokenizer, t.seed)
    if world.is_main:
        (run_dir / contract.DATA_REPORT).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"data: {report.summary()}", file=sys.stderr)
    if t.method == "lora":
        from .lora import load_adapter, wrap_lora
        model = wrap_lora(model, cfg.lora, device=world.device, world_size=world.size)
        if resume_from is not None:
            load_adapter(model, resume_from / "adapter")
    model.model.gradient_checkpointing = t.activation_checkpointing
    bf16 = t.precision == "bf16" or (t.precision == "auto" and world.device.type == "cuda")
    # What trains, compiles and shards: the model's modules with the loss in the forward
    # (FSDP's root), under the model's own parameter names (checkpoints, optimizer state).
    net = CausalLMLoss(model)
    net.to(world.device)
    if t.compile if t.compile is not None else world.device.type == "cuda":
        for layer in (m for m in net.modules() if isinstance(m, DecoderLayer)):
            layer.compile()
    if world.distributed:
        shard_model(net, DecoderLayer, bf16=bf16)
    net.train()

    optimizer = torch.optim.AdamW(_param_groups(net, t.weight_decay), lr=t.lr, betas=(t.betas[0], t.betas[1]),
                                  fused=world.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    if resume_from is not None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        optim_state = torch.load(resume_from / "optimizer.pt", map_location="cpu", weights_only=True)
        set_optimizer_state_dict(net, optimizer, optim_state_dict=optim_state,
                                 options=StateDictOptions(full_state_dict=True))
        if t.method == "lora":
            from .lora import align_optimizer_state
            align_optimizer_state(optimizer)
        for _ in range(start_step):
            scheduler.step()
        _restore_rng(resume_from, world)
        if world.is_main:
            print(f"resumed from {resume_from.name} (step {start_step})", file=sys.stderr)

    metrics = Metrics(run_dir / contract.METRICS, world.is_main, start_step)
    global_batch = t.micro_batch_size * t.grad_accum * world.size
    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=bf16 and not world.distributed)
    trainable = [p for p in net.parameters() if p.requires_grad]
    progress = _progress(t.max_steps, start_step, world)
    step_tokens = t.micro_batch_size * t.grad_accum * cfg.data.seq_len * world.size
    loop_start, last_loss = time.time(), metrics.last_loss()

    for step in range(start_step, t.max_steps):
        # Ranks must stop at the same step, or the others would wait in a collective forever.
        if all_reduce_sum(torch.tensor(float(cancelled["flag"]), device=world.device), world) > 0:
            raise _Cancelled
        tick = time.time()
        indices = _step_rows(step, len(rows), global_batch, t.seed)
        total_weight = float(rows.weights[indices].sum())
        mine = indices[world.rank::world.size]
        loss_sum = torch.zeros((), device=world.device)
        for a in range(t.grad_accum):
            batch = rows.batch(mine[a * t.micro_batch_size:(a + 1) * t.micro_batch_size])
            batch = {k: v.to(world.device, non_blocking=True) for k, v in batch.items()}
            with autocast:
                loss, _ = net(batch["input_ids"], segment_ids=batch["segment_ids"], targets=batch["targets"],
                              weights=batch["weights"])
            # FSDP averages gradients over ranks; scale so the result is the global mean.
            (loss * (world.size / max(total_weight, 1e-12))).backward()
            loss_sum += loss.detach()
        grad_norm = _clip(trainable, t.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        last_loss = float(all_reduce_sum(loss_sum, world)) / max(total_weight, 1e-12)
        done = step + 1
        elapsed = time.time() - loop_start
        rate = (done - start_step) / max(elapsed, 1e-9)
        step_time = max(time.time() - tick, 1e-9)
        record = {"kind": "train", "step": done, "loss": round(last_loss, 6), "lr": scheduler.get_last_lr()[0],
                  "grad_norm": round(grad_norm, 6), "tokens_per_s": round(step_tokens / step_time, 1),
                  "eta_s": round((t.max_steps - done) / rate, 1), "elapsed_s": round(elapsed, 2),
                  "total_steps": t.max_steps}
        metrics.write(record)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
        if cfg.eval.every_steps and done % cfg.eval.every_steps == 0 and done < t.max_steps:
            metrics.write({"kind": "eval", "step": done, "eval_loss": _eval_loss(net, eval_examples,
                                                                                   tokenizer, cfg, world)})
        if cfg.checkpoint.every_steps and done % cfg.checkpoint.every_steps == 0 and done < t.max_steps:
            _save_checkpoint(run_dir, done, net, optimizer, cfg, tokenizer, world, base_config)
    if progress is not None:
        progress.close()

    final_ckpt = _save_checkpoint(run_dir, t.max_steps, net, optimizer, cfg, tokenizer, world, base_config)
    eval_loss = _eval_loss(net, eval_examples, tokenizer, cfg, world)
    metrics.write({"kind": "eval", "step": t.max_steps, "eval_loss": eval_loss})
    out: dict[str, Any] = {"steps": t.max_steps, "final_loss": last_loss, "eval_loss": eval_loss,
                           "resumed_from_step": start_step if resume_from else None,
                           "checkpoint": str(final_ckpt), "data": report.to_dict()}
    del model, net, optimizer
    if world.is_main and cfg.export:
        from .export import export_checkpoint
        out.update(export_checkpoint(final_ckpt, run_dir / contract.EXPORT))
    if world.is_main and cfg.eval.generate and eval_examples and cfg.export:
        merged = run_dir / contract.EXPORT / contract.EXPORT_MERGED
        out["generation"] = _generation_scores(merged, eval_examples, cfg, world)
    return out


def _check_same_run(saved: RunConfig, current: RunConfig, checkpoint: Path) -> None:
    """Refuse to resume checkpoints made by a different recipe (a reused run folder)."""
    def recipe(cfg: RunConfig) -> dict[str, Any]:
        d = cfg.to_dict()
        d["train"].pop("max_steps")  # extending a run is a legitimate resume
        d["lora"].pop("fused")  # a layout, the same maths: a resume may run on another machine
        sections = ("model", "data", "train", "lora") if cfg.train.method == "lora" else ("model", "data", "train")
        return {k: d[k] for k in sections}

    a, b = recipe(saved), recipe(current)
    if a != b:
        diff = sorted(f"{section}.{key}" for section in a for key in a[section]
                      if a[section].get(key) != b[section].get(key))
        raise TrainingError(f"{checkpoint} was made with a different config ({', '.join(diff)} differ); "
                            "use a new output_dir or restore the original config")


def _clip(params: Sequence[torch.Tensor], max_norm: float) -> float:
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)


def _progress(total: int, initial: int, world: World):  # -> tqdm | None
    """A progress bar on rank 0; without a terminal (a worker's log) a plain line every 30 s."""
    if not world.is_main:
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr,
                dynamic_ncols=tty, mininterval=1.0 if tty else 30.0, ascii=not tty)


@torch.no_grad()
def _eval_loss(net: CausalLMLoss, examples: list[data_mod.Example], tokenizer: Tokenizer, cfg: RunConfig,
               world: World) -> float | None:
    """Weighted token loss on the held-out split, rows shared out over the ranks."""
    if not examples:
        return None
    rows, _ = data_mod.build_rows(examples, tokenizer, cfg.data.seq_len, pack=cfg.data.pack,
                                  loss_mask=cfg.data.loss_mask)
    if len(rows) == 0:
        return None
    was_training = net.training
    net.eval()
    total = torch.zeros(2, device=world.device)
    mine = list(range(len(rows)))[world.rank::world.size]
    # Every rank runs the same number of forwards: FSDP needs all ranks in each all-gather.
    n_batches = math.ceil(math.ceil(len(rows) / world.size) / cfg.train.micro_batch_size)
    for b in range(n_batches):
        part = mine[b * cfg.train.micro_batch_size:(b + 1) * cfg.train.micro_batch_size] or [0]
        batch = {k: v.to(world.device) for k, v in rows.batch(part).items()}
        if not mine[b * cfg.train.micro_batch_size:(b + 1) * cfg.train.micro_batch_size]:
            batch["weights"] = torch.zeros_like(batch["weights"])  # padding batch for this rank
        loss, weight = net(batch["input_ids"], segment_ids=batch["segment_ids"], targets=batch["targets"],
                           weights=batch["weights"])
        total += torch.stack((loss.float(), weight.float()))
    total = all_reduce_sum(total, world)
    net.train(was_training)
    return float(total[0] / total[1]) if total[1] > 0 else None


def _generation_scores(merged: Path, examples: list[data_mod.Example], cfg: RunConfig, world: World
                       ) -> dict[str, Any]:
    """Greedy answers of the exported model on the eval prompts, scored; per-example file too."""
    from .evaluate import score_generations
    from .generation import SamplingConfig

    model = load_model(merged, device=world.device)
    tokenizer = load_tokenizer(merged)
    subset = examples[: cfg.eval.max_examples] if cfg.eval.max_examples else examples
    scores = score_generations(model, tokenizer, subset,
                               sampling=SamplingConfig(max_new_tokens=cfg.eval.max_new_tokens),
                               batch_size=cfg.eval.batch_size)
    path = Path(cfg.output_dir) / contract.EVAL_GENERATIONS
    with path.open("w", encoding="utf-8") as fh:
        for s in scores:
            fh.write(json.dumps(s.__dict__, ensure_ascii=False) + "\n")
    n = max(1, len(scores))
    return {"examples": len(scores), "exact_match": sum(s.exact_match for s in scores) / n,
            "chrf": sum(s.chrf for s in scores) / n, "file": str(path)}


__all__ = ["TrainingError", "base_model_and_tokenizer", "latest_checkpoint", "lr_factor", "run", "write_result"]
