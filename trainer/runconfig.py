"""Run configuration: typed dataclasses, read from and written to YAML.

A run config says what to train (base model, data), how (recipe, LoRA), and
where results go. Unknown keys are refused with their dotted name, values are
type-checked, and the resolved config is saved beside every checkpoint, so a
checkpoint always says how it was made. No class is ever named in YAML.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .config import ConfigError


@dataclasses.dataclass
class ModelSection:
    """The base model: a checkpoint folder in the HF Yuan2 layout, or a named preset."""

    #: Local checkpoint folder (config.json + weights + tokenizer files).
    path: str | None = None
    #: Random-initialised architecture instead of a folder: yuan2_tiny, yuan2_small, yuan2_2b.
    preset: str | None = None
    #: Seed of the random initialisation of a preset.
    init_seed: int = 0

    def __post_init__(self) -> None:
        if (self.path is None) == (self.preset is None):
            raise ConfigError("model: give exactly one of model.path or model.preset")


@dataclasses.dataclass
class DataSection:
    """Training data written by the platform (datasets save_to_disk, JSONL or Parquet)."""

    path: str = ""
    #: Split used for training, and the held-out split for eval loss/generation.
    train_split: str = "train"
    eval_split: str | None = "eval"
    #: Tokens per row; examples are packed into rows of exactly this length.
    seq_len: int = 512
    #: Pack several examples per row (positions and attention reset at each <eod>).
    pack: bool = True
    #: General data mixed in against forgetting: "builtin" (shipped set), a path, or null.
    replay_path: str | None = None
    #: Fraction of the training mix that is replay data, in [0, 1).
    replay_ratio: float = 0.0
    #: Which targets carry loss. "yuan" (Yuan's Megatron SFT): the last prompt token
    #: learns to predict <sep>, then the response and the closing <eod> are learned.
    #: "response": the response and <eod> only (targets from the <sep> position on).
    loss_mask: Literal["yuan", "response"] = "yuan"

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path is required")
        if self.seq_len < 8:
            raise ConfigError(f"data.seq_len must be at least 8, got {self.seq_len}")
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ConfigError(f"data.replay_ratio must be in [0, 1), got {self.replay_ratio}")
        if self.replay_ratio > 0 and not self.replay_path:
            raise ConfigError("data.replay_ratio > 0 needs data.replay_path (or 'builtin')")


@dataclasses.dataclass
class LoraSection:
    """LoRA adapter settings (used when train.method is 'lora')."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    #: Module names to adapt; 'conv1'/'conv2' are the LFA convolutions.
    targets: list[str] = dataclasses.field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    #: The fused layout of the linear adapters (`trainer.lora`): a speed choice, the same
    #: maths. "auto": on for one CUDA process, where it was measured to pay; off on CPU
    #: and for sharded (FSDP) runs, which refuse true.
    fused: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        allowed = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                   "conv1", "conv2"}
        unknown = sorted(set(self.targets) - allowed)
        if not self.targets or unknown:
            raise ConfigError(f"lora.targets: unknown module(s) {unknown}; choose from {sorted(allowed)}")


@dataclasses.dataclass
class TrainSection:
    """The optimisation recipe."""

    method: Literal["full", "lora"] = "lora"
    #: Optimizer steps in total (one step = micro_batch_size * grad_accum * world_size rows).
    max_steps: int = 100
    micro_batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.95])
    #: Clip the global gradient norm to this value (0 = no clipping).
    grad_clip: float = 1.0
    seed: int = 1234
    #: "auto": bf16 autocast on GPUs, float32 on CPU.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    activation_checkpointing: bool = False
    #: torch.compile each decoder layer; null = on GPUs only (CPU compiles cost more than they save).
    compile: bool | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "micro_batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0 or self.warmup_steps > self.max_steps:
            raise ConfigError(f"train.warmup_steps must be in [0, max_steps], got {self.warmup_steps}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if self.grad_clip < 0:
            raise ConfigError(f"train.grad_clip must be >= 0, got {self.grad_clip}")


@dataclasses.dataclass
class CheckpointSection:
    #: Save a resumable checkpoint every this many steps (0 = only at the end).
    every_steps: int = 50
    #: Keep this many most recent checkpoints.
    keep_last: int = 2

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.keep_last < 1:
            raise ConfigError("checkpoint.every_steps must be >= 0 and checkpoint.keep_last >= 1")


@dataclasses.dataclass
class EvalSection:
    #: Eval loss on the held-out split every this many steps (0 = only at the end).
    every_steps: int = 0
    #: Generate answers for the eval prompts at the end and score them.
    generate: bool = True
    max_new_tokens: int = 64
    batch_size: int = 16
    #: At most this many eval examples are generated for (0 = all).
    max_examples: int = 0


@dataclasses.dataclass
class RunConfig:
    """Everything a training run needs; `output_dir` is the run folder."""

    model: ModelSection
    data: DataSection
    output_dir: str = "runs/run"
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    lora: LoraSection = dataclasses.field(default_factory=LoraSection)
    checkpoint: CheckpointSection = dataclasses.field(default_factory=CheckpointSection)
    eval: EvalSection = dataclasses.field(default_factory=EvalSection)
    #: Export the adapter and merged checkpoint into output_dir/export at the end.
    export: bool = True

    # -- YAML --------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        try:
            cfg = cls.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        cfg.resolve_paths(path.parent)
        return cfg

    def resolve_paths(self, base: Path) -> None:
        """Make input paths absolute, relative to `base` (the YAML file's folder).

        Inputs travel with the config that names them; `output_dir` stays relative
        to the working directory, where the caller wants results.
        """
        def resolve(value: str | None) -> str | None:
            if value is None or value == "builtin" or Path(value).is_absolute():
                return value
            return str((base / value).resolve())

        self.model.path = resolve(self.model.path)
        self.data.path = resolve(self.data.path) or ""
        self.data.replay_path = resolve(self.data.replay_path)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


def _build(cls: type, raw: Any, where: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, checking keys and value types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ConfigError(f"unknown key {where}{unknown[0]!s} (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}{name}")
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key {where}{missing[0]}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")  # a bug in this module, not in the YAML
