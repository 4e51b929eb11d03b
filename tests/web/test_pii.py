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
    # Old 15-digit IDs: province prefix, a 19yymmdd date, a region code in use while they were
    # issued, and an ID word just before.
    ("身份证号110105491231002，请核对", "ID", "110105491231002"),
    ("老身份证号码是310104820703246", "ID", "310104820703246"),
    ("证件号：440305880611234", "ID", "440305880611234"),
    ("身份证号码（15位）：370102720101003", "ID", "370102720101003"),
    ("一代身份证 420102 591010 021 还能用吗", "ID", "420102 591010 021"),
    ("ID card no. 320102650815123, expired", "ID", "320102650815123"),
    ("Resident ID: 330106690317012", "ID", "330106690317012"),
    ("身份證號碼 610113550505052", "ID", "610113550505052"),
    # Region 130500 only exists since 1983: fine for a 15-digit ID issued later to someone born in 1950.
    ("身份证号码：１３０５００５００１０１１２３", "ID", "１３０５００５００１０１１２３"),
    # Landlines without a separator: real area code, local number not from 0/1, and a phone word
    # before (or a 转 extension after).
    ("电话01062345678，找王老师", "LANDLINE", "01062345678"),
    ("联系电话075587654321", "LANDLINE", "075587654321"),
    ("座机：02168881234", "LANDLINE", "02168881234"),
    ("固话057188886666（杭州）", "LANDLINE", "057188886666"),
    ("办公室电话07318456789，晚上没人", "LANDLINE", "07318456789"),  # 4-digit area + 7 digits
    ("请致电075526123456预约", "LANDLINE", "075526123456"),
    ("Phone: 02584561234", "LANDLINE", "02584561234"),
    ("tel01085123456", "LANDLINE", "01085123456"),
    ("拨打02887654321转3", "LANDLINE", "02887654321转3"),
    ("01062782114转801是教务处", "LANDLINE", "01062782114转801"),
    ("传真：０５１２６７８９１２３４", "LANDLINE", "０５１２６７８９１２３４"),
    ("Tel010-62345678", "LANDLINE", "010-62345678"),
    # Mobiles glued to a label.
    ("tel13812345678", "PHONE", "13812345678"),
    ("TEL13912345678请回电", "PHONE", "13912345678"),
    ("TEL:13812345678", "PHONE", "13812345678"),
    ("Tel.13812345678", "PHONE", "13812345678"),
    ("Tel-13812345678", "PHONE", "13812345678"),
    ("phone13712345678", "PHONE", "13712345678"),
    ("mobile13812345678", "PHONE", "13812345678"),
    ("mob13312345678, thanks", "PHONE", "13312345678"),
    ("cell15012345678", "PHONE", "15012345678"),
    ("手机号码：13812345678", "PHONE", "13812345678"),
    ("加我wx18612345678", "PHONE", "18612345678"),
    ("vx17712345678备注来意", "PHONE", "17712345678"),
    ("微信13812345678", "PHONE", "13812345678"),
    ("WeChat13612345678 is my id", "PHONE", "13612345678"),
    ("Tel+8618912345678", "PHONE", "+8618912345678"),
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
    # 15 digits that are not old IDs: no ID word, another kind of number named, or a bad shape.
    "订单号110105491231002",
    "快递单号 310104820703246 已签收",
    "tracking number 370102720101003",
    "ID 110105491231002",  # a bare "ID" can be any identifier
    "身份证和订单号：320102650815123",
    "证件照片编号 420102591010021",
    "身份证丢了。310104820703246 是我的工单",
    "身份证号110105491331002",  # month 13
    "身份证号 110199491231002",  # no region 110199
    "身份证号 990105491231002",  # no province 99
    "身份证号130505800101123",  # 任泽区: only since 2020
    "身份证110201600101123",  # 昌平县: code gone in 1982
    "身份证号码共15位，比如1101054912310023",  # 16 digits
    "编号112914199001011234",  # checksum and date fine, county unknown (stdnum raised KeyError)
    # 11-12 digits from a 0 that are not landlines.
    "01062345678",  # no context: order and invoice numbers have this shape too
    "订单号01062345678",
    "快递单号075587654321",
    "电话订单号：02168881234",
    "电话坏了。075587654321 是快递单号",
    "电话：\n01062345678",
    "电话01012345678",  # local number from 1
    "电话 06001234567",  # no area code 0600
    "电话：010623456789",  # Beijing local numbers have 8 digits
    "时间戳 20261201123456",
    "hotel01062345678",
    "序列号 02584561234-A",
    "电话 = 01062345678 × 3",
    # Letters glued to a mobile that are not a label.
    "abc13812345678",
    "id13812345678",
    "order13812345678",
    "qq13812345678",  # a QQ account, not a phone
    "SN13812345678",
    "hotel13812345678",
    "mytel13812345678",
    "user_tel13812345678",
    "sha a1b2tel13812345678",
    "batch-13812345678",
    "tel138123456789",
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


def test_old_id_needs_an_id_word_right_before() -> None:
    number = "110105491231002"
    assert only(f"身份证号{number}").kind == "ID"
    assert only(f"旧身份证（十五位）：{number}").kind == "ID"
    assert find_pii(f"订单号{number}") == []
    assert find_pii(f"身份证的事我们以后再说吧，先查{number}") == []  # 12 characters between: too far
    # Same digits, 18-digit form: the ID word is not needed there.
    assert only("11010519491231002X").kind == "ID"


def test_glued_landline_needs_a_phone_word_or_an_extension() -> None:
    assert only("电话：01062345678").kind == "LANDLINE"
    assert only("01062345678转801").value == "01062345678转801"
    assert find_pii("01062345678") == []
    assert find_pii("01062345678-801") == []  # "-801" says less than "转801"
    assert find_pii("电话号码在订单里：01062345678") == []
    # A mobile stays a PHONE, whatever the word before it.
    assert [(f.kind, f.value) for f in find_pii("座机13812345678，电话01062345678")] == [
        ("PHONE", "13812345678"), ("LANDLINE", "01062345678")]


def test_labels_glued_to_a_number() -> None:
    for label in ("tel", "TEL", "Tel", "phone", "telephone", "cellphone", "cell", "mobile", "mob",
                  "wx", "vx", "weixin", "wechat", "WhatsApp"):
        assert only(f"{label}13812345678").value == "13812345678", label
    for word in ("qq", "id", "no", "abc", "order", "hotel", "mytel", "x", "telx", "tel_", "0xwx"):
        assert find_pii(f"{word}13812345678") == [], word
    # Landlines accept only the phone labels, not the WeChat ones.
    assert only("fax01062345678").kind == "LANDLINE"
    assert find_pii("wx01062345678") == []


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
    assert mask("tel13812345678") == "tel138****5678"
    assert mask("电话01062345678，") == "电话****78，"
    assert mask("身份证号110105491231002") == "身份证号<ID>"
    assert scrub("身份证号110105491231002，座机075587654321，wx18612345678") == (
        "身份证号<ID>，座机<LANDLINE>，wx<PHONE>", Counter({"ID": 1, "LANDLINE": 1, "PHONE": 1}))


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
