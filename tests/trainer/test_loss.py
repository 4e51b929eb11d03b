"""The fused linear + cross-entropy loss equals plain autograd, values and gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from trainer.config import preset
from trainer.loss import CausalLMLoss, chunk_kernel, softmax_cross_entropy_grad
from trainer.model import YuanForCausalLM


@pytest.mark.parametrize("tied", [True, False])
def test_fused_loss_matches_full_logits_autograd(tied: bool) -> None:
    cfg = dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=tied)
    model = YuanForCausalLM(cfg)
    model.init_weights(0)
    ids = torch.randint(0, cfg.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1))
    targets = ids.roll(-1, 1)
    targets[:, :4] = -100
    weights = torch.rand(3, 20, generator=torch.Generator().manual_seed(2))

    loss, loss_weight = CausalLMLoss(model)(ids, targets=targets, weights=weights)
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    keep = targets != -100
    logits = model(ids).logits
    plain = (F.cross_entropy(logits[keep], targets[keep], reduction="none") * weights[keep]).sum()
    plain.backward()
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6)
    assert loss_weight.item() == pytest.approx(weights[keep].sum().item(), rel=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(fused[name], p.grad, atol=1e-5, rtol=1e-4), name


def test_loss_without_grad_takes_the_plain_path_and_agrees() -> None:
    model = YuanForCausalLM(preset("yuan2_tiny"))
    model.init_weights(0)
    net = CausalLMLoss(model)
    ids = torch.randint(0, 384, (2, 12), generator=torch.Generator().manual_seed(3))
    targets = ids.roll(-1, 1)
    with torch.no_grad():
        a, _ = net(ids, targets=targets)
    b, _ = net(ids, targets=targets)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_the_loss_module_has_the_models_parameter_names() -> None:
    # Checkpoints, resumed optimizer state and adapters are named as the model's.
    model = YuanForCausalLM(preset("yuan2_tiny"))
    net = CausalLMLoss(model)
    assert list(net.state_dict()) == list(model.state_dict())
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(a is b for a, b in zip(net.parameters(), model.parameters(), strict=True))


def test_the_chunk_kernel_is_a_parameter_of_the_loss_not_a_global() -> None:
    # Off GPUs the torch maths runs as given; a benchmark passes its own for a variant.
    assert chunk_kernel("cpu") is softmax_cross_entropy_grad
    calls = []

    def spy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
        calls.append(logits.shape[0])
        return softmax_cross_entropy_grad(logits, targets, weights)

    model = YuanForCausalLM(preset("yuan2_tiny"))
    model.init_weights(0)
    ids = torch.randint(0, 384, (2, 12), generator=torch.Generator().manual_seed(4))
    want, _ = CausalLMLoss(model)(ids, targets=ids.roll(-1, 1))
    got, _ = CausalLMLoss(model, triton=False, maths=spy, chunk=10)(ids, targets=ids.roll(-1, 1))
    assert calls == [10, 10, 4]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton loss kernel runs on GPUs")
def test_triton_loss_kernel_matches_the_torch_maths() -> None:
    from trainer.kernels import softmax_cross_entropy_grad as triton_kernel

    gen = torch.Generator(device="cuda").manual_seed(0)
    # An odd width (not a multiple of the kernel's block) and rows with zero weight.
    logits = (torch.randn(37, 135_041, device="cuda", generator=gen) * 4).bfloat16()
    targets = torch.randint(0, logits.shape[1], (37,), device="cuda", generator=gen)
    weights = torch.rand(37, device="cuda", generator=gen)
    weights[::5] = 0.0
    loss, grad = triton_kernel(logits, targets, weights)
    want_loss, want_grad = softmax_cross_entropy_grad(logits, targets, weights)
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-5)
    assert grad.dtype == torch.bfloat16
    assert torch.allclose(grad.float(), want_grad.float(), atol=2e-3, rtol=1e-2)
