"""Bad checkpoint folders fail with errors that name the problem; good ones round-trip exactly."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainer.checkpoint import (
    CheckpointError,
    load_model,
    save_model,
    verify_sha256sums,
    write_sha256sums,
)
from trainer.config import ConfigError, YuanConfig, preset
from trainer.model import YuanForCausalLM
from trainer.tokenizer import TokenizerError, byte_tokenizer, check_vocab


def tiny_model(tied: bool = True, seed: int = 0) -> YuanForCausalLM:
    model = YuanForCausalLM(dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=tied))
    model.init_weights(seed=seed)
    return model.eval()


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    save_model(tiny_model(tied=False), folder)
    return folder


def rewrite_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_model(tmp_path / "no_such_checkpoint")
    assert "no_such_checkpoint" in str(err.value)


def test_missing_config(ckpt: Path) -> None:
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing config\.json"):
        load_model(ckpt)


def test_no_weight_files(ckpt: Path) -> None:
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights found"):
        load_model(ckpt)


def test_missing_shard_named_in_index(tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    paths = save_model(tiny_model(), folder, max_shard_bytes=40_000)
    assert len(paths) > 1
    paths[1].unlink()
    with pytest.raises(CheckpointError, match="missing") as err:
        load_model(folder)
    assert paths[1].name in str(err.value)


def test_missing_weight_is_named(ckpt: Path) -> None:
    name = "model.layers.1.self_attn.lf_gate.conv2.bias"
    rewrite_weights(ckpt, lambda s: s.pop(name))
    with pytest.raises(CheckpointError, match="missing weight") as err:
        load_model(ckpt)
    assert name in str(err.value)


def test_untied_checkpoint_without_head_is_refused(ckpt: Path) -> None:
    rewrite_weights(ckpt, lambda s: s.pop("lm_head.weight"))
    with pytest.raises(CheckpointError, match=r"lm_head\.weight"):
        load_model(ckpt)


def test_misshapen_weight_names_both_shapes(ckpt: Path) -> None:
    name = "model.layers.0.mlp.up_proj.weight"

    def edit(state: dict[str, torch.Tensor]) -> None:
        state[name] = torch.zeros(100, 64)

    rewrite_weights(ckpt, edit)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    message = str(err.value)
    assert name in message
    assert "(100, 64)" in message and "(160, 64)" in message


def test_unexpected_weight_is_named(ckpt: Path) -> None:
    name = "model.layers.0.self_attn.extra_gate.weight"

    def edit(state: dict[str, torch.Tensor]) -> None:
        state[name] = torch.zeros(4)

    rewrite_weights(ckpt, edit)
    with pytest.raises(CheckpointError, match="unexpected weight") as err:
        load_model(ckpt)
    assert name in str(err.value)


def test_invalid_json_config(ckpt: Path) -> None:
    (ckpt / "config.json").write_text('{"hidden_size": 64,', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON") as err:
        load_model(ckpt)
    assert "config.json" in str(err.value)


def test_config_not_an_object(ckpt: Path) -> None:
    (ckpt / "config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON object"):
        load_model(ckpt)


def test_hidden_size_not_divisible_by_heads(ckpt: Path) -> None:
    raw = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    raw["num_attention_heads"] = 5
    (ckpt / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match="not divisible by num_attention_heads"):
        load_model(ckpt)


def test_wrong_type_in_config(ckpt: Path) -> None:
    raw = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    raw["num_hidden_layers"] = "two"
    (ckpt / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        load_model(ckpt)


def test_tokenizer_larger_than_vocab_is_refused() -> None:
    tok = byte_tokenizer()
    config = dataclasses.replace(preset("yuan2_tiny"), vocab_size=len(tok) - 1)
    with pytest.raises(TokenizerError, match="vocab_size"):
        check_vocab(tok, config)


def test_tokenizer_eod_must_match_config() -> None:
    tok = byte_tokenizer()
    config = dataclasses.replace(preset("yuan2_tiny"), eod_token_id=tok.eod_id + 3)
    with pytest.raises(TokenizerError, match="<eod>") as err:
        check_vocab(tok, config)
    assert str(tok.eod_id) in str(err.value) and str(tok.eod_id + 3) in str(err.value)
    check_vocab(tok, preset("yuan2_tiny"))  # the matching pair passes


#: Set if unpickling ever runs code from a checkpoint.
_EXECUTED: list[str] = []


def _record(what: str) -> None:
    _EXECUTED.append(what)


class _CodeOnLoad:
    """Pickles to a call of `_record`: loading it must not execute anything."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def test_pickled_bin_with_code_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    folder = tmp_path / "evil"
    folder.mkdir()
    model.config.save(folder / "config.json")
    state: dict[str, object] = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["model.norm.weight"] = _CodeOnLoad()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused to load") as err:
        load_model(folder)
    assert "pytorch_model.bin" in str(err.value)
    assert _EXECUTED == []


def test_round_trip_keeps_logits_bit_identical(tmp_path: Path) -> None:
    for tied in (True, False):
        model = tiny_model(tied=tied, seed=3)
        folder = tmp_path / f"rt_{tied}"
        save_model(model, folder)
        loaded = load_model(folder)
        ids = torch.randint(0, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, model(ids).logits)
        # Every interpreted field survives; `extra` gains the reference-code keys we write.
        assert dataclasses.replace(YuanConfig.from_file(folder / "config.json"), extra={}) == model.config


def test_sha256sums_detect_a_modified_file(tmp_path: Path) -> None:
    folder = tmp_path / "release"
    save_model(tiny_model(), folder)
    byte_tokenizer().save(folder)
    sums = write_sha256sums(folder)
    listed = {line.split("  ", 1)[1] for line in sums.read_text(encoding="utf-8").splitlines()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= listed
    assert verify_sha256sums(folder) == []

    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert verify_sha256sums(folder) == ["model.safetensors"]

    os.remove(folder / "tokenizer.json")
    assert sorted(verify_sha256sums(folder)) == ["model.safetensors", "tokenizer.json"]


# --- the device a command runs on (issue 14: eval and generate used the CPU on GPU machines) ---


def test_auto_device_is_the_gpu_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.checkpoint import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto") == torch.device("cuda") and pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        pick_device("cuda:2")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "gpu", "meta"])
def test_a_device_the_machine_lacks_is_refused_before_loading(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    from trainer.checkpoint import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device"):
        pick_device(name)


def test_eval_and_generate_take_a_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.__main__ import main

    model = tmp_path / "model"
    assert main(["init", "--preset", "yuan2_tiny", "--out", str(model)]) == 0
    data = tmp_path / "eval.jsonl"
    data.write_text('{"id": "a", "prompt": "1+1=", "response": "2", "source": "t"}\n', encoding="utf-8")
    assert main(["generate", "--model", str(model), "--prompt", "你好", "--max-new-tokens", "2",
                 "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["prompt"] == "你好"
    assert main(["eval", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "scores"),
                 "--max-new-tokens", "2", "--device", "cpu"]) == 0
    if not torch.cuda.is_available():
        assert main(["generate", "--model", str(model), "--prompt", "x", "--device", "cuda"]) == 2
        assert "CUDA device" in capsys.readouterr().err


def test_init_ships_a_given_tokenizer_and_refuses_one_that_does_not_fit(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.__main__ import main
    from trainer.tokenizer import load_tokenizer

    yuan = Path(__file__).resolve().parents[1] / "fixtures" / "yuan_tokenizer"
    # Yuan's 134,953 pieces do not fit the tiny preset's byte vocabulary: refused before anything is written.
    assert main(["init", "--preset", "yuan2_tiny", "--tokenizer", str(yuan), "--out", str(tmp_path / "no")]) == 2
    assert "vocab_size" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert main(["init", "--preset", "yuan2_tiny", "--dtype", "bfloat16", "--out", str(tmp_path / "bf16")]) == 0
    assert load_model(tmp_path / "bf16").config.torch_dtype == "bfloat16"
    assert len(load_tokenizer(tmp_path / "bf16")) == len(byte_tokenizer())
