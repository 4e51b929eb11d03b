"""Our compile-friendly LoRA computes what peft computes and saves what peft loads."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from trainer.config import preset
from trainer.lora import align_optimizer_state, load_adapter, merge_lora, resolve_fused, save_adapter, wrap_lora
from trainer.loss import CausalLMLoss
from trainer.model import MLP, Attention, YuanForCausalLM
from trainer.runconfig import LoraSection

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "conv1", "conv2"]


def base_model() -> YuanForCausalLM:
    model = YuanForCausalLM(preset("yuan2_tiny"))
    model.init_weights(0)
    return model.eval()


def loss_of(model: YuanForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """The training loss (sum over tokens) of predicting each next token of ids."""
    loss, _ = CausalLMLoss(model)(ids, targets=ids.roll(-1, 1))
    return loss


def trained_lora() -> YuanForCausalLM:
    """Adapters in the fused layout (what one CUDA process gets; here asked for on CPU)."""
    model = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS), fused=True)
    with torch.no_grad():  # B starts at zero; give the adapter something to say
        gen = torch.Generator().manual_seed(5)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def test_only_adapters_train_and_every_target_is_adapted() -> None:
    model = trained_lora()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    layers = len(model.model.layers)
    assert len(trainable) == 2 * len(TARGETS) * layers


def test_saved_adapter_loads_in_peft_with_the_same_outputs(tmp_path: Path) -> None:
    from peft import PeftModel

    ours = trained_lora()
    save_adapter(LoraSection(r=4, alpha=8, targets=TARGETS), ours.state_dict(), tmp_path / "adapter")
    ids = torch.tensor([[3, 99, 257, 40, 41, 200, 7, 8]])
    peft_model = PeftModel.from_pretrained(base_model(), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        expected = ours(ids).logits
        assert torch.allclose(peft_model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(base_model()(ids).logits, expected, atol=1e-4)

    reloaded = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS), fused=True).eval()
    load_adapter(reloaded, tmp_path / "adapter")
    merged = merge_lora(reloaded)
    assert all(type(m).__name__ not in ("LoraLinear", "LoraCausalConv") for m in merged.modules())
    assert all(type(m).__module__ != "trainer.lora" for m in merged.modules())  # no fused subclass left
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5, rtol=1e-5)


def _pair() -> tuple[YuanForCausalLM, YuanForCausalLM]:
    """The same adapted model twice: fused layout and plain layers, equal adapter values."""
    plain = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS), fused=False)
    fused = trained_lora()
    plain.load_state_dict(fused.state_dict())
    return plain.train(), fused.train()


def _shares_storage(view: torch.Tensor, buffer: torch.Tensor) -> bool:
    return view.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()


def test_fused_layout_computes_what_the_plain_layers_compute() -> None:
    plain, fused = _pair()
    attn, mlp = fused.model.layers[0].self_attn, fused.model.layers[0].mlp
    # q/k and gate/up share one [x | t] each; down_proj (8192 -> 2048 at 2B; 128 -> 64
    # here) narrows its input and stays plain.
    assert attn.q_proj.weight_ext.shape == (64 + 2 * 4, 64) and attn.v_proj.weight_ext.shape == (64 + 4, 64)
    assert mlp.down_proj.weight_ext is None
    assert _shares_storage(attn.q_proj.base_layer.weight, attn.q_proj.weight_ext)
    assert _shares_storage(attn.q_proj.lora_B["default"].weight, attn.q_proj.weight_ext)

    ids = torch.randint(0, 250, (2, 16), generator=torch.Generator().manual_seed(4))
    losses = []
    for model in (plain, fused):
        loss = loss_of(model, ids)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    grads = [{n: p.grad for n, p in m.named_parameters() if p.requires_grad} for m in (plain, fused)]
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(grads[1][name], g, atol=1e-6, rtol=1e-4), name


def test_optimizer_steps_on_b_reach_the_fused_product() -> None:
    plain, fused = _pair()
    ids = torch.randint(0, 250, (2, 16), generator=torch.Generator().manual_seed(5))
    for model in (plain, fused):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(3):
            loss_of(model, ids).backward()
            opt.step()
            opt.zero_grad()
    q = fused.model.layers[0].self_attn.q_proj
    b = q.lora_B["default"].weight
    assert torch.equal(q.weight_ext[64:68], b.t())  # the optimizer wrote into the GEMM's operand
    with torch.no_grad():
        assert torch.allclose(fused(ids).logits, plain(ids).logits, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(fused(ids).logits, base_model()(ids).logits, atol=1e-3)


def test_moving_a_fused_model_rebuilds_its_layout() -> None:
    plain, fused = _pair()
    fused, plain = fused.to(torch.float64).eval(), plain.to(torch.float64).eval()
    q = fused.model.layers[1].self_attn.q_proj
    assert q.weight_ext.dtype == torch.float64
    assert _shares_storage(q.base_layer.weight, q.weight_ext) and _shares_storage(q.lora_B["default"].weight,
                                                                                   q.weight_ext)
    ids = torch.randint(0, 250, (1, 12), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.allclose(fused(ids).logits, plain(ids).logits, atol=1e-9, rtol=1e-9)


def test_a_deep_copy_of_a_fused_model_keeps_its_own_layout() -> None:
    plain, fused = _pair()
    twin = copy.deepcopy(fused)
    q = twin.model.layers[0].self_attn.q_proj
    assert _shares_storage(q.lora_B["default"].weight, q.weight_ext)
    assert not _shares_storage(q.weight_ext, fused.model.layers[0].self_attn.q_proj.weight_ext)
    with torch.no_grad():
        q.lora_B["default"].weight.mul_(2.0)  # the copy changes; the original must not
        ids = torch.randint(0, 250, (1, 10), generator=torch.Generator().manual_seed(7))
        assert torch.allclose(fused(ids).logits, plain(ids).logits, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(twin(ids).logits, plain(ids).logits, atol=1e-4)


def test_resumed_optimizer_state_follows_the_parameter_layout() -> None:
    # A fused LoRA's B is a transposed view; Adam state loaded from a checkpoint comes
    # back contiguous, and a fused optimizer would pair the wrong elements.
    init, grads = torch.randn(6, 4), [torch.randn(6, 4) for _ in range(4)]
    viewed = torch.nn.Parameter(init.t().contiguous().t())
    plain = torch.nn.Parameter(init.clone())
    assert viewed.stride() != plain.stride()
    ref = torch.optim.AdamW([plain], lr=0.1, fused=True)
    for g in grads[:2]:
        plain.grad = g.clone()
        ref.step()
    resumed = torch.optim.AdamW([viewed], lr=0.1, fused=True)
    with torch.no_grad():
        viewed.copy_(plain)
    resumed.load_state_dict(copy.deepcopy(ref.state_dict()))
    align_optimizer_state(resumed)
    assert resumed.state[viewed]["exp_avg"].stride() == viewed.stride()
    for g in grads[2:]:
        plain.grad, viewed.grad = g.clone(), torch.empty_like(viewed).copy_(g)
        ref.step()
        resumed.step()
    assert torch.allclose(viewed, plain, atol=1e-6)


def test_the_fused_switch_resolves_to_where_it_pays() -> None:
    # "auto": fused for one CUDA process only; plain on CPU and when sharded.
    assert resolve_fused("auto", "cuda", 1) and resolve_fused("auto", torch.device("cuda", 3), 1)
    assert not resolve_fused("auto", "cpu", 1) and not resolve_fused("auto", "cuda", 2)
    assert resolve_fused(True, "cpu", 1) and not resolve_fused(False, "cuda", 1)
    with pytest.raises(ValueError, match="sharded"):
        resolve_fused(True, "cuda", 2)  # FSDP would cut the views the fused layout is made of
    assert LoraSection().fused == "auto"

    plain = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS))  # auto, on CPU
    assert all(m.weight_ext is None for m in plain.modules() if hasattr(m, "weight_ext"))
    assert all(type(m).__module__ != "trainer.lora" for m in plain.modules()
               if isinstance(m, Attention | MLP))
    sharded = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS), device="cuda", world_size=2)
    assert all(m.weight_ext is None for m in sharded.modules() if hasattr(m, "weight_ext"))


def test_a_fused_pair_shares_its_input_through_the_model_extension_point() -> None:
    fused = trained_lora()
    attn, mlp = fused.model.layers[0].self_attn, fused.model.layers[0].mlp
    # The fused q/k and gate/up pairs run through a subclass's project_qk / project_gate_up.
    assert isinstance(attn, Attention) and type(attn) is not Attention
    assert isinstance(mlp, MLP) and type(mlp) is not MLP
    z = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        q, k = attn.project_qk(z)
        assert torch.allclose(q, attn.q_proj(z), atol=1e-6) and torch.allclose(k, attn.k_proj(z), atol=1e-6)
    # Only q adapted: no pair to share, the model's classes stay.
    alone = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=["q_proj", "gate_proj"]), fused=True)
    assert all(type(m) in (Attention, MLP) for m in alone.modules() if isinstance(m, Attention | MLP))
    assert alone.model.layers[0].self_attn.q_proj.weight_ext is not None
