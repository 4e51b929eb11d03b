"""bf16 parity of our model at the Yuan2-2B shape (2 layers) against the float32 reference forward.

Run on a GPU machine from the repo root: `python3 scripts/gpu_parity.py`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "trainer")]
from reference_yuan import reference_logits  # noqa: E402

from trainer.config import preset  # noqa: E402
from trainer.generation import SamplingConfig, generate  # noqa: E402
from trainer.model import YuanForCausalLM  # noqa: E402


def main() -> None:
    cfg = dataclasses.replace(preset("yuan2_2b"), num_hidden_layers=2)
    torch.manual_seed(0)
    model = YuanForCausalLM(cfg)
    model.init_weights(0)
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 256))
    with torch.no_grad():
        ref = reference_logits({k: v.double() for k, v in model.state_dict().items()},
                               dataclasses.asdict(cfg), ids).float()
        gpu = model.to("cuda", torch.bfloat16)
        ours = gpu(ids.cuda()).logits.float().cpu()
    rel = ((ours - ref).abs().max() / ref.abs().max()).item()
    print(f"Yuan2-2B shape (2 layers), seq 256: bf16 max|diff|/max|logit| = {rel:.3e}")
    prompts = [ids[0, :17].tolist(), ids[1, :5].tolist()]
    out = generate(gpu, prompts, eod_id=cfg.eod_token_id, sampling=SamplingConfig(max_new_tokens=8))
    print("generated on GPU:", [len(o) for o in out])


if __name__ == "__main__":
    main()
