"""ghsync.parsing: the request formats people actually use on the co-training issue (pure functions, no database)."""

import json
from pathlib import Path

import pytest

from ghsync.parsing import Example, detect_language, looks_like_request, parse_request, summarize

FIXTURES = Path(__file__).parent / "fixtures" / "github"


def pairs(text: str) -> list[tuple[str, str]]:
    return [(example.input, example.output) for example in parse_request(text).examples]


@pytest.mark.parametrize(
    "text",
    [
        "场景需求：翻译\n输入：你好\n输出：Hello",
        "场景需求: 翻译\n输入: 你好\n输出: Hello",
        "场景需求为：翻译\n输入为：你好\n输出为：Hello",
        "场景需求为翻译\n输入为你好\n输出为Hello",
        "场景需求：翻译；输入：你好；输出：Hello",
        "场景需求: 翻译  输入: 你好  输出: Hello",
        "场景需求为: 翻译; 输入为: 你好; 输出为: Hello",
        "**场景需求：** 翻译\n\n**输入：** 你好\n\n**输出：** Hello",
        "**场景需求**：翻译\n**输入**：你好\n**输出**：Hello",
        "- 场景需求：翻译\n- 输入：你好\n- 输出：Hello",
        "> 场景需求：翻译\n> 输入：你好\n> 输出：Hello",
        "## 场景需求\n翻译\n## 输入\n你好\n## 输出\nHello",
        "场景需求：\n翻译\n\n输入：\n你好\n\n输出：\nHello\n",
        "```\n场景需求：翻译\n输入：你好\n输出：Hello\n```",
        "场景需求：翻译\r\n输入：你好\r\n期望输出：Hello",
        "Scenario: 翻译\nInput: 你好\nOutput: Hello",
        "scenario：翻译\ninput：你好\nexpected：Hello",
    ],
)
def test_one_example_in_every_label_style(text: str) -> None:
    parsed = parse_request(text)
    assert parsed.scenario == "翻译"
    assert pairs(text) == [("你好", "Hello")]


def test_english_request_with_expected_and_actual_output() -> None:
    parsed = parse_request(
        "Scenario: unit conversion\nInput: 5 miles in km?\nActual output: 5 km\nExpected output: About 8.05 km."
    )
    assert parsed.scenario == "unit conversion"
    assert parsed.examples == (Example("5 miles in km?", "About 8.05 km.", "5 km"),)
    assert detect_language("About 8.05 km.") == "en"


def test_numbered_list_of_several_examples_with_code_blocks_and_note() -> None:
    text = (
        "希望增强 SQL 生成。\n\n示例1：\n输入：查询每个部门工资最高的员工\n输出：\n```sql\nSELECT name FROM emp;\n```\n"
        "示例2：\n输入：统计订单数\n输出：SELECT COUNT(*) FROM orders;\n\n注：MySQL 8 语法"
    )
    parsed = parse_request(text)
    assert pairs(text) == [
        ("查询每个部门工资最高的员工", "SELECT name FROM emp;"),
        ("统计订单数", "SELECT COUNT(*) FROM orders;"),
    ]
    assert parsed.notes == "MySQL 8 语法"
    assert parsed.summary == "希望增强 SQL 生成"


def test_numbered_items_without_example_headers() -> None:
    text = "1. 输入：1+1等于几？ 输出：2\n2. 输入：2×3等于几？ 输出：6\n3. 输入：10÷4等于几？\n   输出：2.5"
    assert pairs(text) == [("1+1等于几？", "2"), ("2×3等于几？", "6"), ("10÷4等于几？", "2.5")]


def test_labels_inside_code_are_code_not_labels() -> None:
    text = "场景需求：代码解释\n输入：\n```python\nprint('输出：hello')\n# 输入：x\n```\n输出：打印 输出：hello"
    parsed = parse_request(text)
    assert parsed.examples[0].input == "print('输出：hello')\n# 输入：x"
    assert parsed.examples[0].output.startswith("打印")


def test_fenced_value_keeps_its_code_and_drops_the_fence() -> None:
    text = "输入：写快排\n输出：\n```python\ndef qs(a):\n    return a\n```"
    assert pairs(text) == [("写快排", "def qs(a):\n    return a")]


def test_issue_form_sections() -> None:
    text = (
        "### 场景需求 / Scenario\n\n合同条款抽取\n\n### 输入 / Input\n\n甲方应于3月31日前付款。\n\n"
        "### 模型的输出 / Model output\n\n_No response_\n\n### 期望输出 / Expected output\n\n付款期限：3月31日前\n\n"
        "### 更多示例 / More examples\n\n输入：乙方5日内开票。\n输出：开票期限：5日内\n\n"
        "### 语言 / Language\n\n中文 Chinese\n\n### 模型版本 / Model version\n\nYuan2-2B-Mars-hf\n\n"
        "### 数据许可 / Data license\n\n- [x] 我同意以 CC-BY-4.0 共享"
    )
    parsed = parse_request(text)
    assert parsed.is_form
    assert parsed.scenario == "合同条款抽取"
    # "付款期限：" inside a form field is content, not a label.
    assert parsed.examples == (
        Example("甲方应于3月31日前付款。", "付款期限：3月31日前"),
        Example("乙方5日内开票。", "开票期限：5日内"),
    )
    assert (parsed.language, parsed.model_version, parsed.consent) == ("zh", "Yuan2-2B-Mars-hf", True)


def test_issue_form_unchecked_consent_and_empty_fields() -> None:
    text = (
        "### 场景需求 / Scenario\n\n摘要\n\n### 输入 / Input\n\n_No response_\n\n"
        "### 数据许可 / Data license\n\n- [ ] 我同意"
    )
    parsed = parse_request(text)
    assert parsed.consent is False
    assert parsed.examples == ()


def test_markdown_table_of_examples() -> None:
    text = "| 输入 | 期望输出 |\n| --- | --- |\n| 1英里等于多少公里？ | 约1.609公里 |\n| 100°F? | 约37.8°C |"
    assert pairs(text) == [("1英里等于多少公里？", "约1.609公里"), ("100°F?", "约37.8°C")]


def test_arrow_list_of_examples() -> None:
    text = "希望提升成语释义：\n- 画蛇添足 → 比喻做多余的事\n- 守株待兔 -> 比喻死守经验"
    assert pairs(text) == [("画蛇添足", "比喻做多余的事"), ("守株待兔", "比喻死守经验")]
    assert parse_request(text).summary == "希望提升成语释义"


def test_prose_without_example() -> None:
    text = "希望源2.0能提升长文本摘要能力。目前对于超过3000字的技术文档，摘要经常遗漏关键结论。"
    parsed = parse_request(text)
    assert parsed.examples == () and parsed.scenario == ""
    assert parsed.summary == "希望源2.0能提升长文本摘要能力"
    assert looks_like_request(text)


def test_input_without_output_is_an_incomplete_pair() -> None:
    parsed = parse_request("场景需求：摘要\n输入：一段很长的新闻")
    assert parsed.examples == (Example("一段很长的新闻", ""),)
    assert parsed.complete_examples == ()


def test_prose_words_are_not_labels() -> None:
    # "输入" and "输出" in running text, without a colon after them, are words.
    parsed = parse_request("用户输入一段文字后，模型输出的结果经常不完整，希望改进。")
    assert parsed.examples == () and parsed.labels_found == ()


@pytest.mark.parametrize(
    "text",
    [
        "+1",
        "同求",
        "同求，期待支持！👍",
        "感谢分享！",
        "Thanks!",
        "请问下个月什么时候发布？",
        "> 场景需求：翻译\n\n+1",
        "",
    ],
)
def test_agreement_and_questions_are_not_requests(text: str) -> None:
    assert not looks_like_request(text)


@pytest.mark.parametrize(
    ("text", "language"),
    [("你好，世界", "zh"), ("Hello world", "en"), ("用 Python 写一个 quick sort 函数", "zh"), ("12345", "other"),
     ("Translate 学而时习之 into English please, keeping the tone", "mixed")],
)  # fmt: skip
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_summary_skips_mentions_and_tables() -> None:
    assert summarize("@maint\n| a | b |\n很好的建议。后面还有") == "很好的建议"


def test_every_tracking_comment_fixture_parses_as_expected() -> None:
    comments = {c["id"]: c["body"] for c in json.loads((FIXTURES / "tracking_comments.json").read_text("utf-8"))}
    counts = {cid: len(parse_request(body).complete_examples) for cid, body in comments.items()}
    assert counts[1842200102] == 1  # 古诗词鉴赏, several lines
    assert counts[1842200103] == 1  # one line, 为, ASCII colons
    assert counts[1842200104] == 3  # numbered list, SQL code blocks
    assert counts[1842200105] == 1  # English, bold labels
    assert counts[1842200106] == 1  # code block input
    assert counts[1842200107] == 1  # whole request in a code block
    assert counts[1842200108] == 0  # prose
    assert counts[1842200112] == 2  # table
    assert counts[1842200115] == 1  # one line with spaces and 注
    assert counts[1842200116] == 2  # arrows
    assert parse_request(comments[1842200115]).notes == "需要给出计算步骤"
    assert parse_request(comments[1842200104]).examples[2].output.startswith("SELECT c.name FROM customers c")
