"""The fine-tuning loss: weighted token cross-entropy on response tokens only.

A batch is a dict of (B, S) tensors built by `trainer.data`:
- `input_ids`: tokens; `segment_ids`: example number inside a packed row (-1 on padding);
- `targets`: the token each position must predict, -100 where nothing is learned
  (prompt, `<sep>`, padding, the last token of an example);
- `weights`: float loss weight per position (the example's weight on targets, 0 elsewhere).

The model computes the loss inside `forward` (so FSDP and DDP hooks run) and
returns the *sum* of weighted losses with the sum of weights: gradient
accumulation and data parallelism divide by the global total once and get
exactly the loss of one big batch.
"""

from __future__ import annotations

import torch


def weighted_token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of weight * cross-entropy over target tokens, sum of weights)."""
    out = model(input_ids=batch["input_ids"], segment_ids=batch.get("segment_ids"),
                targets=batch["targets"], weights=batch["weights"])
    return out.loss, out.loss_weight
