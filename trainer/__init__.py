"""cotrain's trainer: load, fine-tune, evaluate, generate with and export Yuan 2.0 models.

A standalone PyTorch package: it imports nothing of Django, Celery or the
platform. The worker drives it through `python -m trainer` and a run folder.
"""

from .checkpoint import CheckpointError, load_model, save_model
from .config import ConfigError, YuanConfig, preset
from .model import CausalLMOutput, YuanCache, YuanForCausalLM
from .tokenizer import Tokenizer, TokenizerError, byte_tokenizer, load_tokenizer

__all__ = [
    "CausalLMOutput",
    "CheckpointError",
    "ConfigError",
    "Tokenizer",
    "TokenizerError",
    "YuanCache",
    "YuanConfig",
    "YuanForCausalLM",
    "byte_tokenizer",
    "load_model",
    "load_tokenizer",
    "preset",
    "save_model",
]
