"""Released folders load with `transformers`' Auto classes, the way Yuan users load models.

`write_remote_code` ships `modeling_yuan.py`, `configuration_yuan.py` and
`yuan_lfa.py` (a copy of `trainer/model.py`); the model that
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` builds must
compute what `trainer.load_model(folder)` computes. Also: a Yuan-style
sentencepiece tokenizer (LlamaTokenizer plus Yuan's added tokens) loads in
`trainer.tokenizer.load_tokenizer`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_models import random_model

from trainer.checkpoint import load_model, save_model
from trainer.config import YuanConfig, preset
from trainer.hf import AUTO_MAP, write_remote_code
from trainer.model import YuanForCausalLM
from trainer.tokenizer import byte_tokenizer, load_tokenizer

transformers = pytest.importorskip("transformers")

REL = 1e-5
REPO = Path(__file__).resolve().parents[2]


def tiny_config(tied: bool) -> YuanConfig:
    return dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=tied, initializer_range=0.1)


def release(folder: Path, tied: bool, seed: int = 0) -> Path:
    """A release folder: weights, byte tokenizer, remote code."""
    save_model(random_model(tiny_config(tied), seed), folder)
    byte_tokenizer().save(folder)
    write_remote_code(folder)
    return folder


def hf_load(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True).eval()


def cache_of(output):
    """The cache of an output: field `cache` from transformers 5.2x on, `past_key_values` before."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def folder(request, tmp_path_factory) -> Path:
    tied = request.param
    return release(tmp_path_factory.mktemp("hf") / f"yuan_tiny_{'tied' if tied else 'untied'}", tied, seed=int(tied))


def test_remote_code_files_and_config(folder: Path) -> None:
    assert (folder / "yuan_lfa.py").read_bytes() == (REPO / "trainer" / "model.py").read_bytes()
    for name in ("modeling_yuan.py", "configuration_yuan.py"):
        assert (folder / name).read_bytes() == (REPO / "trainer" / "hf" / name).read_bytes()
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert raw["auto_map"] == AUTO_MAP
    assert raw["model_type"] == "yuan"
    # Our own loader ignores the extra files and keeps the new keys.
    assert YuanConfig.from_file(folder / "config.json").extra["auto_map"] == AUTO_MAP


def test_write_remote_code_keeps_other_keys(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    before = {
        "hidden_size": 64, "use_flash_attention": True, "reset_position_ids": False, "eod_token": 77185,
        "auto_map": {"AutoConfig": "configuration_yuan.YuanConfig",
                     "AutoModelForCausalLM": "yuan_hf_model.YuanForCausalLM",
                     "AutoModel": "yuan_hf_model.YuanModel"},
    }
    (folder / "config.json").write_text(json.dumps(before), encoding="utf-8")
    write_remote_code(folder)
    after = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert after["auto_map"] == AUTO_MAP  # the reference's entries name code that is not in the folder
    assert after["model_type"] == "yuan"
    assert {k: after[k] for k in before if k != "auto_map"} == {k: v for k, v in before.items() if k != "auto_map"}
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        write_remote_code(tmp_path)


def test_auto_model_logits_equal_load_model(folder: Path) -> None:
    hf = hf_load(folder)
    ours = load_model(folder)
    tied = ours.config.tie_word_embeddings
    assert type(hf).__name__ == "YuanForCausalLM"
    assert (hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()) == tied
    assert torch.equal(hf.lm_head.weight, ours.lm_head.weight)
    ids = torch.randint(0, ours.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # a left-padded row
    with torch.no_grad():
        assert rel_diff(hf(ids).logits, ours(ids).logits) < REL
        assert rel_diff(hf(input_ids=ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits) < REL
        as_tuple = hf(ids, return_dict=False, use_cache=False)
    assert isinstance(as_tuple, tuple) and rel_diff(as_tuple[0], ours(ids).logits) < REL


def test_save_pretrained_round_trip(folder: Path, tmp_path: Path) -> None:
    """A user's `save_pretrained` keeps the remote code; both loaders read the result."""
    hf = hf_load(folder)
    out = tmp_path / "user_copy"
    hf.save_pretrained(str(out))
    for name in ("modeling_yuan.py", "configuration_yuan.py", "yuan_lfa.py"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()
    ids = torch.randint(0, hf.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = hf(ids).logits
        assert torch.equal(hf_load(out)(ids).logits, expected)
        assert rel_diff(load_model(out)(ids).logits, expected) < REL


def test_labels_give_the_shifted_mean_loss(folder: Path) -> None:
    hf = hf_load(folder)
    ids = torch.randint(0, hf.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[0, :4] = -100
    labels[1, 7:] = -100
    with torch.no_grad():
        out = hf(input_ids=ids, labels=labels)
    logits = out.logits.float()
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                             ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)
    # The HF Trainer's token count for gradient accumulation gives the summed loss over it.
    n = int((labels[:, 1:] != -100).sum())
    with torch.no_grad():
        summed = hf(input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(2 * n)).loss
    torch.testing.assert_close(summed, manual / 2)


def test_training_step_with_activation_checkpointing(folder: Path) -> None:
    """Gradients through the HF wrapper are the same with and without activation checkpointing."""
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(7))
    grads = []
    for checkpointing in (False, True):
        hf = hf_load(folder).train()
        if checkpointing:
            enable = getattr(hf, "activation_checkpointing_enable", None) or hf.gradient_checkpointing_enable
            enable()
            assert hf.model.gradient_checkpointing
        out = hf(input_ids=ids, labels=ids)
        assert cache_of(out) is None
        out.loss.backward()
        grads.append(hf.model.layers[0].self_attn.lf_gate.conv1.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_cached_forward_equals_full_recompute(folder: Path) -> None:
    hf = hf_load(folder)
    gen = torch.Generator().manual_seed(3)
    full = torch.randint(0, hf.config.vocab_size, (2, 10), generator=gen)
    mask = torch.ones_like(full)
    mask[0, :3] = 0  # row 0 is left-padded
    with torch.no_grad():
        reference = hf(input_ids=full, attention_mask=mask, use_cache=False).logits
        first = hf(input_ids=full[:, :7], attention_mask=mask[:, :7], use_cache=True)
        cache = cache_of(first)
        assert cache is not None
        second = hf(input_ids=full[:, 7:8], attention_mask=mask[:, :8], past_key_values=cache, use_cache=True)
        third = hf(input_ids=full[:, 8:], attention_mask=mask, past_key_values=cache_of(second), use_cache=True)
    assert rel_diff(first.logits[1], reference[1, :7]) < REL
    assert rel_diff(first.logits[0, 3:], reference[0, 3:7]) < REL
    assert rel_diff(second.logits[:, -1], reference[:, 7]) < REL
    assert rel_diff(third.logits, reference[:, 8:]) < REL


def greedy_reference(model: YuanForCausalLM, ids: torch.Tensor, steps: int) -> torch.Tensor:
    """Full recompute at each step with cotrain's own model."""
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat((ids, nxt), dim=1)
    return ids


def test_generate_greedy_matches_full_recompute(folder: Path) -> None:
    hf = hf_load(folder)
    ours = load_model(folder)
    prompt = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(4))
    kwargs = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "attention_mask": torch.ones_like(prompt)}
    with torch.no_grad():
        cached = hf.generate(prompt, **kwargs)
        uncached = hf.generate(prompt, use_cache=False, **kwargs)
    expected = greedy_reference(ours, prompt, 8)
    assert torch.equal(cached, expected)
    assert torch.equal(uncached, expected)


def test_generate_beam_search_runs(folder: Path) -> None:
    hf = hf_load(folder)
    prompt = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(5))
    kwargs = {"max_new_tokens": 5, "min_new_tokens": 5, "num_beams": 3, "do_sample": False,
              "attention_mask": torch.ones_like(prompt)}
    with torch.no_grad():
        assert torch.equal(hf.generate(prompt, **kwargs), hf.generate(prompt, use_cache=False, **kwargs))


def test_auto_tokenizer_encodes_like_ours(folder: Path) -> None:
    from transformers import AutoTokenizer

    ours = byte_tokenizer()
    # trust_remote_code as for the model: transformers 5 reads config.json (whose
    # AutoConfig is remote code) before the tokenizer files.
    hf = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    text = "源大模型 co-training<sep>答案：42\n<eod>"
    assert hf.encode(text, add_special_tokens=False) == ours.encode(text, allow_special=True)
    assert load_tokenizer(folder).encode(text) == ours.encode(text)


# -- a Yuan-style sentencepiece tokenizer ------------------------------------------

YUAN_ADDED_TOKENS = [
    "<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>", "<commit_before>",
    "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
    "<empty_output>", "<eod>", "<n>",
]

CORPUS = [
    "今天天气很好，我们去公园散步。The weather is nice today, let us walk in the park.",
    "源大模型共训计划收集开发者的问题和需求，回答用户的问题。",
    "Yuan 2.0 is an open large language model; 问题 and 回答 are paired.",
    "def add(a, b):\n    return a + b  # 代码示例",
]


def train_sentencepiece(tmp_path: Path) -> Path:
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    lines = [f"{line} {i}" for i in range(40) for line in CORPUS]
    corpus.write_text("\n".join(line.replace("\n", " ") for line in lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=300, model_type="bpe",
        character_coverage=1.0, byte_fallback=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2,
    )
    return tmp_path / "sp.model"


def sentencepiece_bpe(model_file: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a sentencepiece BPE model, as transformers' converter derives them."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = []
    for piece, idx in vocab.items():
        pairs = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        merges += [(*pair, idx) for pair in sorted(pairs, key=lambda p: (vocab[p[0]], vocab[p[1]]))]
    return vocab, [(a, b) for a, b, _ in sorted(merges, key=lambda m: m[2])]


def llama_tokenizer(model_file: Path):
    """`LlamaTokenizer` over a sentencepiece model, without bos/eos, in any transformers version."""
    from transformers import LlamaTokenizer

    if "vocab_file" in inspect.signature(LlamaTokenizer.__init__).parameters:
        # transformers 4: the sentencepiece-backed tokenizer Yuan's scripts use.
        pytest.importorskip("google.protobuf")
        return LlamaTokenizer(vocab_file=str(model_file), add_bos_token=False, add_eos_token=False, legacy=False)
    # transformers 5: a `tokenizers` BPE built from the model's vocabulary and merges
    # (converting tokenizer.model itself would need protobuf).
    vocab, merges = sentencepiece_bpe(model_file)
    return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=False)


def test_yuan_style_sentencepiece_tokenizer(tmp_path: Path) -> None:
    import sentencepiece

    model_file = train_sentencepiece(tmp_path)
    hf = llama_tokenizer(model_file)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    plain = "今天天气很好，我们去公园散步。The weather is nice"
    assert hf.encode(plain, add_special_tokens=False) == sp.encode(plain)

    base = len(hf)
    hf.add_tokens(YUAN_ADDED_TOKENS, special_tokens=True)
    out = tmp_path / "yuan_tok"
    hf.save_pretrained(str(out))

    tok = load_tokenizer(out)
    eod, sep = (base + YUAN_ADDED_TOKENS.index(t) for t in ("<eod>", "<sep>"))
    assert (tok.eod_id, tok.sep_id) == (eod, sep)
    newline = tok.hf.convert_tokens_to_ids("<n>")
    assert newline == base + YUAN_ADDED_TOKENS.index("<n>")

    text = "今天天气很好\n我们去公园散步。\n\ndef add(a, b):\n    return a + b"
    ids = tok.encode(text)
    assert ids.count(newline) == text.count("\n")
    assert tok.hf.unk_token_id not in ids
    assert tok.decode(ids) == text

    example = tok.encode("问题<sep>回答<eod>", allow_special=True)
    assert example[-1] == tok.eod_id and example.count(tok.sep_id) == 1 and tok.hf.unk_token_id not in example
    assert example[: example.index(tok.sep_id)] == tok.encode("问题")
    assert tok.decode(example) == "问题回答"  # <sep> and <eod> are dropped


def test_yuan_tokenizer_model_folder(tmp_path: Path) -> None:
    """A folder shipping only tokenizer.model (as the public Yuan2 releases do) loads too.

    transformers converts tokenizer.model into a fast tokenizer here, which needs protobuf.
    """
    pytest.importorskip("google.protobuf", reason="transformers needs protobuf to read a tokenizer.model")
    model_file = train_sentencepiece(tmp_path)
    folder = tmp_path / "yuan_release"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(model_file.read_bytes())
    added = {str(300 + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": True} for i, t in enumerate(YUAN_ADDED_TOKENS)}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        # legacy=False (transformers 5's default): transformers 4's legacy mode puts a "▁" after every
        # added token, so text after "<n>" would decode with an extra leading space.
        "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": False, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
    }), encoding="utf-8")
    tok = load_tokenizer(folder)
    assert (tok.eod_id, tok.sep_id) == tuple(300 + YUAN_ADDED_TOKENS.index(t) for t in ("<eod>", "<sep>"))
    text = "今天天气很好\n我们去公园散步。"
    assert tok.decode(tok.encode(text)) == text


# -- the remote-code YuanTokenizer of releases with a sentencepiece tokenizer.model ----------

YUAN_FIXTURE = REPO / "tests" / "fixtures" / "yuan_tokenizer"
#: Yuan's add_tokens list, in its order (tools/preprocess_data_yuan.py).
YUAN_ADD_LIST = [
    "<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>", "<commit_before>",
    "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
    "<empty_output>",
]
ROUND_TRIP_TEXTS = [
    "John买了3件衬衫，每件售价为20美元。",
    "def f(x):\n    return x\n\n\tpass\n",
    "求 $\\frac{1}{2}$ 😀 全角　空格 不间断\u00a0空格",
    "   leading and trailing   ",
    "\n\n\nrepeated\n\n",
    "写着 <sep> 和 <eod> 结束",
    "问题<sep>回答<eod>",
    "<mask><FIM_PREFIX>a<FIM_SUFFIX> b<FIM_MIDDLE><commit_msg>c<empty_output>",
    " ",
    "",
]


@pytest.fixture(scope="module")
def yuan_tok_folder(tmp_path_factory) -> Path:
    """A release's tokenizer files: what export writes (`Tokenizer.save`) plus the remote tokenizer class."""
    import shutil

    pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("yuan_tok") / "release"
    load_tokenizer(YUAN_FIXTURE).save(folder)
    # write_remote_code would copy it too, but it needs a config.json; the tokenizer does not.
    shutil.copyfile(REPO / "trainer" / "hf" / "tokenization_yuan.py", folder / "tokenization_yuan.py")
    return folder


def yuan_rules_ids(text: str, added: dict[str, int]) -> list[int]:
    """Yuan's ids, by the rules: added strings split the text, each other chunk is sentencepiece.encode."""
    import re

    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(YUAN_FIXTURE / "tokenizer.model"))
    ids: list[int] = []
    for chunk in re.split("(" + "|".join(re.escape(t) for t in added) + ")", text):
        if chunk in added:
            ids.append(added[chunk])
        elif chunk:
            ids += sp.encode(chunk)
    return ids


def auto_yuan_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)


def test_sentencepiece_tokenizer_files(yuan_tok_folder: Path) -> None:
    config = json.loads((yuan_tok_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["auto_map"] == {"AutoTokenizer": ["tokenization_yuan.YuanTokenizer", None]}
    assert (config["add_bos_token"], config["add_eos_token"], config["legacy"]) == (False, False, True)
    assert (config["eos_token"], config["pad_token"], config["sep_token"]) == ("<eod>", "<eod>", "<sep>")
    decoder = {entry["content"]: int(i) for i, entry in config["added_tokens_decoder"].items()}
    assert decoder["<eod>"] == 77185 and decoder["<sep>"] == 77187 and decoder["<pad>"] == 77188
    # The names the sentencepiece model lacks get the next ids in Yuan's order.
    assert [decoder[t] for t in ("<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>")] == list(
        range(134953, 134958))
    assert decoder["<commit_before>"] == 96635
    assert all(not e["lstrip"] and not e["rstrip"] and e["special"] for e in config["added_tokens_decoder"].values())
    assert (yuan_tok_folder / "tokenizer.model").read_bytes() == (YUAN_FIXTURE / "tokenizer.model").read_bytes()


def test_tokenizer_files_module_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    path = str(REPO / "trainer" / "hf" / "tokenizer_files.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('tf', {path!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_write_sentencepiece_tokenizer_refuses_bad_tokens(tmp_path: Path) -> None:
    from trainer.hf.tokenizer_files import write_sentencepiece_tokenizer

    model = YUAN_FIXTURE / "tokenizer.model"
    with pytest.raises(ValueError, match="share id"):
        write_sentencepiece_tokenizer(tmp_path, model, {"<eod>": 5, "<sep>": 5})
    with pytest.raises(ValueError, match="sep token"):
        write_sentencepiece_tokenizer(tmp_path, model, {"<eod>": 5})
    with pytest.raises(FileNotFoundError):
        write_sentencepiece_tokenizer(tmp_path, tmp_path / "missing.model", {"<eod>": 5, "<sep>": 6})


def test_yuan_tokenizer_gives_sentencepiece_ids_and_exact_decode(yuan_tok_folder: Path) -> None:
    tok = auto_yuan_tokenizer(yuan_tok_folder)
    assert type(tok).__name__ == "YuanTokenizer"
    ours = load_tokenizer(yuan_tok_folder)
    added = dict(ours.added)
    assert len(tok) == len(ours) == 134958
    assert (tok.eos_token_id, tok.pad_token_id, tok.sep_token_id) == (77185, 77185, 77187)
    for text in ROUND_TRIP_TEXTS:
        want = yuan_rules_ids(text, added)
        assert tok.encode(text) == want, text
        assert tok(text)["input_ids"] == want, text
        assert ours.encode(text, allow_special=True) == want, text
        assert tok.decode(want) == text, text
    assert tok.decode(tok.encode("问题<sep>回答<eod>"), skip_special_tokens=True) == "问题回答"
    assert tok.batch_decode([tok.encode(t) for t in ROUND_TRIP_TEXTS]) == ROUND_TRIP_TEXTS
    # Ids the vocabulary lacks (padding rows of the embedding) decode to nothing, not an error.
    assert tok.decode([*tok.encode("你好"), 135030]) == "你好"


def test_yuan_tokenizer_survives_yuan_add_tokens_save_and_pickle(yuan_tok_folder: Path, tmp_path: Path) -> None:
    import pickle

    tok = auto_yuan_tokenizer(yuan_tok_folder)
    text = "写着<mask>和 <FIM_MIDDLE>\n  结束"
    want = tok.encode(text)
    assert tok.add_tokens(YUAN_ADD_LIST, special_tokens=True) == 0
    assert tok.encode(text) == want
    tok.save_pretrained(str(tmp_path / "copy"))
    again = auto_yuan_tokenizer(tmp_path / "copy")
    assert type(again).__name__ == "YuanTokenizer" and again.encode(text) == want
    assert pickle.loads(pickle.dumps(tok)).encode(text) == want
    batch = tok(["短", "a much longer prompt here"], padding=True)
    assert tok.padding_side == "left" and batch["attention_mask"][0][0] == 0


def test_write_remote_code_ships_the_tokenizer_only_with_tokenizer_model(folder: Path, tmp_path: Path) -> None:
    assert not (folder / "tokenization_yuan.py").exists()  # byte tokenizer: tokenizer.json, no remote code
    sp_release = tmp_path / "sp_release"
    save_model(random_model(tiny_config(True), 0), sp_release)
    load_tokenizer(YUAN_FIXTURE).save(sp_release)
    write_remote_code(sp_release)
    assert (sp_release / "tokenization_yuan.py").read_bytes() == (
        REPO / "trainer" / "hf" / "tokenization_yuan.py").read_bytes()
