"""The built-in byte tokenizer and the safety of people's text."""

from __future__ import annotations

from trainer.config import BYTE_EOD_ID, BYTE_SEP_ID, YuanConfig
from trainer.tokenizer import byte_tokenizer


def test_byte_tokenizer_round_trips_chinese_and_pins_special_ids() -> None:
    tok = byte_tokenizer()
    text = "场景需求：把口语化的会议记录整理成纪要\n输入：嗯，那个，明天三点开会"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert (tok.eod_id, tok.sep_id) == (BYTE_EOD_ID, BYTE_SEP_ID)


def test_literal_special_tokens_in_text_stay_text() -> None:
    tok = byte_tokenizer()
    text = "为什么 tokenizer 把 <eod> 和 <sep> 当成普通文本？"
    ids = tok.encode(text)
    assert tok.eod_id not in ids and tok.sep_id not in ids
    assert tok.decode(ids) == text
    # Control tokens are only produced where asked for.
    assert tok.encode("a<sep>b", allow_special=True) == [97, tok.sep_id, 98]


def test_yuan_sep_token_key_wins_over_a_sloppy_sep_token_id() -> None:
    cfg = YuanConfig.from_dict({"eod_token": 77185, "sep_token": 77187, "eod_token_id": 77185,
                                "sep_token_id": 77185, "pad_token_id": 77185})
    assert (cfg.eod_token_id, cfg.sep_token_id) == (77185, 77187)
