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

    # CUDA-graph decoding (static cache) against the growing cache, in float32.
    tiny = dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=False, initializer_range=0.2)
    small = YuanForCausalLM(tiny)
    small.init_weights(0)
    small = small.to("cuda").eval()
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (1, 7, 30, 12)]
    for sampling in (SamplingConfig(max_new_tokens=40), SamplingConfig(max_new_tokens=40, temperature=1.0, seed=4)):
        graph = generate(small, prompts, eod_id=256, sampling=sampling, static_cache=True)
        dynamic = generate(small, prompts, eod_id=256, sampling=sampling, static_cache=False)
        print(f"CUDA-graph decode equals dynamic decode ({'greedy' if sampling.greedy else 'sampled'}):",
              graph == dynamic)


if __name__ == "__main__":
    main()
