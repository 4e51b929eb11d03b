"""Random tiny Yuan models for tests, shared by the parity and remote-code tests."""

from __future__ import annotations

import torch

from trainer.config import YuanConfig
from trainer.model import YuanForCausalLM


def random_model(config: YuanConfig, seed: int = 0) -> YuanForCausalLM:
    """Random weights, with biases and norm weights moved off their trivial 0 and 1."""
    model = YuanForCausalLM(config)
    model.init_weights(seed=seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()
