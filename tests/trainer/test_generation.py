"""Cached, batched generation equals the naive full recompute, token for token."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from trainer.config import BYTE_EOD_ID, BYTE_SEP_ID, preset
from trainer.generation import SamplingConfig, encode_prompt, generate, generate_text
from trainer.model import YuanCache, YuanForCausalLM
from trainer.tokenizer import byte_tokenizer

GREEDY = SamplingConfig(max_new_tokens=12)


def tiny(seed: int) -> YuanForCausalLM:
    """The tiny preset with an untied output head and a larger initialisation.

    With the defaults a small random model only echoes its last input token, and
    the LFA (whose cached inputs these tests must check) barely moves the
    arg-max; these settings give varied text that depends on the whole context.
    """
    config = dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=False, initializer_range=0.2)
    m = YuanForCausalLM(config)
    m.init_weights(seed)
    return m.eval()


@pytest.fixture(scope="module")
def model() -> YuanForCausalLM:
    return tiny(0)


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


def naive_greedy(model: torch.nn.Module, prompt: list[int], max_new: int, eod_id: int) -> list[int]:
    """Recompute the whole sequence at every step, no cache, no padding."""
    seq = list(prompt)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(torch.tensor([seq])).logits[0, -1]
            token = int(logits.argmax())
            if token == eod_id:
                break
            out.append(token)
            seq.append(token)
    return out


PROMPTS = [
    [72, 101, 108, 108, 111, BYTE_SEP_ID],
    [BYTE_SEP_ID],
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, BYTE_SEP_ID],
    [200, 17, BYTE_SEP_ID],
]


def test_incremental_greedy_equals_full_recompute(model: YuanForCausalLM) -> None:
    for prompt in PROMPTS:
        expected = naive_greedy(model, prompt, GREEDY.max_new_tokens, BYTE_EOD_ID)
        assert len(expected) > 3  # the comparison covers several cached steps
        (got,) = generate(model, [prompt], eod_id=BYTE_EOD_ID, sampling=GREEDY)
        assert got == expected


def test_batched_left_padded_equals_one_by_one(model: YuanForCausalLM) -> None:
    alone = [generate(model, [p], eod_id=BYTE_EOD_ID, sampling=GREEDY)[0] for p in PROMPTS]
    for batch_size in (len(PROMPTS), 3, 2):
        assert generate(model, PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY, batch_size=batch_size) == alone
    # Input order is kept whatever the internal (longest-first) order.
    reordered = [PROMPTS[i] for i in (1, 3, 0, 2)]
    assert generate(model, reordered, eod_id=BYTE_EOD_ID, sampling=GREEDY) == [alone[i] for i in (1, 3, 0, 2)]


def test_rows_stop_at_eod_and_leave_the_batch(model: YuanForCausalLM, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pick as "eod" a token that the first prompt first produces at step k: that row
    # must stop there (eod not in the output) while other rows go on.
    free = generate(model, PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY)
    k = next(k for k in range(2, len(free[0])) if free[0][k] not in free[0][:k])
    stop = free[0][k]
    expected = [naive_greedy(model, p, GREEDY.max_new_tokens, stop) for p in PROMPTS]
    assert expected[0] == free[0][:k]
    assert max(len(e) for e in expected) > k

    selected: list[int] = []
    original = YuanCache.select

    def spy(self: YuanCache, rows: torch.Tensor) -> None:
        selected.append(len(rows))
        original(self, rows)

    widths: list[int] = []
    hook = model.model.register_forward_pre_hook(lambda _m, args: widths.append(args[0].shape[0]))
    monkeypatch.setattr(YuanCache, "select", spy)
    try:
        got = generate(model, PROMPTS, eod_id=stop, sampling=GREEDY)
    finally:
        hook.remove()
    assert got == expected
    assert selected and selected[0] < len(PROMPTS)
    assert widths[0] == len(PROMPTS) and widths[-1] < len(PROMPTS)
    assert widths == sorted(widths, reverse=True)


def test_forced_eod_after_k_steps(model: YuanForCausalLM) -> None:
    k = 5
    calls = []

    def boost(_module, _inputs, output):
        calls.append(1)
        if len(calls) == k + 1:  # call 1 is the prefill, calls 2.. the decode steps
            output = output.clone()
            output[..., BYTE_EOD_ID] += 1e4
        return output

    hook = model.lm_head.register_forward_hook(boost)
    try:
        (got,) = generate(model, [PROMPTS[0]], eod_id=BYTE_EOD_ID, sampling=SamplingConfig(max_new_tokens=50))
    finally:
        hook.remove()
    assert len(got) == k and BYTE_EOD_ID not in got
    assert len(calls) == k + 1


def test_max_new_tokens_bounds_each_row(model: YuanForCausalLM) -> None:
    outs = generate(model, PROMPTS, eod_id=-1, sampling=SamplingConfig(max_new_tokens=3))
    assert [len(o) for o in outs] == [3] * len(PROMPTS)


def test_sampling_is_reproducible_per_seed(model: YuanForCausalLM) -> None:
    cfg = SamplingConfig(max_new_tokens=16, temperature=1.0, seed=1)
    first = generate(model, PROMPTS, eod_id=-1, sampling=cfg)
    assert generate(model, PROMPTS, eod_id=-1, sampling=cfg) == first
    other = generate(model, PROMPTS, eod_id=-1, sampling=SamplingConfig(max_new_tokens=16, temperature=1.0, seed=2))
    assert other != first
    greedy = generate(model, PROMPTS, eod_id=-1, sampling=SamplingConfig(max_new_tokens=16))
    assert first != greedy


def test_top_k_one_and_tiny_top_p_equal_greedy(model: YuanForCausalLM) -> None:
    greedy = generate(model, PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY)
    for cfg in (SamplingConfig(max_new_tokens=12, temperature=1.5, top_k=1, seed=3),
                SamplingConfig(max_new_tokens=12, temperature=0.7, top_p=1e-6, seed=4)):
        assert generate(model, PROMPTS, eod_id=BYTE_EOD_ID, sampling=cfg) == greedy


def test_top_k_and_top_p_restrict_the_candidates(model: YuanForCausalLM) -> None:
    from trainer.generation import _pick

    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(200, 1)
    gen = torch.Generator().manual_seed(0)
    picked = _pick(logits, SamplingConfig(temperature=5.0, top_k=2), gen)
    assert set(picked.tolist()) == {0, 1}
    # Softmax of [4, 3, 2, ...]: p0 ~ 0.64, p0 + p1 ~ 0.87; top_p 0.8 keeps tokens 0 and 1.
    picked = _pick(logits, SamplingConfig(temperature=1.0, top_p=0.8), gen)
    assert set(picked.tolist()) == {0, 1}


def test_generic_forward_path_matches(model: YuanForCausalLM) -> None:
    class Wrapper(torch.nn.Module):
        """Not a YuanForCausalLM: generation goes through the public forward."""

        def __init__(self, inner: YuanForCausalLM) -> None:
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, input_ids, **kwargs):
            return self.inner(input_ids, **kwargs)

    fast = generate(model, PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY)
    assert generate(Wrapper(model), PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY) == fast


def test_bfloat16_and_training_mode_restored() -> None:
    m = tiny(1).to(torch.bfloat16).train()
    outs = generate(m, PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY)
    assert m.training
    assert all(0 <= t < m.config.vocab_size for o in outs for t in o)
    assert outs == generate(m, PROMPTS, eod_id=BYTE_EOD_ID, sampling=GREEDY)
    # The first token needs no cache: it must be the full forward's arg-max.
    m.eval()
    for p, o in zip(PROMPTS, outs, strict=True):
        with torch.no_grad():
            first = int(m(torch.tensor([p])).logits[0, -1].float().argmax())
        assert (o[:1] or [BYTE_EOD_ID]) == [first]
    sampled = generate(m, PROMPTS, eod_id=BYTE_EOD_ID, sampling=SamplingConfig(max_new_tokens=8, temperature=1.0,
                                                                                 top_p=0.9, seed=0))
    assert len(sampled) == len(PROMPTS)


def test_generate_text_appends_one_sep(model: YuanForCausalLM, tokenizer) -> None:
    assert encode_prompt(tokenizer, "hi") == [*tokenizer.encode("hi"), tokenizer.sep_id]
    assert encode_prompt(tokenizer, "hi<sep>") == encode_prompt(tokenizer, "hi")
    prompts = ["你好", "hello<sep>", ""]
    texts = generate_text(model, tokenizer, prompts, sampling=GREEDY, batch_size=2)
    ids = generate(model, [encode_prompt(tokenizer, p) for p in prompts], eod_id=tokenizer.eod_id, sampling=GREEDY,
                   vocab=len(tokenizer))  # the tokenizer's ids only: the rest of the embedding is padding
    assert texts == [tokenizer.decode(i) for i in ids]
    assert texts[0] != texts[2]


def test_bad_prompts_rejected(model: YuanForCausalLM) -> None:
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, [[1], []], eod_id=BYTE_EOD_ID, sampling=GREEDY)
    with pytest.raises(ValueError, match="context"):
        generate(model, [[1] * model.config.max_position_embeddings], eod_id=BYTE_EOD_ID, sampling=GREEDY)
    with pytest.raises(ValueError, match="batch_size"):
        generate(model, [[1]], eod_id=BYTE_EOD_ID, sampling=GREEDY, batch_size=0)
    assert generate(model, [], eod_id=BYTE_EOD_ID, sampling=GREEDY) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 1"),
    ({"temperature": -0.1}, "temperature must be a finite number >= 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
    ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"seed": -3}, "seed must be null or an integer"),
    ({"seed": "7"}, "seed must be null or an integer"),
])
def test_bad_sampling_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def test_static_cache_decoding_equals_the_dynamic_cache_and_recompute(model: YuanForCausalLM) -> None:
    """The preallocated cache (what GPUs replay as a CUDA graph) decodes exactly like the growing one."""
    gen = torch.Generator().manual_seed(11)
    prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (1, 6, 19, 11)]
    greedy = SamplingConfig(max_new_tokens=16)
    static = generate(model, prompts, eod_id=BYTE_EOD_ID, sampling=greedy, static_cache=True)
    assert static == generate(model, prompts, eod_id=BYTE_EOD_ID, sampling=greedy, static_cache=False)
    assert static[2] == naive_greedy(model, prompts[2], 16, BYTE_EOD_ID)
    sampled = SamplingConfig(max_new_tokens=24, temperature=1.3, top_k=40, seed=9)
    assert generate(model, prompts, eod_id=BYTE_EOD_ID, sampling=sampled, static_cache=True) == \
        generate(model, prompts, eod_id=BYTE_EOD_ID, sampling=sampled, static_cache=False)


def test_a_preallocated_cache_keeps_its_shapes_and_rows(model: YuanForCausalLM) -> None:
    # One cache class: after `preallocate` a step writes in place at a device-side slot.
    cache = YuanCache(len(model.model.layers))
    with torch.no_grad():
        model.model(torch.tensor([[5, 6, 7], [8, 9, 10]]), cache=cache)
        cache.preallocate(4)
        keys = cache.keys[0]
        assert keys is not None and keys.shape[2] == 3 + 4 and cache.length == 7
        model.model(torch.tensor([[11], [12]]), cache=cache)
        cache.step_done()
    assert cache.keys[0] is keys and cache.slot is not None and int(cache.slot) == 4  # same buffer, next slot
    assert cache.key_valid is not None and cache.key_valid[:, :4].all() and not cache.key_valid[:, 4:].any()
    with pytest.raises(RuntimeError, match="keeps its rows"):
        cache.select(torch.tensor([0]))


def test_padding_rows_of_the_vocabulary_are_never_drawn() -> None:
    """Yuan2's embedding is padded past its tokenizer; a random 2B model drew a padding id and the
    evaluation died in sentencepiece (`piece id is out of range`)."""
    import dataclasses

    from trainer.config import preset
    from trainer.generation import SamplingConfig, generate
    from trainer.model import YuanForCausalLM

    model = YuanForCausalLM(dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=False))
    model.init_weights(0)
    boost = torch.zeros(model.config.vocab_size)
    boost[300:] = 1e4  # the rows past the "tokenizer" (300 ids) win every draw
    model.lm_head.bias = torch.nn.Parameter(boost)
    prompts = [[1, 2, 3], [4, 5]]
    greedy = SamplingConfig(max_new_tokens=6)
    assert all(t >= 300 for out in generate(model, prompts, eod_id=256, sampling=greedy) for t in out)
    for sampling in (greedy, SamplingConfig(max_new_tokens=6, temperature=1.0, seed=0)):
        outs = generate(model.eval(), prompts, eod_id=256, sampling=sampling, vocab=300)
        assert all(t < 300 for out in outs for t in out) and any(outs)
