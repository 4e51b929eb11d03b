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

from trainer.config import YuanConfig, preset  # noqa: E402
from trainer.generation import SamplingConfig, generate  # noqa: E402
from trainer.lora import wrap_lora  # noqa: E402
from trainer.loss import CausalLMLoss  # noqa: E402
from trainer.model import DecoderLayer, YuanForCausalLM  # noqa: E402
from trainer.runconfig import LoraSection  # noqa: E402

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "conv1", "conv2"]


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

    lora_parity(cfg)
    loss_kernel_parity()


def lora_parity(cfg: YuanConfig) -> None:
    """Fused LoRA layers and the plain ones in bf16 (compiled) against the plain ones in float32.

    Loss and every adapter gradient; both bf16 paths should sit at the same distance
    from float32.
    """
    ids = torch.randint(0, cfg.vocab_size, (2, 1024), device="cuda")
    results = {}
    for name, dtype, fused in (("float32", torch.float32, False), ("bf16 plain", torch.bfloat16, False),
                               ("bf16 fused", torch.bfloat16, True)):
        torch.manual_seed(0)
        model = YuanForCausalLM(cfg)
        model.init_weights(0)
        model = wrap_lora(model.to("cuda", dtype), LoraSection(r=16, alpha=32, targets=LORA_TARGETS), fused=fused)
        with torch.no_grad():  # B starts at zero: give it values so that every gradient path is live
            gen = torch.Generator(device="cuda").manual_seed(3)
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.copy_((torch.randn(p.shape, generator=gen, device="cuda") * 0.02).to(dtype))
        for layer in (m for m in model.modules() if isinstance(m, DecoderLayer)):
            layer.compile()
        loss = CausalLMLoss(model)(ids, targets=ids)[0] / ids.numel()
        loss.backward()
        results[name] = loss.item(), {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
    ref_loss, ref = results.pop("float32")
    for name, (loss, grads) in results.items():
        worst = max(((grads[n] - ref[n]).norm() / ref[n].norm()).item() for n in ref)
        print(f"LoRA {name} vs float32 (2B shape, 2 layers, compiled): loss {loss:.6f} vs {ref_loss:.6f}, "
              f"worst adapter gradient |diff|/|grad| = {worst:.3e}")


def loss_kernel_parity() -> None:
    """The Triton loss kernel against the torch maths on a full-vocabulary chunk, and their speed."""
    from trainer.kernels import softmax_cross_entropy_grad
    from trainer.loss import softmax_cross_entropy_grad as _softmax_cross_entropy_grad

    gen = torch.Generator(device="cuda").manual_seed(0)
    logits = (torch.randn(4096, 135_040, device="cuda", generator=gen) * 3).bfloat16()
    targets = torch.randint(0, logits.shape[1], (4096,), device="cuda", generator=gen)
    weights = torch.rand(4096, device="cuda", generator=gen)
    compiled = torch.compile(_softmax_cross_entropy_grad, dynamic=True)
    results = {}
    for name, fn in (("triton", softmax_cross_entropy_grad), ("inductor", compiled)):
        for _ in range(3):
            fn(logits, targets, weights)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            out = fn(logits, targets, weights)
        end.record()
        torch.cuda.synchronize()
        results[name] = out, start.elapsed_time(end) / 10
    (loss, grad), ms = results["triton"]
    (want_loss, want_grad), inductor_ms = results["inductor"]
    print(f"loss kernel (4096 x 135040 bf16): triton {ms:.2f} ms, inductor {inductor_ms:.2f} ms; "
          f"loss rel diff {abs(loss.item() - want_loss.item()) / abs(want_loss.item()):.2e}, "
          f"max grad diff {(grad.float() - want_grad.float()).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
