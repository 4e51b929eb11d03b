"""Our compile-friendly LoRA computes what peft computes and saves what peft loads."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.config import preset
from trainer.lora import load_adapter, merge_lora, save_adapter, wrap_lora
from trainer.model import YuanForCausalLM
from trainer.runconfig import LoraSection

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "conv1", "conv2"]


def base_model() -> YuanForCausalLM:
    model = YuanForCausalLM(preset("yuan2_tiny"))
    model.init_weights(0)
    return model.eval()


def trained_lora() -> YuanForCausalLM:
    model = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS))
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
    save_adapter(ours, ours.state_dict(), tmp_path / "adapter")
    ids = torch.tensor([[3, 99, 257, 40, 41, 200, 7, 8]])
    peft_model = PeftModel.from_pretrained(base_model(), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        expected = ours(ids).logits
        assert torch.allclose(peft_model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(base_model()(ids).logits, expected, atol=1e-4)

    reloaded = wrap_lora(base_model(), LoraSection(r=4, alpha=8, targets=TARGETS)).eval()
    load_adapter(reloaded, tmp_path / "adapter")
    merged = merge_lora(reloaded)
    assert all(type(m).__name__ not in ("LoraLinear", "LoraCausalConv") for m in merged.modules())
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5, rtol=1e-5)
