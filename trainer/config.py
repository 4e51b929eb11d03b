"""Model configuration: the fields of a Yuan 2.0 `config.json`, typed.

Real Yuan2 checkpoints carry many keys that only matter to the code that wrote
them (`use_flash_attention`, `causal_mask`, `use_loss_mask`, `auto_map`, ...). We
read the ones that change the maths, keep every other key verbatim in `extra`,
and write them back on save, so a folder we re-export still loads in the public
reference code. A config that lacks a key the reference reads without a default
(`REFERENCE_KEYS`; a preset, say) gets the real Yuan2-2B-hf value on save.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

#: Token ids of the real Yuan2 vocabulary (`<eod>` doubles as pad/bos/eos).
YUAN_EOD_ID = 77185
YUAN_SEP_ID = 77187

#: Keys that the public reference `yuan_hf_model.py` reads from its config without a
#: default, and that its `configuration_yuan.py` does not default either: a
#: `config.json` without one of them fails there with an AttributeError. Every
#: `config.json` we write has all of them (`YuanConfig.to_dict`).
REFERENCE_KEYS = (
    "max_position_embeddings",  # LlamaAttention (rotary table size)
    "causal_mask",  # LlamaAttention
    "use_flash_attention",  # LlamaAttention
    "eod_token",  # LlamaModel, YuanForCausalLM
    "sep_token",  # YuanForCausalLM
    "reset_attention_mask",  # LlamaModel
    "reset_position_ids",  # LlamaModel
    "use_loss_mask",  # YuanForCausalLM
)
#: The real Yuan2-2B-hf values of the reference's flags that we do not interpret;
#: `config.json` files that bring their own keep them (they live in `extra`).
#: `use_flash_attention` stays off so that the reference runs without flash-attn.
REFERENCE_FLAGS: dict[str, bool] = {"causal_mask": True, "use_flash_attention": False, "use_loss_mask": False}


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or inconsistent."""


@dataclasses.dataclass
class YuanConfig:
    """Architecture hyper-parameters of a Yuan 2.0 decoder."""

    vocab_size: int = 135040
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    eod_token_id: int = YUAN_EOD_ID
    sep_token_id: int = YUAN_SEP_ID
    pad_token_id: int = YUAN_EOD_ID
    torch_dtype: str = "bfloat16"
    #: The reference's `<eod>` flags (see `trainer.model`): whether its plain forward
    #: blocks attention at `<eod>`. True in the real Yuan2 configs.
    reset_attention_mask: bool = True
    reset_position_ids: bool = True
    #: Keys of the source `config.json` that we do not interpret, kept verbatim.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config.json: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"config.json: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"config.json: head_dim {self.head_dim} must be even for rotary embeddings")
        if self.hidden_size % 2:
            raise ConfigError("config.json: hidden_size must be even (LFA halves it)")
        if self.hidden_act != "silu":
            raise ConfigError(f"config.json: hidden_act {self.hidden_act!r} is not supported (Yuan2 uses 'silu')")
        for name in ("reset_attention_mask", "reset_position_ids"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config.json: {name} must be true or false, got {getattr(self, name)!r}")
        for name in ("eod_token_id", "sep_token_id", "pad_token_id"):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise ConfigError(f"config.json: {name} {value} is outside the vocabulary (size {self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # -- config.json ---------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> YuanConfig:
        """Build from a `config.json` mapping; unknown keys go to `extra`.

        Yuan2 files spell the special tokens both as `eod_token` and
        `eod_token_id`; either is accepted.
        """
        raw = dict(raw)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        for key in list(raw):
            if key in known:
                kwargs[key] = raw.pop(key)
        # Yuan's own `eod_token`/`sep_token` win over the generic `*_token_id` keys,
        # which some Yuan2 files set to <eod> for every special token.
        for alias, name in (("eod_token", "eod_token_id"), ("sep_token", "sep_token_id")):
            if isinstance(raw.get(alias), int) and not isinstance(raw.get(alias), bool):
                kwargs[name] = raw[alias]
        if "pad_token_id" not in kwargs and "eod_token_id" in kwargs:
            kwargs["pad_token_id"] = kwargs["eod_token_id"]
        if kwargs.get("pad_token_id") is None:
            kwargs.pop("pad_token_id", None)
        if "rope_theta" not in kwargs and isinstance(raw.get("rope_parameters"), dict):
            kwargs["rope_theta"] = raw["rope_parameters"].get("rope_theta", 10000.0)
        try:
            return cls(**kwargs, extra=raw)
        except TypeError as exc:  # a value of the wrong type reached a comparison
            raise ConfigError(f"config.json: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The `config.json` mapping, in the key spelling of the public Yuan2 files.

        It always holds every key of `REFERENCE_KEYS`; values the source file brought
        (in `extra` or in the typed fields) win over the Yuan2-2B-hf defaults.
        """
        out: dict[str, Any] = {
            "architectures": ["YuanForCausalLM"],
            "model_type": "yuan",
            "use_cache": True,
            **REFERENCE_FLAGS,
        }
        out.update(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        out["eod_token"] = self.eod_token_id
        out["sep_token"] = self.sep_token_id
        out.setdefault("bos_token_id", self.eod_token_id)
        out.setdefault("eos_token_id", self.eod_token_id)
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> YuanConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(raw)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- presets -------------------------------------------------------------------

#: Special-token ids of the built-in byte tokenizer (see `trainer.tokenizer`).
BYTE_VOCAB = 384
BYTE_EOD_ID = 256
BYTE_SEP_ID = 257


def preset(name: str) -> YuanConfig:
    """A named architecture: `yuan2_2b` (the real shape) or a tiny one for tests/demo."""
    presets = {
        "yuan2_2b": YuanConfig(),
        # Tiny shapes use the byte tokenizer's vocabulary so they run offline.
        "yuan2_tiny": YuanConfig(
            vocab_size=BYTE_VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=1024, eod_token_id=BYTE_EOD_ID,
            sep_token_id=BYTE_SEP_ID, pad_token_id=BYTE_EOD_ID, torch_dtype="float32",
        ),
        "yuan2_small": YuanConfig(
            vocab_size=BYTE_VOCAB, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
            num_attention_heads=8, max_position_embeddings=2048, eod_token_id=BYTE_EOD_ID,
            sep_token_id=BYTE_SEP_ID, pad_token_id=BYTE_EOD_ID, torch_dtype="float32",
        ),
    }
    if name not in presets:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]
