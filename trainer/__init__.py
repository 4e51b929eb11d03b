"""cotrain's trainer: load, fine-tune, evaluate, generate with and export Yuan 2.0 models.

A standalone PyTorch package: it imports nothing of Django, Celery or the
platform. The worker drives it through `python -m trainer` and a run folder,
whose names (`trainer.contract`) it imports without torch: the names below load
their modules, and so torch, only when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ hands out, for type checkers (`import X as X`: a re-export)
    from .checkpoint import CheckpointError as CheckpointError
    from .checkpoint import load_model as load_model
    from .checkpoint import save_model as save_model
    from .config import ConfigError as ConfigError
    from .config import YuanConfig as YuanConfig
    from .config import preset as preset
    from .model import CausalLMOutput as CausalLMOutput
    from .model import YuanCache as YuanCache
    from .model import YuanForCausalLM as YuanForCausalLM
    from .tokenizer import Tokenizer as Tokenizer
    from .tokenizer import TokenizerError as TokenizerError
    from .tokenizer import byte_tokenizer as byte_tokenizer
    from .tokenizer import load_tokenizer as load_tokenizer

#: Each public name and the module that defines it.
_EXPORTS = {
    "CausalLMOutput": "model",
    "CheckpointError": "checkpoint",
    "ConfigError": "config",
    "Tokenizer": "tokenizer",
    "TokenizerError": "tokenizer",
    "YuanCache": "model",
    "YuanConfig": "config",
    "YuanForCausalLM": "model",
    "byte_tokenizer": "tokenizer",
    "load_model": "checkpoint",
    "load_tokenizer": "tokenizer",
    "preset": "config",
    "save_model": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
