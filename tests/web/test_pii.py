"""intake.pii: the personal-data detector (pure: no database, no Django)."""

import dataclasses
import itertools
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from intake.pii import KINDS, Finding, find_pii, mask, scrub

EVAL_SET = Path(__file__).parent / "fixtures" / "pii_eval.jsonl"

POSITIVES = [
    # (text, kind, value)
    ("电话13812345678，有事打给我", "PHONE", "13812345678"),
    ("联系人：张伟 +86 138 1234 5678", "PHONE", "+86 138 1234 5678"),
    ("请拨打(+86)13912345678咨询", "PHONE", "(+86)13912345678"),
    ("手机：186-2233-4455（工作日）", "PHONE", "186-2233-4455"),
    ("Call me at +8613700001234 after 6pm.", "PHONE", "+8613700001234"),
    ("公司座机010-12345678，分机找前台", "LANDLINE", "010-12345678"),
    ("深圳办公室电话(0755)8765 4321", "LANDLINE", "(0755)8765 4321"),
    ("Office: +86 10 6234 5678", "LANDLINE", "+86 10 6234 5678"),
    ("邮箱abc@example.com谢谢", "EMAIL", "abc@example.com"),
    ("Email me at john.doe@gmail.com please.", "EMAIL", "john.doe@gmail.com"),
    ("发到liu＠tsinghua.edu.cn就行", "EMAIL", "liu＠tsinghua.edu.cn"),
    ("身份证号11010519491231002X，请核对", "ID", "11010519491231002X"),
    ("证件号码51010719970601385x（小写x）", "ID", "51010719970601385x"),
    ("卡号6222025486205798685，请转账", "BANK_CARD", "6222025486205798685"),
    ("Card number: 4392 8878 3848 3723", "BANK_CARD", "4392 8878 3848 3723"),
    ("服务器IP是192.168.1.20，端口8080", "IP", "192.168.1.20"),
    ("IPv6地址2001:db8::8a2e:370:7334", "IP", "2001:db8::8a2e:370:7334"),
    ("git clone https://bob:hunter22@github.com/acme/app.git，谢谢", "SECRET",
     "https://bob:hunter22@github.com/acme/app.git"),
    ("https://api.example.com/v1/items?token=abcDEF123456&page=2", "SECRET", "abcDEF123456"),
    ("我的token是ghp_abcdefghijklmnopqrstuvwxyz0123456789，帮我看看", "SECRET",
     "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("export OPENAI_API_KEY=sk-proj-abcdefghij1234567890XYZ", "SECRET", "sk-proj-abcdefghij1234567890XYZ"),
    ("AWS key AKIAIOSFODNN7EXAMPLE 泄露了", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("slack: xoxb-1234567890-0987654321-AbCdEfGhIjKl", "SECRET", "xoxb-1234567890-0987654321-AbCdEfGhIjKl"),
    ("我的密码是Abc12345，别告诉别人", "SECRET", "Abc12345"),
]

NEGATIVES = [
    "订单号202401011230456789，请尽快发货",
    "时间戳 20240101123045 的记录丢失了",
    "价格¥13812.50，包邮",
    "2^64 = 18446744073709551616",
    "答案：13812345678 ÷ 2 = 6906172839",
    "升级到 v1.2.3.4 之后就报错",
    "见规范第 4.2.1.3 节",
    "commit 3f2a9c8e1b7d6054a1c2e3f4b5a6978812345678",
    "编号138123456789（12位）",
    "批次号 20231201-13812345678-A",
    "随机18位：310104198207032460",  # fails the ID checksum
    "随机16位 4392887838483726",  # fails Luhn
    "IMEI 490154203237518",  # Luhn-valid, but no card network issues 15 digits starting with 4
    "y = x@self.weight + self.bias",
    "npm install react@18.2.0",
    "std::vector<int> v; use std::collections::HashMap;",
    "MAC地址 00:1A:2B:3C:4D:5E，时间 12:30:45",
    "max_tokens=4096, sort_key=name, api_key=your_api_key, password: ********",
]


def only(text: str) -> Finding:
    findings = find_pii(text)
    assert len(findings) == 1, findings
    return findings[0]


@pytest.mark.parametrize(("text", "kind", "value"), POSITIVES)
def test_each_kind_found_with_its_exact_span(text: str, kind: str, value: str) -> None:
    finding = only(text)
    assert (finding.kind, finding.value) == (kind, value)
    assert text[finding.start : finding.end] == value
    assert finding.start == text.index(value)


@pytest.mark.parametrize("text", NEGATIVES)
def test_tricky_negatives(text: str) -> None:
    assert find_pii(text) == []


def test_full_width_text_maps_back_to_original_offsets() -> None:
    text = "联系１３８－１２３４－５６７８。邮件ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ好的，地址：１９２．１６８．０．１"
    findings = find_pii(text)
    assert [(f.kind, f.value) for f in findings] == [
        ("PHONE", "１３８－１２３４－５６７８"),
        ("EMAIL", "ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
        ("IP", "１９２．１６８．０．１"),
    ]
    for f in findings:
        assert text[f.start : f.end] == f.value
    # Nothing of the surrounding Chinese is swallowed.
    assert text[findings[0].start - 2 : findings[0].start] == "联系"
    assert text[findings[0].end] == "。"


def test_offsets_survive_characters_that_normalise_to_several() -> None:
    # "㈠" NFKC-normalises to three characters, "㎡" to two: offsets after them must still be right.
    text = "㈠面积20㎡，电话13812345678"
    f = only(text)
    assert text[f.start : f.end] == "13812345678"


def test_glued_to_chinese_on_both_sides() -> None:
    text = "姓名王强手机13911112222邮箱wq@example.com身份证11010519841219338X谢谢"
    assert [(f.kind, f.value) for f in find_pii(text)] == [
        ("PHONE", "13911112222"),
        ("EMAIL", "wq@example.com"),
        ("ID", "11010519841219338X"),
    ]


def test_overlaps_keep_the_longer_then_the_more_specific() -> None:
    # A phone inside an email address: the email (longer) wins.
    assert [(f.kind, f.value) for f in find_pii("我的邮箱13812345678@139.com")] == [("EMAIL", "13812345678@139.com")]
    # An IP inside a credential URL: the SECRET (longer) wins.
    f = only("mysql://root:abc123456@10.0.0.3:3306/db")
    assert f.kind == "SECRET"
    # An IPv4 tail inside an IPv6 address.
    assert only("映射地址::ffff:192.0.2.128").value == "::ffff:192.0.2.128"
    # Valid ID and Luhn-valid UnionPay-shaped: same span, the ID is the more specific.
    assert only("号码620102199001020017").kind == "ID"


def test_findings_are_sorted_non_overlapping_and_frozen() -> None:
    text = "电话13512345678/座机010-68123456，卡号6222 0254 8620 5798 685，IP 10.1.2.3"
    findings = find_pii(text)
    assert [f.kind for f in findings] == ["PHONE", "LANDLINE", "BANK_CARD", "IP"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    with pytest.raises(dataclasses.FrozenInstanceError):
        findings[0].kind = "EMAIL"  # type: ignore[misc]


def test_scrub_replaces_with_typed_placeholders_and_counts() -> None:
    text = ("姓名：王强，手机13911112222，备用+86 139 8888 6666，邮箱wq@example.com，"
            "身份证110105196901188793，卡号6222025486205798685，IP 192.168.1.1，token=abcDEF123456")
    scrubbed, counts = scrub(text)
    assert scrubbed == ("姓名：王强，手机<PHONE>，备用<PHONE>，邮箱<EMAIL>，"
                        "身份证<ID>，卡号<BANK_CARD>，IP <IP>，token=<SECRET>")
    assert counts == Counter({"PHONE": 2, "EMAIL": 1, "ID": 1, "BANK_CARD": 1, "IP": 1, "SECRET": 1})
    assert scrub("没有个人信息的句子。") == ("没有个人信息的句子。", Counter())


def test_mask_keeps_a_hint() -> None:
    assert mask("电话13812345678，") == "电话138****5678，"
    assert mask("手机：+86 138 1234 5678") == "手机：138****5678"
    assert mask("邮箱abc@example.com谢谢") == "邮箱a***@example.com谢谢"
    assert mask("卡号6222025486205798685") == "卡号****8685"
    assert mask("身份证11010519491231002X") == "身份证<ID>"
    assert mask("IP 192.168.1.20") == "IP 192.168.*.*"
    assert mask("token=abcDEF123456") == "token=<SECRET>"


def _eval_rows() -> list[dict]:
    return [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_mask_never_leaks_a_value_of_the_eval_set() -> None:
    for row in _eval_rows():
        masked = mask(row["text"])
        plain = unicodedata.normalize("NFKC", masked)
        for e in row["expected"]:
            assert e["value"] not in masked, (row["id"], masked)
            digits = re.sub(r"[^0-9Xx]", "", unicodedata.normalize("NFKC", e["value"]))
            if len(digits) >= 7:
                assert digits not in re.sub(r"[^0-9Xx]", "", plain), (row["id"], masked)


def test_eval_set_precision_and_recall() -> None:
    rows = _eval_rows()
    positives = [row for row in rows if row["expected"]]
    assert len(positives) >= 200 and len(rows) - len(positives) >= 200
    assert {e["kind"] for row in positives for e in row["expected"]} == set(KINDS)
    tp = fp = fn = 0
    for row in rows:
        # Exact match on kind, start and value: a span off by one character counts as both errors.
        expected = Counter((e["kind"], e["start"], e["value"]) for e in row["expected"])
        found = Counter((f.kind, f.start, f.value) for f in find_pii(row["text"]))
        assert all(row["text"][start : start + len(value)] == value for _, start, value in expected)
        tp += sum((expected & found).values())
        fp += sum((found - expected).values())
        fn += sum((expected - found).values())
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert precision >= 0.97, (precision, tp, fp)
    assert recall >= 0.97, (recall, tp, fn)
