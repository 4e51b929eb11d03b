"""Logits of `trainer.load_model` against the independent reference forward.

`reference_yuan.reference_logits` follows the public reference computation
literally (padded Conv2d LFA, explicit float32 softmax) and shares no code with
`trainer.model`, so agreement here checks the port, the checkpoint layouts we
read and the config keys we accept.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from reference_yuan import reference_logits
from safetensors.torch import save_file
from tiny_models import random_model

from trainer.checkpoint import load_model, save_model
from trainer.config import ConfigError, YuanConfig, preset
from trainer.model import YuanForCausalLM

TOL = 1e-4


def tiny_config(tied: bool = True, **changes) -> YuanConfig:
    # A larger initialisation than the default so attention is far from uniform
    # and a wrong q/k layout shows up in the logits.
    return dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=tied, initializer_range=0.1, **changes)


def full_state(model: YuanForCausalLM) -> dict[str, torch.Tensor]:
    """The HF-named state dict, `lm_head.weight` included even when tied."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def random_ids(config: YuanConfig, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def write_bin(model: YuanForCausalLM, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder / "config.json")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin"])
def test_loaded_logits_match_reference(tmp_path: Path, layout: str, tied: bool) -> None:
    config = tiny_config(tied)
    model = random_model(config, seed=3 if tied else 4)
    folder = tmp_path / "ckpt"
    if layout == "safetensors":
        save_model(model, folder)
        assert (folder / "model.safetensors").is_file()
    elif layout == "sharded":
        save_model(model, folder, max_shard_bytes=40_000)
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 2
        assert not (folder / "model.safetensors").exists()
    else:
        write_bin(model, folder)

    loaded = load_model(folder)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    ids = random_ids(config, (2, 13), seed=1)
    with torch.no_grad():
        ours = loaded(ids).logits
    expected = reference_logits(full_state(model), config.to_dict(), ids)
    assert ours.dtype == torch.float32
    assert rel_diff(ours, expected) < TOL


def _naive_qk(state: dict[str, torch.Tensor], config: YuanConfig) -> dict[str, torch.Tensor]:
    """Rewrite q_proj/k_proj so the Yuan split computes what a naive port computes on the originals.

    A naive port takes query head i from rows [i*D, (i+1)*D) of q_proj and key
    head i from the same rows of k_proj; the Yuan layout takes both from chunk i
    (of 2*D rows) of the stacked [q_proj; k_proj].
    """
    n, d = config.num_attention_heads, config.head_dim
    out = dict(state)
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}.self_attn."
        q, k = state[p + "q_proj.weight"], state[p + "k_proj.weight"]
        stacked = torch.cat([torch.cat((q[h * d:(h + 1) * d], k[h * d:(h + 1) * d])) for h in range(n)])
        out[p + "q_proj.weight"], out[p + "k_proj.weight"] = stacked[: n * d].clone(), stacked[n * d:].clone()
    return out


def test_per_head_qk_layout_matters() -> None:
    """The parity test can fail: the naive q/k reading changes the logits well beyond the tolerance."""
    config = tiny_config(tied=False)
    model = random_model(config, seed=5)
    state = full_state(model)
    ids = random_ids(config, (2, 16), seed=2)
    expected = reference_logits(state, config.to_dict(), ids)

    naive = YuanForCausalLM(config)
    naive.load_state_dict(_naive_qk(state, config))
    with torch.no_grad():
        naive_logits = naive.eval()(ids).logits
    assert rel_diff(naive_logits, expected) > 100 * TOL
    # ... and the rewrite itself is consistent: the reference agrees on the rewritten weights.
    assert rel_diff(naive_logits, reference_logits(_naive_qk(state, config), config.to_dict(), ids)) < TOL


def test_packed_rows_equal_separate_examples(tmp_path: Path) -> None:
    config = tiny_config(tied=False)
    model = random_model(config, seed=6)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    lengths = [(5, 7, 4), (9, 7)]
    width = 16
    examples = [[random_ids(config, (1, n), seed=10 * r + j) for j, n in enumerate(row)]
                for r, row in enumerate(lengths)]
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    seg = torch.zeros(len(lengths), width, dtype=torch.long)
    for r, row in enumerate(examples):
        pos = 0
        for j, ex in enumerate(row):
            ids[r, pos:pos + ex.shape[1]] = ex[0]
            seg[r, pos:pos + ex.shape[1]] = j + 1
            pos += ex.shape[1]
        seg[r, pos:] = len(row) + 1  # trailing filler forms its own segment
    with torch.no_grad():
        packed = loaded(ids, segment_ids=seg).logits
    for r, row in enumerate(examples):
        pos = 0
        for ex in row:
            alone = reference_logits(full_state(model), config.to_dict(), ex)[0]
            assert rel_diff(packed[r, pos:pos + ex.shape[1]], alone) < TOL
            pos += ex.shape[1]


def test_left_padded_rows_equal_unpadded(tmp_path: Path) -> None:
    config = tiny_config(tied=True)
    model = random_model(config, seed=7)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    lengths = [11, 4, 8]
    width = max(lengths)
    seqs = [random_ids(config, (1, n), seed=20 + i) for i, n in enumerate(lengths)]
    ids = torch.full((len(seqs), width), config.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - s.shape[1]:] = s[0]
        mask[i, width - s.shape[1]:] = 1
    with torch.no_grad():
        padded = loaded(ids, attention_mask=mask).logits
        for i, s in enumerate(seqs):
            alone = loaded(s).logits[0]
            assert rel_diff(padded[i, width - s.shape[1]:], alone) < TOL
            assert rel_diff(alone, reference_logits(full_state(model), config.to_dict(), s)[0]) < TOL
    assert torch.isfinite(padded).all()


def yuan2_2b_hf_config(**sizes) -> dict:
    """The key set of the public Yuan2-2B-hf `config.json`, with tiny sizes substituted."""
    raw = {
        "_from_model_config": True,
        "architectures": ["YuanForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_yuan.YuanConfig",
            "AutoModelForCausalLM": "yuan_hf_model.YuanForCausalLM",
        },
        "tokenizer_class": "YuanTokenizer",
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 8192,
        "model_type": "yuan",
        "num_attention_heads": 32,
        "num_hidden_layers": 24,
        "rms_norm_eps": 1e-06,
        "dropout": 0.1,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.30.0.dev0",
        "use_cache": True,
        "causal_mask": True,
        "use_flash_attention": False,
        "reset_attention_mask": True,
        "reset_position_ids": True,
        "use_loss_mask": False,
        "eod_token": 77185,
        "sep_token": 77187,
        "eod_token_id": 77185,
        "sep_token_id": 77187,
        "pad_token_id": 77185,
        "bos_token_id": 77185,
        "eos_token_id": 77185,
        "mask_token_id": 77185,
        "vocab_size": 135040,
    }
    raw.update(sizes)
    return raw


TINY_SIZES = {
    "hidden_size": 64, "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
    "vocab_size": 320, "max_position_embeddings": 256, "initializer_range": 0.1,
    "eod_token": 300, "sep_token": 302, "eod_token_id": 300, "sep_token_id": 302, "pad_token_id": 300,
    "bos_token_id": 300, "eos_token_id": 300, "mask_token_id": 300,
}


def test_real_yuan2_config_keys_load_and_survive_resave(tmp_path: Path) -> None:
    raw = yuan2_2b_hf_config(**TINY_SIZES)
    config = YuanConfig.from_dict(raw)
    assert (config.eod_token_id, config.sep_token_id, config.pad_token_id) == (300, 302, 300)
    model = random_model(config, seed=8)
    folder = tmp_path / "yuan2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    # Like the public release: bfloat16 weights, tied head left out, rotary buffers present.
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i in range(config.num_hidden_layers):
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(config.head_dim // 2)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    loaded = load_model(folder)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = random_ids(config, (2, 9), seed=3)
    ref_state = {k: v.float() for k, v in state.items() if "rotary_emb" not in k}
    with torch.no_grad():
        assert rel_diff(loaded(ids).logits, reference_logits(ref_state, raw, ids)) < TOL

    out = tmp_path / "resaved"
    save_model(loaded, out, dtype=torch.bfloat16)
    resaved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert set(raw) <= set(resaved), f"keys dropped on re-save: {sorted(set(raw) - set(resaved))}"
    assert {k: resaved[k] for k in raw} == raw
    again = load_model(out)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, loaded(ids).logits)


# -- <eod> inside a plain row: the reference's reset_attention_mask / reset_position_ids ----------


def ids_with_eods(config: YuanConfig, eods: list[list[int]], width: int, seed: int) -> torch.Tensor:
    """Random ids without `<eod>`, then `<eod>` at the given columns of each row."""
    ids = random_ids(config, (len(eods), width), seed=seed)
    ids[ids == config.eod_token_id] = config.eod_token_id + 1
    for row, cols in enumerate(eods):
        ids[row, cols] = config.eod_token_id
    return ids


def blocks_at_eod(config: YuanConfig, training: bool = False) -> bool:
    """Whether the public reference cuts attention at `<eod>` (its LlamaModel.forward condition)."""
    return config.reset_attention_mask and (training or config.reset_position_ids)


FLAGS = [(True, True), (True, False), (False, True), (False, False)]
FLAG_IDS = ["reset_pos+reset_attn", "reset_pos", "reset_attn", "no_reset"]
EOD_ROWS = [[6], [3, 10]]  # one <eod> mid-row; two in the other row


@pytest.mark.parametrize(("reset_position_ids", "reset_attention_mask"), FLAGS, ids=FLAG_IDS)
def test_plain_row_with_eod_matches_reference(tmp_path: Path, reset_position_ids: bool,
                                              reset_attention_mask: bool) -> None:
    config = tiny_config(tied=False, reset_position_ids=reset_position_ids,
                         reset_attention_mask=reset_attention_mask)
    model = random_model(config, seed=11)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")  # the flags travel through config.json
    assert (loaded.config.reset_position_ids, loaded.config.reset_attention_mask) == (
        reset_position_ids, reset_attention_mask)
    ids = ids_with_eods(config, EOD_ROWS, 16, seed=4)
    state, raw = full_state(model), config.to_dict()
    with torch.no_grad():
        ours = loaded(ids).logits
    expected = reference_logits(state, raw, ids)
    assert rel_diff(ours, expected) < TOL

    # The test can fail: cutting attention at <eod> changes the tokens after it ...
    other = reference_logits(state, {**raw, "reset_attention_mask": not blocks_at_eod(config),
                                     "reset_position_ids": True}, ids)
    assert rel_diff(other[:, 11:], expected[:, 11:]) > 100 * TOL
    # ... and never the tokens up to the first <eod>.
    assert rel_diff(other[1, :4], expected[1, :4]) < TOL
    if blocks_at_eod(config):
        # Not a packed row: positions and the LFA run on across the <eod>, as in the reference.
        seg = (ids == config.eod_token_id).long().cumsum(1) - (ids == config.eod_token_id).long()
        with torch.no_grad():
            packed = loaded(ids, segment_ids=seg).logits
        assert rel_diff(packed[:, 11:], ours[:, 11:]) > 100 * TOL


@pytest.mark.parametrize(("reset_position_ids", "reset_attention_mask"), FLAGS, ids=FLAG_IDS)
def test_plain_row_with_eod_in_training_mode(reset_position_ids: bool, reset_attention_mask: bool) -> None:
    """In training mode the reference cuts at <eod> whenever reset_attention_mask is set."""
    config = tiny_config(tied=True, reset_position_ids=reset_position_ids,
                         reset_attention_mask=reset_attention_mask)
    model = random_model(config, seed=12).train()
    ids = ids_with_eods(config, EOD_ROWS, 14, seed=5)
    with torch.no_grad():
        ours = model(ids).logits
    assert rel_diff(ours, reference_logits(full_state(model), config.to_dict(), ids, training=True)) < TOL


def test_config_without_flags_cuts_at_eod_like_real_yuan2() -> None:
    """A config.json without the flags reads them as the real Yuan2 configs have them (true)."""
    raw = tiny_config(tied=False).to_dict()
    for key in ("reset_attention_mask", "reset_position_ids"):
        raw.pop(key)
    config = YuanConfig.from_dict(raw)
    assert config.reset_attention_mask and config.reset_position_ids
    model = random_model(config, seed=13)
    ids = ids_with_eods(config, EOD_ROWS, 12, seed=6)
    with torch.no_grad():
        ours = model(ids).logits
    assert rel_diff(ours, reference_logits(full_state(model), config.to_dict(), ids)) < TOL
    with pytest.raises(ConfigError, match="reset_attention_mask"):
        YuanConfig.from_dict({**raw, "reset_attention_mask": "yes"})


@pytest.mark.parametrize("flags", [(True, True), (False, False)], ids=["reset", "no_reset"])
def test_plain_forward_keeps_the_causal_kernel_without_a_cutting_eod(flags: tuple[bool, bool]) -> None:
    """No dense mask (the fast causal path) unless an <eod> before the last column cuts attention."""
    config = tiny_config(tied=True, reset_position_ids=flags[0], reset_attention_mask=flags[1])
    model = random_model(config, seed=14).model
    no_eod = ids_with_eods(config, [[], []], 10, seed=7)
    last_only = ids_with_eods(config, [[9], [9]], 10, seed=7)  # prompt<sep>answer<eod>
    mid = ids_with_eods(config, [[4], []], 10, seed=7)
    for ids in (no_eod, last_only):
        assert model._context(ids, torch.float32, None, None, None).mask is None
    assert (model._context(mid, torch.float32, None, None, None).mask is None) == (not flags[1])


@pytest.mark.parametrize("last_is_eod", [False, True], ids=["eod_mid", "eod_last"])
def test_cache_started_by_a_plain_forward_keeps_the_eod_cut(last_is_eod: bool) -> None:
    """Decoding after a plain prefill sees what the reference's full recompute sees."""
    config = tiny_config(tied=False)
    model = random_model(config, seed=15)
    full = ids_with_eods(config, [[4, 8 if last_is_eod else 6], [2]], 11, seed=8)
    expected = reference_logits(full_state(model), config.to_dict(), full)
    with torch.no_grad():
        first = model(full[:, :9], use_cache=True)
        second = model(full[:, 9:10], past_key_values=first.past_key_values, use_cache=True)
        third = model(full[:, 10:], past_key_values=second.past_key_values, use_cache=True)
    assert rel_diff(first.logits, expected[:, :9]) < TOL
    assert rel_diff(second.logits, expected[:, 9:10]) < TOL
    assert rel_diff(third.logits, expected[:, 10:]) < TOL


@pytest.mark.parametrize(("reset_position_ids", "reset_attention_mask"), [(True, True), (False, True)],
                         ids=["reset_pos+reset_attn", "reset_attn"])
def test_remote_code_plain_forward_with_eod_matches_reference(tmp_path: Path, reset_position_ids: bool,
                                                              reset_attention_mask: bool) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM

    from trainer.hf import write_remote_code

    config = tiny_config(tied=True, reset_position_ids=reset_position_ids,
                         reset_attention_mask=reset_attention_mask)
    model = random_model(config, seed=16)
    folder = tmp_path / "release"
    save_model(model, folder)
    write_remote_code(folder)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True).eval()
    ids = ids_with_eods(config, EOD_ROWS, 16, seed=9)
    expected = reference_logits(full_state(model), json.loads((folder / "config.json").read_text()), ids)
    with torch.no_grad():
        # transformers' default use_cache=True (a fresh cache), without a cache, and a
        # tokenizer's all-ones attention_mask: all plain forwards.
        for kwargs in ({}, {"use_cache": False}, {"attention_mask": torch.ones_like(ids)}):
            assert rel_diff(hf(ids, **kwargs).logits, expected) < TOL, kwargs
