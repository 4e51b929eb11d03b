"""intake.neardup: near-duplicate requests by MinHash LSH (pure: no database, no Django)."""

import argparse
import json
import logging
import random
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from intake import neardup
from intake.neardup import (
    NGRAM,
    NUM_PERM,
    THRESHOLD,
    band_keys,
    clusters,
    lsh_params,
    normalize,
    shingles,
    signature,
    signature_from_bytes,
    signature_to_bytes,
    signatures,
    similarity,
)

EVAL_SET = Path(__file__).parent / "fixtures" / "neardup_eval.jsonl"
PLATFORM_DIR = Path(__file__).resolve().parents[2] / "platform"


def load_set() -> list[dict]:
    return [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()]


def is_han(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("CJK UNIFIED IDEOGRAPH")


def sim(a: str, b: str) -> float:
    return similarity(signature(a), signature(b))


def partition(labels: list[int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


# --- the labelled set --------------------------------------------------------------------


def test_labelled_set_is_large_mixed_and_well_formed():
    rows = load_set()
    assert {tuple(sorted(row)) for row in rows} == {("a", "b", "duplicate", "lang", "note")}
    duplicates = [row for row in rows if row["duplicate"]]
    assert len(duplicates) >= 150 and len(rows) - len(duplicates) >= 150
    langs = [row["lang"] for row in rows]
    assert set(langs) == {"zh", "en", "mixed"} and langs.count("zh") > len(rows) / 2
    lengths = [len(row[side]) for row in rows for side in ("a", "b")]
    assert min(lengths) >= 10 and max(lengths) <= 600
    assert all(row["a"] != row["b"] and row["note"] for row in rows)
    assert len({(row["a"], row["b"]) for row in rows}) == len(rows)


def test_precision_and_recall_on_the_labelled_set():
    # Measured at NGRAM=3, THRESHOLD=0.6: P 0.895, R 0.885 (bench/neardup_calibrate.py). The
    # floors sit about five pairs below: the set is hard on purpose (a third of its
    # non-duplicates differ from each other in one key word), so 0.9 is not a fair floor for a
    # character sketch, and a change that loses five more pairs must fail here.
    rows = load_set()
    predicted = [sim(row["a"], row["b"]) >= THRESHOLD for row in rows]
    labels = [row["duplicate"] for row in rows]
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    precision = tp / sum(predicted)
    recall = tp / sum(labels)
    assert precision >= 0.87, precision
    assert recall >= 0.86, recall


def test_band_keys_find_most_duplicates_of_the_set():
    # Measured: 94.0% of the duplicates share a band key, 87.4% also pass the threshold.
    rows = [row for row in load_set() if row["duplicate"]]
    candidates = found = 0
    for row in rows:
        sa, sb = signature(row["a"]), signature(row["b"])
        shared = bool(set(band_keys(sa)) & set(band_keys(sb)))
        candidates += shared
        found += shared and similarity(sa, sb) >= THRESHOLD
    assert candidates / len(rows) >= 0.92
    assert found / len(rows) >= 0.85


# --- normalisation -----------------------------------------------------------------------


def test_other_numbers_are_the_same_request():
    assert normalize("帮我算一下 37+48 等于多少") == normalize("帮我算一下 125+9 等于多少") == "帮我算一下0+0等于多少"
    assert sim("帮我算一下 37+48 等于多少", "帮我算一下 125+9 等于多少") == 1.0
    # Decimals, thousands, times and dates are one number each; full-width digits too. ("%" and
    # "?" are punctuation, so they go.)
    assert normalize("What is 17% of 3,450?") == normalize("What is 23.5% of 880?") == "whatis0of0"
    assert normalize("会议 12:30 开始") == normalize("会议１０：００开始")
    assert normalize("2024-03-15") == normalize("1999-12-31") == "0"


def test_number_names_are_numbers():
    assert normalize("What is seven times eight?") == normalize("What is 12 times 9?") == "whatis0times0"
    assert normalize("thirty-seven apples") == normalize("one hundred and five apples") == "0apples"
    # Only whole words: "someone" and "often" keep their letters.
    assert normalize("someone often") == "someoneoften"


def test_full_width_and_ascii_punctuation_and_spacing_are_the_same():
    full_width = "Ｗｈａｔ ｉｓ ｔｈｅ ｃａｐｉｔａｌ ｏｆ Ａｕｓｔｒａｌｉａ？"
    assert normalize(full_width) == normalize("What is the capital of Australia?") == "whatisthecapitalofaustralia"
    assert normalize("写一个函数，判断一个字符串是不是回文。") == normalize("写一个函数,判断一个字符串是不是回文.")
    assert normalize("用 Python 写一个冒泡排序") == normalize("用Python写一个冒泡排序")
    assert normalize("“今天天气很好”") == normalize("「今天天气很好」") == normalize('"今天天气很好"')
    assert normalize("a\tb\u3000c\u200bd\n") == "abcd"


def test_symbols_stay_because_they_are_content():
    assert normalize("0+0") != normalize("0*0")
    assert normalize("x = y") == "x=y"


def test_every_han_character_is_kept():
    text = "源2.0在回答一二三百千万问题时，经常编造年份：唐朝建立于公元618年。谢谢！"
    assert [ch for ch in normalize(text) if is_han(ch)] == [ch for ch in text if is_han(ch)]


# --- shingles and signatures -------------------------------------------------------------


def test_short_chinese_texts_are_kept():
    assert shingles("你好") == {"你好".encode()}
    assert shingles("你好！") == shingles("你好")
    four = "谢谢你们"
    assert len(shingles(four)) == 4 - NGRAM + 1
    sig = signature(four)
    assert sig.shape == (NUM_PERM,)
    # A signature of an empty MinHash is all maximum values; a kept text has real minima.
    assert (sig < np.iinfo(np.uint32).max).all()
    assert similarity(sig, signature(four)) == 1.0
    assert similarity(signature("你好"), signature("你好！")) == 1.0
    assert similarity(signature("你好"), signature("您好")) < 0.1
    # A text of nothing but punctuation is the empty shingle, not an empty set.
    assert shingles("？！…") == {b""}


def test_shingles_are_character_ngrams_of_the_normalised_text():
    assert shingles("ABCDE", n=3) == {b"abc", b"bcd", b"cde"}
    assert shingles("中文测试", n=2) == {s.encode() for s in ("中文", "文测", "测试")}
    with pytest.raises(ValueError):
        shingles("abc", n=0)


def test_signatures_are_deterministic_and_batch_equals_single():
    texts = ["帮我写一首关于秋天的七言绝句", "Explain recursion with an example.", "x"]
    batch = signatures(texts)
    for text, sig in zip(texts, batch, strict=True):
        assert sig.dtype == np.dtype("<u4")
        assert np.array_equal(sig, signature(text))


def test_signature_bytes_round_trip():
    sig = signature("这段代码为什么输出0而不是-1？")
    data = signature_to_bytes(sig)
    assert isinstance(data, bytes) and len(data) == 4 * NUM_PERM
    back = signature_from_bytes(data)
    assert np.array_equal(back, sig) and back.dtype == sig.dtype
    back[0] ^= 1  # writable, and a copy: the bytes are not changed
    assert signature_from_bytes(data)[0] == sig[0]
    with pytest.raises(ValueError):
        signature_from_bytes(data[:-1])


def test_similarity_rejects_signatures_of_different_lengths():
    with pytest.raises(ValueError):
        similarity(signature("abc"), signature("abc", num_perm=64))


def test_unrelated_texts_are_not_similar():
    for row in load_set():
        if row["note"].startswith("unrelated"):
            assert sim(row["a"], row["b"]) < 0.25, row["note"]


def test_long_unrelated_technical_texts_stay_below_the_threshold():
    # Character bigrams saturate on long Latin-script text: these stdlib sources estimate
    # 0.55-0.70 similar at n=2, 0.23-0.32 at n=3. A case may hold 20,000 characters.
    sources = [Path(module.__file__).read_text(encoding="utf-8")[:10_000] for module in (argparse, logging, textwrap)]
    sigs = signatures(sources)
    for i in range(len(sigs)):
        for j in range(i + 1, len(sigs)):
            assert similarity(sigs[i], sigs[j]) < THRESHOLD - 0.15


# --- band keys ---------------------------------------------------------------------------


def test_band_keys_fit_a_signed_bigint_and_match_datasketch_bands():
    bands, rows = lsh_params()
    assert bands * rows <= NUM_PERM and bands >= 2
    keys = band_keys(signature("源2.0支持多长的上下文？"))
    assert len(keys) == bands
    assert all(isinstance(k, int) and -(2**63) <= k < 2**63 for k in keys)
    assert len(set(keys)) == bands  # the band index is hashed in: equal bands do not collide


def test_duplicates_share_a_band_key_and_unrelated_texts_do_not():
    a = band_keys(signature("帮我给客户王建国写一封邮件，告诉他订单已经发货，预计3天后到达，快递单号是SF1234567890。"))
    b = band_keys(signature("帮我给客户王建国写一封邮件，告诉他订单已经发货，预计5天后到达，快递单号是SF9876543210！"))
    c = band_keys(signature("Summarize the main causes of World War I in five bullet points."))
    assert set(a) & set(b)
    assert not set(a) & set(c)


def test_band_keys_are_the_same_in_another_process():
    # Keys are stored in the database: they must not depend on Python's per-process hash salt.
    text = "把下面这句话翻译成英文：今天天气很好，我们去公园散步吧。"
    code = (f"import sys; sys.path.insert(0, {str(PLATFORM_DIR)!r}); from intake import neardup; "
            f"print(neardup.band_keys(neardup.signature({text!r})))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert json.loads(out.stdout) == band_keys(signature(text))


def test_scheme_names_the_settings():
    assert f"n{NGRAM}" in neardup.SCHEME and f"t{THRESHOLD}" in neardup.SCHEME


# --- clusters ----------------------------------------------------------------------------

PLANTED = [
    ["请帮我写一封辞职信，原因是要出国读研，语气要诚恳，感谢领导三年来的培养。",
     "你好，请帮我写一封辞职信，原因是要出国读研，语气要诚恳，感谢领导三年来的培养，谢谢！",
     "请帮我写一封辞职信,原因是要出国读研,语气要诚恳,感谢领导5年来的培养."],
    ["What is 17% of 3,450? Show your working step by step.",
     "What is 23% of 880? Show your working step by step.",
     "Please, what is 40% of 95? Show your working step by step!"],
    ["这段代码为什么输出0而不是-1？def find_max(nums): max_val = 0; for n in nums: ...; print(find_max([-3, -7, -1]))",
     "这段代码为什么输出 0 而不是 -1 ? def find_max(nums): max_val = 0; for n in nums: ...; print(find_max([-5, -2]))"],
]
DISTINCT = [
    "源2.0是哪家公司开发的？支持商用吗？",
    "推荐几部适合周末和家人一起看的科幻电影",
    "How do I undo the last git commit without losing my changes?",
    "把“路漫漫其修远兮”翻译成白话文并解释出处",
    "一个长方形长12厘米，宽8厘米，它的面积和周长分别是多少？",
    "Write a limerick about a programmer who loves coffee.",
    "帮我列一个新房装修的流程清单，从收房到入住，每一步要注意什么",
    "MySQL的事务隔离级别有哪些？分别解决什么问题？",
    "感冒发烧的时候能不能洗澡？",
    "Explain what a binary search tree is to a beginner.",
]


def planted_corpus() -> tuple[list[str], set[frozenset[int]]]:
    texts = list(DISTINCT)
    expected = {frozenset([i]) for i in range(len(DISTINCT))}
    for group in PLANTED:
        start = len(texts)
        texts.extend(group)
        expected.add(frozenset(range(start, len(texts))))
    return texts, expected


def test_clusters_group_planted_near_copies_among_distinct_texts():
    texts, expected = planted_corpus()
    labels = clusters(texts)
    assert partition(labels) == expected
    # A label is the index of the cluster's first member: singletons label themselves.
    assert all(label == min(group) for group in partition(labels) for label in [labels[min(group)]])
    assert all(labels[i] == i for i in range(len(DISTINCT)))


def test_clusters_are_deterministic_and_their_grouping_ignores_order():
    texts, expected = planted_corpus()
    assert clusters(texts) == clusters(list(texts))
    rng = random.Random(5)
    for _ in range(3):
        order = list(range(len(texts)))
        rng.shuffle(order)
        shuffled_labels = clusters([texts[i] for i in order])
        # Map the shuffled positions back to the original indices.
        groups = {frozenset(order[i] for i in group) for group in partition(shuffled_labels)}
        assert groups == expected
        assert all(label == min(g) for g in partition(shuffled_labels) for label in [shuffled_labels[min(g)]])


PARTS = [
    "第一步先确认显卡驱动和CUDA版本是否匹配，",
    "第二步检查PyTorch是不是GPU版本的安装包，",
    "第三步在命令行里运行nvidia-smi查看显存占用，",
    "第四步把batch size调小后重新启动训练脚本，",
    "第五步打开梯度检查点功能来节省一部分显存，",
    "第六步记录每一轮的损失并画出训练曲线，",
    "第七步训练结束后在验证集上评估模型效果。",
]


def test_clusters_join_chains_and_handle_edge_cases():
    # a ~ b and b ~ c but not a ~ c: connected components put all three together.
    a, b, c = ("".join(PARTS[k : k + 5]) for k in range(3))
    assert sim(a, b) >= THRESHOLD and sim(b, c) >= THRESHOLD and sim(a, c) < THRESHOLD
    assert clusters([a, "完全无关的一句话：今天北京下雪了吗", c, b]) == [0, 1, 0, 0]
    assert clusters([]) == []
    assert clusters(["只有一条"]) == [0]
    same = "帮我写一份活动策划方案，公司年会，大概100人，预算5万，要有抽奖和节目表演环节"
    assert clusters([same, "完全无关的一句话：今天北京下雪了吗", same]) == [0, 1, 0]
