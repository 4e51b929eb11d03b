"""Tests of trainer.data: loading every accepted layout, refusing bad data, the loss mask, packing, replay."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset, DatasetDict

from trainer.config import BYTE_EOD_ID, BYTE_SEP_ID, preset
from trainer.data import (
    DataError,
    DataReport,
    Example,
    available_splits,
    build_rows,
    encode_example,
    general_replay_set,
    load_examples,
    mix_replay,
)
from trainer.loss import weighted_token_loss
from trainer.model import YuanForCausalLM
from trainer.tokenizer import byte_tokenizer

# Requests as contributors file them on the platform: a scenario, an input, the wanted output.
TRAIN_ROWS: list[dict[str, Any]] = [
    {
        "id": "req-1031-001",
        "prompt": "场景需求：把口语化的会议记录整理成纪要\n"
                  "输入：嗯那个，周三前把接口文档交了，老李负责，然后测试环境下周一搭好。",
        "response": "会议纪要：\n1. 周三前提交接口文档（负责人：老李）。\n2. 下周一前搭好测试环境。",
        "source": "contrib:li-na",
        "weight": 1.0,
    },
    {
        "id": "req-1031-002",
        "prompt": "场景需求：电商客服工单自动分类\n输入：我昨天买的耳机左边没声音，能换一个吗？",
        "response": "类别：售后-换货",
        "source": "contrib:zhao-lei",
        "weight": 2.0,
    },
    {
        "id": "req-1031-003",
        "prompt": "场景需求：把政务通知改写成老年人易懂的话\n"
                  "输入：自即日起，60周岁以上户籍居民可凭身份证免费乘坐公交。",
        "response": "从今天开始，60岁以上的本地老人带上身份证，坐公交不要钱。",
        "source": "contrib:wang-fang",
        "weight": 0.5,
    },
]
EVAL_ROWS: list[dict[str, Any]] = [
    {
        "id": "req-1102-001",
        "prompt": "场景需求：把口语化的会议记录整理成纪要\n输入：下周五团建，地点还没定，小张周一前出方案。",
        "response": "会议纪要：\n1. 下周五团建，地点待定。\n2. 小张周一前提交方案。",
        "source": "contrib:li-na",
        "weight": 1.0,
    },
]


def examples_of(rows: list[dict[str, Any]]) -> list[Example]:
    return [Example(**row) for row in rows]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# -- loading ---------------------------------------------------------------------


def test_load_save_to_disk_dataset(tmp_path: Path) -> None:
    Dataset.from_list(TRAIN_ROWS).save_to_disk(tmp_path / "ds")
    assert available_splits(tmp_path / "ds") == ["train"]
    assert load_examples(tmp_path / "ds") == examples_of(TRAIN_ROWS)


def test_load_save_to_disk_dataset_dict_picks_split(tmp_path: Path) -> None:
    DatasetDict(train=Dataset.from_list(TRAIN_ROWS), eval=Dataset.from_list(EVAL_ROWS)).save_to_disk(tmp_path / "dd")
    assert available_splits(tmp_path / "dd") == ["train", "eval"]
    assert load_examples(tmp_path / "dd", "train") == examples_of(TRAIN_ROWS)
    assert load_examples(tmp_path / "dd", "eval") == examples_of(EVAL_ROWS)
    with pytest.raises(DataError, match=r"no split 'test'; available splits: train, eval"):
        load_examples(tmp_path / "dd", "test")


def test_load_jsonl_file_and_split_folder(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS)
    write_jsonl(tmp_path / "eval.jsonl", EVAL_ROWS)
    assert available_splits(tmp_path) == ["eval", "train"]
    assert load_examples(tmp_path) == examples_of(TRAIN_ROWS)
    assert load_examples(tmp_path, "eval") == examples_of(EVAL_ROWS)
    assert load_examples(tmp_path / "eval.jsonl") == examples_of(EVAL_ROWS)


def test_load_parquet_file_and_split_folder(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", TRAIN_ROWS)
    assert load_examples(tmp_path / "train.parquet") == examples_of(TRAIN_ROWS)
    assert load_examples(tmp_path, "train") == examples_of(TRAIN_ROWS)


def test_weight_is_optional_and_null_means_default(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "weight"} for row in TRAIN_ROWS]
    Dataset.from_list(rows).save_to_disk(tmp_path / "ds")
    assert [ex.weight for ex in load_examples(tmp_path / "ds")] == [1.0, 1.0, 1.0]
    # In jsonl some rows may give a weight and others not (a null in a table).
    write_jsonl(tmp_path / "mixed.jsonl", [rows[0], {**rows[1], "weight": None}, TRAIN_ROWS[2]])
    assert [ex.weight for ex in load_examples(tmp_path / "mixed.jsonl")] == [1.0, 1.0, 0.5]


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    rows = [{**row, "license": "CC-BY-4.0", "submitted_at": "2024-10-31"} for row in TRAIN_ROWS]
    assert load_examples(write_jsonl(tmp_path / "train.jsonl", rows)) == examples_of(TRAIN_ROWS)


MESSAGE_ROWS: list[dict[str, Any]] = [
    {
        "id": "chat-0001",
        "messages": [
            {"role": "system", "content": "你是一名严谨的会议秘书。"},
            {"role": "user", "content": "帮我把这段话整理成纪要：周三前交接口文档，老李负责。"},
            {"role": "assistant", "content": "会议纪要：周三前提交接口文档（负责人：老李）。"},
            {"role": "user", "content": "再加一条：测试环境下周一搭好。"},
            {"role": "assistant",
             "content": "会议纪要：\n1. 周三前提交接口文档（负责人：老李）。\n2. 下周一前搭好测试环境。"},
        ],
        "source": "contrib:li-na",
        "weight": 1.5,
    },
]
MESSAGE_EXAMPLE = Example(
    id="chat-0001",
    prompt="你是一名严谨的会议秘书。\n帮我把这段话整理成纪要：周三前交接口文档，老李负责。\n"
           "会议纪要：周三前提交接口文档（负责人：老李）。\n再加一条：测试环境下周一搭好。",
    response="会议纪要：\n1. 周三前提交接口文档（负责人：老李）。\n2. 下周一前搭好测试环境。",
    source="contrib:li-na",
    weight=1.5,
)


def test_messages_final_assistant_turn_is_the_response(tmp_path: Path) -> None:
    assert load_examples(write_jsonl(tmp_path / "chat.jsonl", MESSAGE_ROWS)) == [MESSAGE_EXAMPLE]
    Dataset.from_list(MESSAGE_ROWS).save_to_disk(tmp_path / "ds")
    assert load_examples(tmp_path / "ds") == [MESSAGE_EXAMPLE]


@pytest.mark.parametrize(("messages", "problem"), [
    ([{"role": "user", "content": "你好"}], "must end with an assistant message"),
    ([{"role": "bot", "content": "你好"}], "item 1 has role 'bot'"),
    ([{"role": "assistant", "content": 3}], "item 1 content must be a string"),
    ([], "must be a non-empty list"),
])
def test_bad_messages_are_refused(tmp_path: Path, messages: list[Any], problem: str) -> None:
    rows = [MESSAGE_ROWS[0], {"id": "chat-0002", "messages": messages, "source": "contrib:li-na"}]
    with pytest.raises(DataError, match=rf"chat\.jsonl: row 2: field 'messages' {problem}"):
        load_examples(write_jsonl(tmp_path / "chat.jsonl", rows))


def test_messages_and_prompt_together_are_refused(tmp_path: Path) -> None:
    rows = [{**MESSAGE_ROWS[0], "prompt": "x", "response": "y"}]
    with pytest.raises(DataError, match="row 1: field 'messages' is given together with prompt/response"):
        load_examples(write_jsonl(tmp_path / "chat.jsonl", rows))


def with_row(index: int, **changes: Any) -> list[dict[str, Any]]:
    rows = [dict(row) for row in TRAIN_ROWS]
    rows[index].update(changes)
    return rows


@pytest.mark.parametrize(("rows", "message"), [
    ([{k: v for k, v in r.items() if k not in ("source", "response")} for r in TRAIN_ROWS],
     r"missing column\(s\) response, source"),
    (with_row(1, weight=0), r"row 2: field 'weight' must be finite and > 0, got 0"),
    (with_row(1, weight=-1.5), r"row 2: field 'weight' must be finite and > 0, got -1.5"),
    (with_row(2, weight=math.nan), r"row 3: field 'weight' must be finite and > 0, got nan"),
    (with_row(2, weight="2"), r"row 3: field 'weight' must be a number, got str"),
    (with_row(2, weight=True), r"row 3: field 'weight' must be a number, got bool"),
    (with_row(2, prompt=42), r"row 3: field 'prompt' must be a string, got int"),
    (with_row(0, response=None), r"row 1: field 'response' must be a string, got null"),
    (with_row(1, id="  "), r"row 2: field 'id' is empty"),
    (with_row(1, id=1031002), r"row 2: field 'id' must be a string, got int"),
    (with_row(2, id="req-1031-001"), r"row 3: duplicate id 'req-1031-001' \(first used in row 1\)"),
])
def test_bad_jsonl_is_refused_with_file_row_and_field(tmp_path: Path, rows: list[dict[str, Any]],
                                                      message: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    # Every bad row above is after a good one: the whole split is refused, not the tail.
    with pytest.raises(DataError, match=rf"^{tmp_path / 'train.jsonl'}: {message}"):
        load_examples(path)


def test_bad_rows_in_tables_name_the_row(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", with_row(1, weight=-2.0))
    with pytest.raises(DataError, match=r"train\.parquet: row 2: field 'weight' must be finite and > 0"):
        load_examples(tmp_path / "train.parquet")
    # A column of the wrong Arrow type: every row is wrong, the first is named.
    Dataset.from_list([{**row, "prompt": i} for i, row in enumerate(TRAIN_ROWS)]).save_to_disk(tmp_path / "ds")
    with pytest.raises(DataError, match=r"ds: row 1: field 'prompt' must be a string, got int"):
        load_examples(tmp_path / "ds")
    DatasetDict(eval=Dataset.from_list([{"id": "a", "prompt": "p"}])).save_to_disk(tmp_path / "dd")
    with pytest.raises(DataError, match=r"dd/eval: missing column\(s\) response, source"):
        load_examples(tmp_path / "dd", "eval")


def test_unreadable_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: no such file or folder"):
        load_examples(tmp_path / "nope")
    (tmp_path / "train.csv").write_text("id,prompt\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv: unsupported file type '\.csv'"):
        load_examples(tmp_path / "train.csv")
    with pytest.raises(DataError, match=r"no dataset found"):
        available_splits(tmp_path)
    (tmp_path / "bad.jsonl").write_text(json.dumps(TRAIN_ROWS[0]) + "\n{\"id\": \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl: row 2: not valid JSON"):
        load_examples(tmp_path / "bad.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl: split 'train' has no rows"):
        load_examples(tmp_path / "empty.jsonl")
    # A single file is one split, "train"; asking for another must not quietly return it.
    write_jsonl(tmp_path / "only.jsonl", TRAIN_ROWS)
    with pytest.raises(DataError, match=r"no split 'eval'; available splits: train"):
        load_examples(tmp_path / "only.jsonl", "eval")


def test_a_split_given_twice_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS)
    write_parquet(tmp_path / "train.parquet", TRAIN_ROWS)
    with pytest.raises(DataError, match=r"split 'train' is given twice \(train\.jsonl and train\.parquet\)"):
        load_examples(tmp_path)


# -- encoding --------------------------------------------------------------------


def test_loss_mask_is_exact_on_a_hand_checked_example() -> None:
    tok = byte_tokenizer()
    ex = Example(id="x", prompt="ab", response="cd", source="s", weight=2.0)
    enc = encode_example(ex, tok, seq_len=8)
    a, b, c, d = (ord(ch) for ch in "abcd")
    assert enc.input_ids == [a, b, BYTE_SEP_ID, c, d, BYTE_EOD_ID]
    # Yuan's mask (the default): the last prompt token predicts <sep>, <sep> the first
    # response token, the last response token <eod>; the rest of the prompt and the
    # final <eod> learn nothing.
    assert enc.targets == [-100, BYTE_SEP_ID, c, d, BYTE_EOD_ID, -100]
    # The response-only mask starts at the <sep> position.
    assert encode_example(ex, tok, seq_len=8, loss_mask="response").targets == [-100, -100, c, d, BYTE_EOD_ID, -100]

    rows, _ = build_rows([ex], tok, seq_len=8, pack=False)
    assert rows.input_ids.tolist() == [[a, b, BYTE_SEP_ID, c, d, BYTE_EOD_ID, BYTE_EOD_ID, BYTE_EOD_ID]]
    assert rows.targets.tolist() == [[-100, BYTE_SEP_ID, c, d, BYTE_EOD_ID, -100, -100, -100]]
    assert rows.segment_ids.tolist() == [[0, 0, 0, 0, 0, 0, -1, -1]]
    assert rows.weights.tolist() == [[0.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]]
    assert rows.input_ids.dtype == rows.targets.dtype == rows.segment_ids.dtype == torch.long
    assert rows.weights.dtype == torch.float32
    rows, _ = build_rows([ex], tok, seq_len=8, pack=False, loss_mask="response")
    assert rows.weights.tolist() == [[0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]]


def test_an_empty_prompt_learns_from_the_sep_position() -> None:
    tok = byte_tokenizer()
    enc = encode_example(Example(id="x", prompt="", response="cd", source="s"), tok, seq_len=8)
    c, d = ord("c"), ord("d")
    # Nothing comes before <sep> to predict it, so the first target is the response's.
    assert enc.input_ids == [BYTE_SEP_ID, c, d, BYTE_EOD_ID]
    assert enc.targets == [c, d, BYTE_EOD_ID, -100]


def test_unknown_loss_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="loss_mask must be one of yuan, response"):
        encode_example(Example(id="x", prompt="a", response="b", source="s"), byte_tokenizer(), 8, loss_mask="all")


def test_long_prompts_lose_their_start_and_long_responses_are_dropped() -> None:
    tok = byte_tokenizer()
    examples = [
        Example(id="fits", prompt="0123", response="ab", source="s"),  # 4 + 1 + 2 + 1 = 8 exactly
        Example(id="long-prompt", prompt="0123456789", response="ab", source="s"),
        Example(id="no-room-for-prompt", prompt="0123", response="abcdef", source="s"),
        Example(id="long-response", prompt="", response="abcdefg", source="s"),
        Example(id="empty", prompt="0123", response=" \n\t", source="s"),
    ]
    enc = encode_example(examples[1], tok, seq_len=8)
    assert tok.decode(enc.input_ids) == "6789ab"  # the end of the prompt, nearest the question
    assert enc.truncation == "prompt_truncated"
    assert encode_example(examples[0], tok, seq_len=8).truncation is None
    assert encode_example(examples[2], tok, seq_len=8).input_ids[0] == BYTE_SEP_ID
    assert encode_example(examples[3], tok, seq_len=8) == "response_too_long"
    assert encode_example(examples[4], tok, seq_len=8) == "empty_response"

    rows, report = build_rows(examples, tok, seq_len=8, pack=False)
    assert report == DataReport(total=5, used=3, truncated={"prompt_truncated": 2},
                                dropped={"response_too_long": 1, "empty_response": 1},
                                tokens=24, rows=3, seq_len=8)
    assert report.to_dict()["dropped"] == {"response_too_long": 1, "empty_response": 1}
    assert report.summary() == ("5 examples, 3 used in 3 rows of 8 tokens (24 tokens, 100% full); "
                                "dropped 2 (empty_response 1, response_too_long 1); "
                                "truncated 2 (prompt_truncated 2)")
    assert len(rows) == 3


def test_chinese_text_round_trips(tmp_path: Path) -> None:
    tok = byte_tokenizer()
    examples = load_examples(write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS))
    assert examples == examples_of(TRAIN_ROWS)
    for ex in examples:
        enc = encode_example(ex, tok, seq_len=1024)
        sep = enc.input_ids.index(BYTE_SEP_ID)
        assert tok.decode(enc.input_ids[:sep]) == ex.prompt
        # The learned tokens are exactly the response and <eod>.
        assert tok.decode([t for t in enc.targets if t != -100]) == ex.response
        assert enc.targets[sep:-1] == enc.input_ids[sep + 1:]


# -- packing ---------------------------------------------------------------------


def example_of_length(n_tokens: int, letter: str) -> Example:
    return Example(id=letter, prompt=letter * (n_tokens - 3), response=letter.upper(), source="s")


def segments_of(rows: Any, r: int) -> list[list[int]]:
    """The input ids of each example in row r, by segment id, checking segments are contiguous from 0."""
    seg = rows.segment_ids[r].tolist()
    ids = rows.input_ids[r].tolist()
    found: list[list[int]] = []
    for s, i in zip(seg, ids, strict=True):
        if s == -1:
            continue
        if s == len(found):
            found.append([])
        assert s == len(found) - 1, f"row {r}: segment {s} is not contiguous"
        found[s].append(i)
    n_real = sum(len(f) for f in found)
    assert seg[n_real:] == [-1] * (len(seg) - n_real), "padding must come after all examples"
    return found


def test_packing_is_first_fit_and_keeps_examples_whole() -> None:
    tok = byte_tokenizer()
    lengths = {"a": 10, "b": 8, "c": 5, "d": 6, "e": 3}
    examples = [example_of_length(n, letter) for letter, n in lengths.items()]
    rows, report = build_rows(examples, tok, seq_len=16)
    assert rows.input_ids.shape == (3, 16)
    # a (10) opens row 0; b (8) does not fit there and opens row 1; c (5) goes back to row 0;
    # d (6) fits row 1; e (3) fits nowhere and opens row 2.
    expected = [["a", "c"], ["b", "d"], ["e"]]
    for r, letters in enumerate(expected):
        assert segments_of(rows, r) == [encode_example(examples["abcde".index(x)], tok, 16).input_ids
                                        for x in letters]
    padding = rows.segment_ids == -1
    assert (rows.input_ids[padding] == BYTE_EOD_ID).all()
    assert (rows.targets[padding] == -100).all()
    assert (rows.weights[padding] == 0).all()
    assert (report.tokens, report.rows, report.used) == (32, 3, 5)

    unpacked, _ = build_rows(examples, tok, seq_len=16, pack=False)
    assert unpacked.input_ids.shape == (5, 16)
    assert [len(segments_of(unpacked, r)) for r in range(5)] == [1] * 5


def test_packing_a_real_set_places_every_example_once() -> None:
    tok = byte_tokenizer()
    examples = general_replay_set()
    rows, report = build_rows(examples, tok, seq_len=200)
    placed = [tuple(ids) for r in range(len(rows)) for ids in segments_of(rows, r)]
    wanted = [tuple(encode_example(ex, tok, 200).input_ids) for ex in examples]
    assert Counter(placed) == Counter(wanted)
    assert report.rows == len(rows) < len(examples)
    assert rows.input_ids.shape[1] == 200


def test_packed_rows_compute_what_each_example_computes_alone() -> None:
    model = YuanForCausalLM(preset("yuan2_tiny"))
    model.init_weights(0)
    model.eval()
    tok = byte_tokenizer()
    examples = [
        Example(id="m1", prompt="场景需求：会议纪要\n输入：周三交文档", response="周三前提交文档。", source="s"),
        Example(id="m2", prompt="场景需求：工单分类\n输入：耳机没声音", response="售后-换货", source="s", weight=2.0),
        Example(id="m3", prompt="输入：60岁以上免费乘公交", response="老人坐公交不要钱。", source="s", weight=0.5),
    ]
    packed, _ = build_rows(examples, tok, seq_len=160)
    single, _ = build_rows(examples, tok, seq_len=160, pack=False)
    assert len(packed) < len(single)

    with torch.no_grad():
        loss, weight = weighted_token_loss(model, packed.batch(range(len(packed))))
        alone = [weighted_token_loss(model, single.batch([r])) for r in range(len(single))]
        torch.testing.assert_close(loss, sum(a[0] for a in alone), rtol=1e-5, atol=0)
        torch.testing.assert_close(weight, sum(a[1] for a in alone))

        # Logits of the second example of a packed row equal its logits alone.
        in_second = packed.segment_ids[0] == 1
        second_ids = packed.input_ids[0, in_second]
        assert second_ids.tolist() == encode_example(examples[1], tok, 160).input_ids
        row_logits = model(packed.input_ids[:1], segment_ids=packed.segment_ids[:1]).logits[0, in_second]
        alone_logits = model(second_ids[None]).logits[0]
        torch.testing.assert_close(row_logits, alone_logits, rtol=1e-5, atol=1e-5)


def test_rowset_batch_selects_rows() -> None:
    tok = byte_tokenizer()
    rows, _ = build_rows(examples_of(TRAIN_ROWS), tok, seq_len=256, pack=False)
    batch = rows.batch([2, 0])
    assert set(batch) == {"input_ids", "targets", "segment_ids", "weights"}
    assert all(t.shape == (2, 256) for t in batch.values())
    assert torch.equal(batch["input_ids"][0], rows.input_ids[2])
    assert torch.equal(batch["weights"][1], rows.weights[0])


def test_all_dropped_gives_an_empty_rowset_and_says_why() -> None:
    rows, report = build_rows([Example(id="x", prompt="p", response="", source="s")], byte_tokenizer(), 16)
    assert len(rows) == 0 and rows.input_ids.shape == (0, 16)
    assert report.dropped == {"empty_response": 1}


# -- replay ----------------------------------------------------------------------


def many_requests(n: int) -> list[Example]:
    base = examples_of(TRAIN_ROWS)
    return [Example(id=f"req-{i:04d}", prompt=base[i % 3].prompt, response=base[i % 3].response,
                    source=base[i % 3].source) for i in range(n)]


def test_mix_replay_ratio_labels_and_determinism() -> None:
    new, replay = many_requests(40), general_replay_set()
    mixed = mix_replay(new, replay, ratio=0.2, seed=7)
    assert mixed[:40] == new
    added = mixed[40:]
    assert len(added) == 10 and len(added) / len(mixed) == 0.2  # round(40 * 0.2 / 0.8) = 10
    originals = {ex.id: ex for ex in replay}
    assert len({ex.id for ex in added}) == 10  # without replacement
    for ex in added:
        assert ex.id.startswith("replay:") and ex.source == "replay"
        source = originals[ex.id.removeprefix("replay:")]
        assert (ex.prompt, ex.response, ex.weight) == (source.prompt, source.response, source.weight)
    assert mix_replay(new, replay, ratio=0.2, seed=7) == mixed
    assert mix_replay(new, replay, ratio=0.2, seed=8) != mixed


def test_mix_replay_repeats_evenly_when_the_replay_set_is_small() -> None:
    replay = general_replay_set()[:4]
    mixed = mix_replay(many_requests(30), replay, ratio=0.5, seed=0)
    added = mixed[30:]
    assert len(added) == 30
    assert len({ex.id for ex in mixed}) == len(mixed)  # repeated copies get "#2", "#3", ...
    uses = Counter(ex.id.removeprefix("replay:").split("#")[0] for ex in added)
    assert set(uses) == {ex.id for ex in replay} and max(uses.values()) - min(uses.values()) <= 1


def test_mix_replay_refuses_bad_arguments() -> None:
    new = many_requests(10)
    assert mix_replay(new, [], ratio=0.0, seed=0) == new
    for ratio in (1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="replay ratio must be in"):
            mix_replay(new, general_replay_set(), ratio=ratio, seed=0)
    with pytest.raises(ValueError, match="replay set is empty"):
        mix_replay(new, [], ratio=0.5, seed=0)


def test_general_replay_set_is_short_and_bilingual() -> None:
    replay = general_replay_set()
    assert len(replay) >= 30
    assert {ex.source for ex in replay} == {"general"}
    assert all(len(ex.response) < 80 for ex in replay)
    has_chinese = [any("\u4e00" <= ch <= "\u9fff" for ch in ex.prompt) for ex in replay]
    assert 0.3 < sum(has_chinese) / len(replay) < 0.7
    _, report = build_rows(replay, byte_tokenizer(), seq_len=256)
    assert report.used == len(replay) and not report.truncated
