"""curation.decontam: benchmark decontamination by long n-grams (pure: no database, no Django)."""

import json
from pathlib import Path

import pytest

from curation import decontam
from curation.decontam import MIN_UNITS, NGRAM, EvalIndex, Hit, units

FIXTURES = Path(__file__).parent / "fixtures"
GENERAL = Path(__file__).resolve().parents[2] / "trainer" / "assets" / "general.jsonl"
BENCHMARK = "benchmark:sample"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


BENCH_ITEMS = _jsonl(FIXTURES / "benchmark_sample.jsonl")
GENERAL_ITEMS = _jsonl(GENERAL)
ROWS = _jsonl(FIXTURES / "decontam_eval.jsonl")
HEADER = "以下是单项选择题，请直接给出正确答案的选项。\n\n"


def _index(**kwargs: int) -> EvalIndex:
    index = EvalIndex(**kwargs)
    for item in GENERAL_ITEMS:
        index.add(source="general", item_id=item["id"], prompt=item["prompt"], answer=item["response"])
    for item in BENCH_ITEMS:
        index.add(source=BENCHMARK, item_id=item["id"], prompt=item["prompt"], answer=item["answer"])
    return index


@pytest.fixture(scope="module")
def index() -> EvalIndex:
    return _index()


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("中国的首都是哪座城市？", list("中国的首都是哪座城市")),
    ("Which planet is closest to the Sun?", ["which", "planet", "is", "closest", "to", "the", "sun"]),
    ("在 TCP/IP 协议族中，DNS负责解析", ["在", "tcp", "/", "ip", *"协议族中", "dns", *"负责解析"]),
    ("ＡＢＣ全角：１２３！", ["abc", "全", "角", "0"]),
    ("计算：37 + 48 = ？", ["计", "算", "0", "+", "0", "="]),
    ("4.5 小时，1,000 元，2,4,8", ["0", "小", "时", "0", "元", "0", "0", "0"]),
    ("well-known: 10 - 3 * 2, **注意** - 列表", ["well", "known", "0", "-", "0", "*", "0", "注", "意", "列", "表"]),
    ("x − 3 × 5 ÷ y", ["x", "-", "0", "×", "0", "÷", "y"]),
    ("你好，\n\n  世界！😀", ["你", "好", "世", "界"]),
])
def test_units(text: str, expected: list[str]) -> None:
    assert units(text) == expected


def test_units_ignore_width_case_spacing_and_punctuation() -> None:
    typed = units("一辆汽车从甲地开往乙地，每小时行驶 60 千米，4.5 小时到达。")
    assert units("一辆汽车从甲地开往乙地,每小时行驶６０千米,４．５小时到达.") == typed
    assert units("一辆汽车 从甲地 开往乙地 每小时行驶60千米 4.5小时到达") == typed
    assert units("WHICH Amendment?") == units("which amendment")


# --- the labelled set ------------------------------------------------------------------------


def test_fixture_sets_are_well_formed() -> None:
    bench_ids = {item["id"] for item in BENCH_ITEMS}
    general_ids = {item["id"] for item in GENERAL_ITEMS}
    assert len(bench_ids) == len(BENCH_ITEMS) == 60
    assert not bench_ids & general_ids
    contaminated = [row for row in ROWS if row["contaminated"]]
    clean = [row for row in ROWS if not row["contaminated"]]
    assert len(contaminated) >= 80 and len(clean) >= 120
    assert all(row["of"] in bench_ids | general_ids for row in contaminated)
    assert all(row["of"] is None for row in clean)
    assert len({(row["prompt"], row["response"]) for row in ROWS}) == len(ROWS)
    # Both sources and both rules are exercised.
    assert {row["of"].startswith("general-") for row in contaminated} == {True, False}
    assert any(len(units(row["prompt"])) < NGRAM for row in contaminated)


CONTAMINATED = [row for row in ROWS if row["contaminated"]]
CLEAN = [row for row in ROWS if not row["contaminated"]]


@pytest.mark.parametrize("row", CONTAMINATED, ids=lambda row: f"{row['of']} {row['note']}")
def test_each_contaminated_row_is_caught_with_its_item(index: EvalIndex, row: dict) -> None:
    hit = index.match(prompt=row["prompt"], response=row["response"])
    assert hit is not None
    assert hit.item_id == row["of"]
    assert hit.source == ("general" if row["of"].startswith("general-") else BENCHMARK)


@pytest.mark.parametrize("row", CLEAN, ids=lambda row: row["note"])
def test_each_clean_row_is_kept(index: EvalIndex, row: dict) -> None:
    assert index.match(prompt=row["prompt"], response=row["response"]) is None


def _precision_recall(n: int) -> tuple[float, float]:
    index = _index(n=n)
    hits = [(row["contaminated"], index.match(prompt=row["prompt"], response=row["response"])) for row in ROWS]
    caught = sum(1 for contaminated, hit in hits if contaminated and hit is not None)
    flagged = sum(1 for _, hit in hits if hit is not None)
    return caught / flagged, caught / sum(1 for contaminated, _ in hits if contaminated)


@pytest.mark.parametrize(("n", "precision", "recall"),
                         [(14, 0.970, 1.0), (15, 1.0, 1.0), (16, 1.0, 0.990), (17, 1.0, 0.959)])
def test_calibration_figures_in_the_docstring(n: int, precision: float, recall: float) -> None:
    # The module docstring's table, and why NGRAM is 15: 14-unit frames hit clean rows.
    assert _precision_recall(n) == (pytest.approx(precision, abs=5e-4), pytest.approx(recall, abs=5e-4))
    assert NGRAM == 15


# --- the rules -------------------------------------------------------------------------------

GSM = ("A bakery makes 120 muffins every morning. By noon, 45% of them are sold, and by closing "
       "another 38 are sold. How many muffins are left at the end of the day?")
FIRST_GRAM = "a bakery makes 0 muffins every morning by noon 0 % of them are sold"  # its first 15 units


def _one(prompt: str, answer: str = "", source: str = BENCHMARK, **kwargs: int) -> EvalIndex:
    index = EvalIndex(**kwargs)
    index.add(source=source, item_id="item-1", prompt=prompt, answer=answer)
    return index


def test_numbers_are_masked() -> None:
    index = _one(GSM)
    other_numbers = GSM.replace("120", "250").replace("45%", "12.5%").replace("38", "1,000")
    assert index.match(prompt=other_numbers) == Hit(BENCHMARK, "item-1", FIRST_GRAM)
    # Words are not masked: a word changed every few units breaks every run.
    reworded = ("A bakery bakes 120 muffins each morning. At noon, 45% of those are gone, and at "
                "closing another 38 are sold. How many muffins remain at the end of the day?")
    assert index.match(prompt=reworded) is None


def test_the_response_and_the_answer_are_compared_too() -> None:
    answer = "He has 4 * 15 = 60 plants, which produce 60 * 6 = 360 tomatoes in all."
    index = _one("Tom has some tomatoes.", answer=answer)
    assert index.match(prompt="How many?", response="He has 5 * 12 = 60 plants, which produce 60 * 7 = 420 tomatoes.")
    assert index.match(prompt=GSM) is None
    assert _one(GSM).match(prompt="帮我出一道应用题", response=GSM).ngram == FIRST_GRAM


def test_a_run_shorter_than_ngram_is_not_enough() -> None:
    index = _one(GSM, stride=1)
    run = units(GSM)
    assert index.match(prompt="请解释：" + " ".join(run[3 : 3 + NGRAM])) is not None
    assert index.match(prompt="请解释：" + " ".join(run[3 : 3 + NGRAM - 1])) is None


def test_a_shared_run_of_ngram_plus_stride_minus_one_is_always_caught() -> None:
    passage = next(item["prompt"] for item in BENCH_ITEMS if item["id"] == "zh-rc-04")
    index = _one(passage)
    run = units(passage)
    length = NGRAM + decontam.STRIDE - 1
    assert all(index.match(prompt="概括：" + "".join(run[at : at + length])) for at in range(len(run) - length + 1))
    # One unit shorter, some starts are missed: the stride is what makes it a range, not a cliff.
    assert not all(index.match(prompt="概括：" + "".join(run[at : at + length - 1])) for at in range(len(run) - length))


@pytest.mark.parametrize(("prompt", "item_id"), [
    ("计算：12 + 5 = ？", "general-math-add-zh"),  # the item with other numbers: its exact shape
    ("计算37+48=?", "general-math-add-zh"),
    ("帮我算：计算：3 + 4 = ？", "general-math-add-zh"),  # whole clauses after a prefix
    ("请回答：中国的首都是哪座城市？", "general-fact-capital-zh"),
    ("中国的首都是哪座城市？它有多少人口？", "general-fact-capital-zh"),
    ("Which planet is closest to the Sun? Answer in one word.", "general-fact-planet-en"),
])
def test_short_items_are_matched_whole(index: EvalIndex, prompt: str, item_id: str) -> None:
    assert index.match(prompt=prompt) == Hit("general", item_id, "whole prompt")


@pytest.mark.parametrize("prompt", [
    "计算：37 × 48 = ？",  # another operator
    "计算：37 + 48 + 15 = ？",  # more operands
    "请计算 37 + 48 = ？",  # words added inside the clause
    "中国的首都是北京吗？",
    "中国的首都是哪座城市的政治中心？",
    "What is the average of 4, 8, 15 and 23?",  # the item's words, then more of the same sentence
    "Which planet is closest to the Sun and which is farthest?",
])
def test_short_items_do_not_match_inside_a_clause_or_with_another_shape(index: EvalIndex, prompt: str) -> None:
    assert index.match(prompt=prompt) is None


def test_very_short_items_are_never_matched() -> None:
    index = EvalIndex()
    index.add(source="eval", item_id="hi", prompt="你好！")
    index.add(source="eval", item_id="thanks", prompt="Thanks a lot")
    assert len(units("你好！")) < MIN_UNITS <= len(units("Thanks a lot"))
    assert index.match(prompt="你好！") is None
    assert index.match(prompt="thanks, a lot!") == Hit("eval", "thanks", "whole prompt")


def test_the_source_and_the_first_item_are_named() -> None:
    index = EvalIndex()
    index.add(source="eval", item_id="row-7", prompt="随便聊聊")
    index.add(source="benchmark:ceval-mini", item_id="ceval-3", prompt=GSM)
    index.add(source="general", item_id="copy", prompt=GSM)
    assert len(index) == 3
    hit = index.match(prompt="Solve: " + GSM)
    assert (hit.source, hit.item_id) == ("benchmark:ceval-mini", "ceval-3")
    assert index.match(prompt="随便聊聊").source == "eval"


def test_an_item_added_after_a_match_is_indexed() -> None:
    index = _one("一周有几天？")
    assert index.match(prompt=GSM) is None
    index.add(source="eval", item_id="row-1", prompt=GSM)
    assert index.match(prompt=GSM) == Hit("eval", "row-1", FIRST_GRAM)


# --- templates -------------------------------------------------------------------------------

QUESTIONS = [
    "下列物质中，属于电解质的是\nA. 铜\nB. 蔗糖\nC. 氯化钠\nD. 二氧化碳",
    "下列词语中，没有错别字的一项是\nA. 迫不急待\nB. 再接再厉\nC. 一愁莫展\nD. 世外桃园",
    "我国的根本政治制度是\nA. 人民代表大会制度\nB. 民族区域自治制度\nC. 基层群众自治制度\nD. 政治协商制度",
    "标志着中国新民主主义革命开端的历史事件是\nA. 辛亥革命\nB. 五四运动\nC. 中国共产党成立\nD. 南昌起义",
    "在细胞有丝分裂过程中，染色体数目加倍发生在\nA. 间期\nB. 前期\nC. 中期\nD. 后期",
    "我国季风气候显著，夏季风主要来自\nA. 北冰洋和大西洋\nB. 太平洋和印度洋\nC. 蒙古和西伯利亚\nD. 青藏高原",
    "根据我国民法典，完全民事行为能力人的年龄条件是年满\nA. 十六周岁\nB. 十八周岁\nC. 二十周岁\nD. 二十二周岁",
    "成年人正常安静状态下的心率范围一般为每分钟\nA. 40～50 次\nB. 60～100 次\nC. 110～130 次\nD. 140～160 次",
    "当某种商品的需求价格弹性大于 1 时，降低该商品的价格会使销售总收入\nA. 增加\nB. 减少\nC. 不变\nD. 无法确定",
    "下列关于光合作用的叙述，正确的是\nA. 光反应在基质中\nB. 光反应在类囊体上\nC. 暗反应需要光\nD. 暗反应在叶绿体外",
]
# Another question that starts like three of the items: header + "下列" is 22 units, shared with them.
OTHER = ("下列关于牛顿第一定律的说法，正确的是\nA. 物体不受力时一定静止\nB. 力是维持物体运动的原因\n"
         "C. 一切物体都具有惯性\nD. 速度越大惯性越大")


def _header_index(count: int) -> EvalIndex:
    index = EvalIndex(stride=1)
    for number, question in enumerate(QUESTIONS[:count]):
        index.add(source=BENCHMARK, item_id=f"mc-{number}", prompt=HEADER + question + "\n答案：", answer="A")
    return index


def test_a_header_shared_by_many_items_is_a_template() -> None:
    index = _header_index(decontam.COMMON_ITEMS)
    assert index.match(prompt=HEADER + OTHER + "\n答案：") is None
    assert index.match(prompt=HEADER + QUESTIONS[3]).item_id == "mc-3"
    assert index.match(prompt="这道题选什么？" + QUESTIONS[2].replace("\n", " ")).item_id == "mc-2"


def test_without_the_template_cut_the_header_would_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decontam, "TEMPLATE_CHARS", 10**6)
    hit = _header_index(decontam.COMMON_ITEMS).match(prompt=HEADER + OTHER)
    assert hit is not None and hit.ngram.endswith("的选项下")


def test_a_header_of_a_few_items_is_their_text() -> None:
    # Fewer than COMMON_ITEMS items share it: it may be what makes them specific.
    assert _header_index(decontam.COMMON_ITEMS - 1).match(prompt=HEADER + OTHER) is not None


def test_a_row_sharing_only_a_common_template_phrase_is_clean(index: EvalIndex) -> None:
    for prompt in (
        "请回答下面的问题：为什么冬天室内要开窗通风？",
        "阅读下面的短文，回答问题。\n\n我家楼下有一家小小的早餐店，老板是一对从安徽来的夫妻。\n\n问题：老板是哪里人？",
        "Solve step by step: There are 48 students in a school club. 3/8 of them are boys. How many girls are there?",
        "把这句话翻译成英文：今天的天气很好，我们去公园吧。",
        "判断这条评论的情感（正面/负面）：快递太慢了。",
    ):
        assert index.match(prompt=prompt) is None, prompt


BOILERPLATE = "请按照以下要求作答：先给出结论，再分点说明理由，每点不超过五十字，最后给出参考资料。"


def _boilerplate_index(count: int) -> EvalIndex:
    # Different openings of one length, so the boilerplate sits at the same offset in every item.
    topics = ("股票", "基金", "房产", "保险", "黄金", "债券", "期货", "外汇", "存款", "理财")[:count]
    index = EvalIndex()
    for number, topic in enumerate(topics):
        index.add(source="eval", item_id=f"row-{number}", prompt=f"{topic}问题。{BOILERPLATE}{topic}现在值得买吗？")
    return index


def test_boilerplate_inside_many_items_is_not_their_text() -> None:
    row = f"养老问题。{BOILERPLATE}养老保险应该怎么交？"
    assert _boilerplate_index(decontam.COMMON_ITEMS).match(prompt=row) is None
    assert _boilerplate_index(decontam.COMMON_ITEMS - 1).match(prompt=row) is not None


def test_a_suffix_shared_by_many_answers_is_a_template() -> None:
    refusal = "作为一个人工智能语言模型，我无法提供这方面的建议，请咨询专业人士。"
    topics = ("股票", "基金", "房产", "保险", "黄金", "债券", "期货", "外汇", "比特币", "理财")
    assert len(topics) == decontam.COMMON_ITEMS
    index = EvalIndex()
    for number, topic in enumerate(topics):
        answer = f"关于{topic}的问题。" + refusal
        index.add(source="eval", item_id=f"row-{number}", prompt=f"{topic}值得买吗？", answer=answer)
    assert index.match(prompt="我该买哪只股票？", response="这个问题我回答不了。" + refusal) is None
    index = EvalIndex()
    index.add(source="eval", item_id="row-0", prompt="股票值得买吗？", answer="关于股票的问题。" + refusal)
    assert index.match(prompt="我该买哪只股票？", response=refusal).item_id == "row-0"


SENTIMENT = "判断这条评论的情感（正面/负面）：快递很快，包装也很好。"  # the general set's; its instruction is 14 units


@pytest.mark.parametrize(("review", "caught"), [
    ("快递太慢了，等了一个星期才到。", False),  # the instruction and "快": another request
    ("快递很差，包装也破了。", False),  # "快递很": 3 units past it
    ("快递很快，包装也不错。", True),  # "快递很快包装也": 7 units past it
    ("快递很快，包装也很好。", True),
])
def test_a_run_from_an_instruction_must_reach_into_the_content(review: str, caught: bool) -> None:
    index = _one(SENTIMENT, source="general")
    instruction = SENTIMENT.split("：")[0]
    assert len(units(instruction)) == NGRAM - 1
    assert (index.match(prompt=f"{instruction}：{review}") is not None) is caught


def test_the_instruction_rule_is_what_keeps_such_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decontam, "CONTENT_UNITS", 0)
    assert _one(SENTIMENT).match(prompt="判断这条评论的情感（正面/负面）：快递太慢了。") is not None


def test_a_stem_that_ends_in_a_colon_is_still_caught_past_it(index: EvalIndex) -> None:
    # "下列关于光合作用的叙述，正确的是：" is 14 units, like an instruction; the row shares 12 more.
    hit = index.match(prompt="下列关于光合作用的叙述，正确的是：光反应阶段发生在叶绿体的哪个部位？")
    assert hit is not None and hit.item_id == "zh-mc-14"


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="n >= 2"):
        EvalIndex(n=1)
    with pytest.raises(ValueError, match="stride >= 1"):
        EvalIndex(stride=0)
