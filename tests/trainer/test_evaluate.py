"""Metrics on hand-computed cases, eval loss against a manual cross-entropy, the comparison report."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from trainer.config import preset
from trainer.data import Example, build_rows, encode_example
from trainer.evaluate import (
    ExampleScore,
    chrf,
    compare,
    eval_loss,
    eval_report,
    exact_match,
    example_losses,
    score_generations,
    write_comparison,
)
from trainer.generation import SamplingConfig, encode_prompt, generate_text
from trainer.model import YuanForCausalLM
from trainer.tokenizer import byte_tokenizer

SAMPLING = SamplingConfig(max_new_tokens=8)


def tiny(seed: int) -> YuanForCausalLM:
    # Untied head and a larger init: random tiny models then say different things
    # (with the defaults they only echo <sep>, which decodes to empty text).
    config = dataclasses.replace(preset("yuan2_tiny"), tie_word_embeddings=False, initializer_range=0.2)
    m = YuanForCausalLM(config)
    m.init_weights(seed)
    return m.eval()


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


EXAMPLES = [
    Example(id="a", prompt="把下面的句子翻译成英文：你好", response="Hello", source="t", weight=1.0),
    Example(id="b", prompt="1+1=?", response="2", source="t", weight=2.5),
    Example(id="c", prompt="写一句诗", response="床前明月光，疑是地上霜。", source="t", weight=0.5),
    Example(id="d", prompt="", response="空的提示也可以", source="t", weight=1.0),
]


# -- text metrics ------------------------------------------------------------------


def test_exact_match_normalises_width_and_whitespace() -> None:
    assert exact_match("  你好，世界！\n", "你好,世界!") == 1.0  # full-width comma and bang (NFKC)
    assert exact_match("ＡＢＣ１２３", "ABC123") == 1.0
    assert exact_match("a  b\tc", "a b c") == 1.0
    assert exact_match("ab", "a b") == 0.0
    assert exact_match("Hello", "hello") == 0.0
    assert exact_match("", "  ") == 1.0


def test_chrf_identical_disjoint_and_empty() -> None:
    assert chrf("床前明月光", "床前明月光") == 100.0
    assert chrf("hello world", "hello world") == 100.0
    assert chrf("abc", "xyz") == 0.0
    assert chrf("你好", "再见") == 0.0
    assert chrf("", "") == 100.0
    assert chrf(" \n", "") == 100.0  # whitespace is removed first
    assert chrf("", "abc") == 0.0
    assert chrf("abc", "") == 0.0
    assert chrf("我 爱 北京", "我爱北京") == 100.0


def test_chrf_partial_overlap_by_hand() -> None:
    # "abcd" vs "abce": 1-grams 3/4 matched both ways, 2-grams 2/3, 3-grams 1/2, 4-grams 0/1;
    # no 5- or 6-grams, so 4 orders count. P = R = (3/4 + 2/3 + 1/2 + 0) / 4 = 23/48,
    # and with P = R the F-score is P: 100 * 23/48.
    assert chrf("abcd", "abce") == pytest.approx(100 * 23 / 48)

    # Chinese, prediction a prefix of the reference: "我爱北京" vs "我爱北京天安门".
    # Every prediction n-gram matches: P = 1 for n = 1..4 (the prediction has no 5-grams).
    # R: 4/7, 3/6, 2/5, 1/4 -> mean (80 + 70 + 56 + 35) / 140 / 4 = 241/560.
    # F2 = 5 P R / (4 P + R) = 5 * 241/560 / (4 + 241/560) = 1205 / 2481.
    assert chrf("我爱北京", "我爱北京天安门") == pytest.approx(100 * 1205 / 2481)
    # Swapping the roles swaps P and R; beta 2 weighs recall more, so the short
    # prediction (high precision, low recall) scores below the long one.
    # P = 241/560, R = 1: F2 = 5 * 241/560 / (4 * 241/560 + 1) = 1205 / 1524.
    assert chrf("我爱北京天安门", "我爱北京") == pytest.approx(100 * 1205 / 1524)
    # beta 1 is symmetric: 2 P R / (P + R) = 2 * 241/560 / (801/560) = 482/801.
    assert chrf("我爱北京", "我爱北京天安门", beta=1.0) == pytest.approx(100 * 482 / 801)
    # max_n = 1 is plain character-unigram F2: P = 1, R = 4/7 -> 5 * 4/7 / (4 + 4/7) = 20/32.
    assert chrf("我爱北京", "我爱北京天安门", max_n=1) == pytest.approx(100 * 20 / 32)


def test_chrf_counts_repeats_clipped() -> None:
    # "aaa" vs "a": 1-grams: 1 of 3 prediction "a"s matched -> P = 1/3, R = 1; only order 1 counts.
    # F2 = 5 * (1/3) * 1 / (4/3 + 1) = (5/3) / (7/3) = 5/7.
    assert chrf("aaa", "a") == pytest.approx(100 * 5 / 7)


def test_chrf_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="max_n must be an integer >= 1"):
        chrf("a", "a", max_n=0)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        chrf("a", "a", beta=0)


# -- losses ------------------------------------------------------------------------


def manual_losses(model: YuanForCausalLM, tokenizer, examples, seq_len: int, loss_mask: str = "yuan"
                  ) -> dict[str, tuple[float, int]]:
    """{id: (summed cross-entropy of the example's targets, number of targets)}, one example at a time."""
    out = {}
    with torch.no_grad():
        for ex in examples:
            enc = encode_example(ex, tokenizer, seq_len, loss_mask=loss_mask)
            if isinstance(enc, str):
                continue
            logits = model(torch.tensor([enc.input_ids])).logits[0].float()
            targets = torch.tensor(enc.targets)
            ce = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
            out[ex.id] = (float(ce), int((targets != -100).sum()))
    return out


@pytest.mark.parametrize("pack", [True, False])
def test_eval_loss_equals_manual_cross_entropy(tokenizer, pack: bool) -> None:
    model = tiny(0).train()
    seq_len = 64
    rows, report = build_rows(EXAMPLES, tokenizer, seq_len, pack=pack)
    assert report.used == len(EXAMPLES)
    manual = manual_losses(model.eval(), tokenizer, EXAMPLES, seq_len)
    weight = {ex.id: ex.weight for ex in EXAMPLES}
    expected = sum(weight[i] * ce for i, (ce, _) in manual.items()) / sum(weight[i] * n for i, (_, n) in manual.items())
    model.train()
    got = eval_loss(model, rows, batch_size=3)  # several batches, the last one partial when unpacked
    assert got == pytest.approx(expected, rel=1e-5)
    assert model.training  # the mode it had is restored
    assert eval_loss(model, rows, batch_size=1) == pytest.approx(expected, rel=1e-5)


def test_eval_loss_without_targets_is_an_error(tokenizer) -> None:
    rows, _ = build_rows(EXAMPLES[:1], tokenizer, 64, pack=False)
    empty = dataclasses.replace(rows, weights=torch.zeros_like(rows.weights))
    with pytest.raises(ValueError, match="no target tokens"):
        eval_loss(tiny(0), empty)


def test_example_losses_are_per_example_means(tokenizer) -> None:
    model = tiny(0)
    dropped = Example(id="empty", prompt="x", response="  ", source="t")
    got = example_losses(model, tokenizer, [*EXAMPLES, dropped], seq_len=64)
    # Per-example scores leave the <sep> target out, whatever mask training used.
    manual = manual_losses(model, tokenizer, EXAMPLES, 64, loss_mask="response")
    assert set(got) == {ex.id for ex in EXAMPLES}  # the empty response is dropped, as in training
    for i, (ce, n) in manual.items():
        assert got[i] == pytest.approx(ce / n, rel=1e-5)
    # A short seq_len cuts the prompt from the left, as training does.
    short = example_losses(model, tokenizer, EXAMPLES[:1], seq_len=12)
    ce, n = manual_losses(model, tokenizer, EXAMPLES[:1], 12, loss_mask="response")["a"]
    assert short["a"] == pytest.approx(ce / n, rel=1e-5)


# -- generation scores and the comparison --------------------------------------------


def test_score_generations(tokenizer) -> None:
    model = tiny(0)
    scores = score_generations(model, tokenizer, EXAMPLES, sampling=SAMPLING, batch_size=3)
    predictions = generate_text(model, tokenizer, [ex.prompt for ex in EXAMPLES], sampling=SAMPLING)
    assert [s.prediction for s in scores] == predictions
    for s, ex in zip(scores, EXAMPLES, strict=True):
        assert isinstance(s, ExampleScore)
        assert (s.id, s.prompt, s.reference, s.loss) == (ex.id, ex.prompt, ex.response, None)
        assert s.chrf == chrf(s.prediction, ex.response)
        assert s.exact_match == exact_match(s.prediction, ex.response)


def _examples_with_known_winners(tokenizer, base: YuanForCausalLM, tuned: YuanForCausalLM) -> list[Example]:
    """EXAMPLES plus one whose reference is the base model's own answer and one that is the tuned model's."""
    prompts = ["问题一", "问题二"]
    base_answer = generate_text(base, tokenizer, prompts[:1], sampling=SAMPLING)[0]
    tuned_answer = generate_text(tuned, tokenizer, prompts[1:], sampling=SAMPLING)[0]
    return [*EXAMPLES,
            Example(id="base-wins", prompt=prompts[0], response=base_answer, source="t"),
            Example(id="tuned-wins", prompt=prompts[1], response=tuned_answer, source="t")]


def test_compare_summary_is_consistent(tokenizer) -> None:
    base, tuned = tiny(0), tiny(1)
    examples = _examples_with_known_winners(tokenizer, base, tuned)
    result = compare(base, tuned, tokenizer, examples, sampling=SAMPLING, seq_len=64, batch_size=4)
    s, rows = result["summary"], result["examples"]
    n = len(examples)
    assert s["n"] == len(rows) == n
    assert [r["id"] for r in rows] == [ex.id for ex in examples]
    assert s["improved"] + s["regressed"] + s["unchanged"] == n
    assert s["improved"] == sum(r["delta_chrf"] > 0 for r in rows)
    assert s["regressed"] == sum(r["delta_chrf"] < 0 for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id["base-wins"]["base"]["exact_match"] == 1.0 and by_id["base-wins"]["delta_chrf"] < 0
    assert by_id["tuned-wins"]["tuned"]["exact_match"] == 1.0 and by_id["tuned-wins"]["delta_chrf"] > 0
    for side in ("base", "tuned"):
        for metric in ("loss", "exact_match", "chrf"):
            assert s[side][metric] == pytest.approx(sum(r[side][metric] for r in rows) / n)
        assert all(r[side]["loss"] > 0 for r in rows)
    for metric in ("loss", "exact_match", "chrf"):
        assert s["delta"][metric] == pytest.approx(s["tuned"][metric] - s["base"][metric])
    for r in rows:
        assert r["delta_chrf"] == pytest.approx(r["tuned"]["chrf"] - r["base"]["chrf"])
        assert r["base"]["chrf"] == chrf(r["base"]["prediction"], r["reference"])
    # The losses are the per-example losses of each model.
    assert {r["id"]: r["tuned"]["loss"] for r in rows} == pytest.approx(example_losses(tuned, tokenizer, examples, 64))


def test_compare_a_model_with_itself(tokenizer) -> None:
    model = tiny(2)
    result = compare(model, model, tokenizer, EXAMPLES, sampling=SAMPLING, seq_len=64)
    s = result["summary"]
    assert (s["improved"], s["regressed"], s["unchanged"]) == (0, 0, len(EXAMPLES))
    assert s["delta"] == {"loss": 0.0, "exact_match": 0.0, "chrf": 0.0}


def test_compare_rejects_empty_and_duplicate_ids(tokenizer) -> None:
    model = tiny(0)
    with pytest.raises(ValueError, match="no examples"):
        compare(model, model, tokenizer, [], sampling=SAMPLING, seq_len=64)
    with pytest.raises(ValueError, match="'a' is used more than once"):
        compare(model, model, tokenizer, [EXAMPLES[0], EXAMPLES[0]], sampling=SAMPLING, seq_len=64)


def test_eval_report(tokenizer) -> None:
    model = tiny(0)
    report = eval_report(model, tokenizer, EXAMPLES, sampling=SAMPLING, seq_len=64)
    rows = report["examples"]
    assert report["summary"]["n"] == len(rows) == len(EXAMPLES)
    assert report["summary"]["chrf"] == pytest.approx(sum(r["chrf"] for r in rows) / len(rows))
    assert report["summary"]["loss"] == pytest.approx(sum(r["loss"] for r in rows) / len(rows))
    json.dumps(report)


def test_write_comparison_files_parse_back(tokenizer, tmp_path) -> None:
    base, tuned = tiny(0), tiny(1)
    long_prompt = "很长的问题|含竖线" * 20
    examples = [*EXAMPLES, Example(id="long", prompt=long_prompt, response="答案", source="t")]
    result = compare(base, tuned, tokenizer, examples, sampling=SAMPLING, seq_len=128)
    out = tmp_path / "report"
    write_comparison(result, out)

    assert json.loads((out / "comparison.json").read_text(encoding="utf-8")) == result
    assert "很长的问题" in (out / "comparison.json").read_text(encoding="utf-8")  # ensure_ascii=False
    lines = (out / "comparison.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == result["examples"]

    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert md.startswith("# Base vs tuned")
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + 3 + 2 + len(examples)  # summary header+rule+3 metrics, examples header+rule+rows
    long_row = next(line for line in table if line.startswith("| long |"))
    assert long_prompt not in long_row and "…" in long_row and "\\|" in long_row
    assert f"{result['summary']['improved']} improved" in md


def test_a_prompt_longer_than_the_context_is_cut_not_fatal(tokenizer) -> None:
    """A pasted document among the eval cases once failed the whole evaluation (`prompt has N tokens`)."""
    model = tiny(0)
    long = Example(id="long", prompt="很长的文档。" * 400 + "请总结上文。", response="总结", source="t", weight=1.0)
    with pytest.raises(ValueError, match="context"):
        generate_text(model, tokenizer, [long.prompt], sampling=SAMPLING)
    report = eval_report(model, tokenizer, [*EXAMPLES, long], sampling=SAMPLING, seq_len=64)
    assert report["summary"]["n"] == len(EXAMPLES) + 1
    # The cut keeps the end of the prompt, where the question is: the same answer as for the last 64 tokens.
    tail = tokenizer.decode(encode_prompt(tokenizer, long.prompt)[-64:-1])
    assert generate_text(model, tokenizer, [long.prompt], sampling=SAMPLING, max_prompt_tokens=64) == \
        generate_text(model, tokenizer, [tail], sampling=SAMPLING)
