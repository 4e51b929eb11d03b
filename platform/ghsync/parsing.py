"""Understanding a co-training request written on GitHub: pure functions, no Django, no I/O.

People write requests however they like (the real tracking issue has no required
format), so the parser looks for *labels* rather than a layout:

- issue forms: `### 场景需求 / Scenario` sections, `_No response_` for empty fields;
- Chinese labels `场景需求 / 输入 / 输出 / 注` with or without `为`, with a full-width or
  ASCII colon, at the start of a line or several on one line (`输入：…；输出：…`);
- English labels `Scenario / Input / Output / Expected / Actual`;
- markdown around them (`**输入：**`, `- 输入:`, `> 输入：`, `1. 输入：`, `## 输出`) and
  fenced code blocks as values (labels inside a code block are code, not labels,
  unless the whole request sits in one);
- several examples: each new input label starts a new example pair, so numbered
  lists (`示例1`, `1.`, `例二`) need no special case; markdown tables with input
  and output columns; list items written as `input → output`.

`parse_request` returns what it found; deciding what to do with it (a case, a
needs-info case, or "not a request") belongs to `ghsync.services`.
"""

import re
import textwrap
from dataclasses import dataclass, field

SCENARIO, ABILITY, INPUT, OUTPUT, BAD_OUTPUT, NOTE = "scenario", "ability", "input", "output", "bad_output", "note"
MODEL, LANGUAGE, CONSENT, MORE = "model_version", "language", "consent", "more_examples"

# Longest first within a kind does not matter: the alternation below is sorted by length.
LABELS: dict[str, tuple[str, ...]] = {
    SCENARIO: (
        "场景需求", "需求场景", "应用场景", "使用场景", "场景描述", "需求描述", "场景", "需求", "任务",
        "scenario", "use case", "use-case", "task",
    ),
    ABILITY: ("所需能力", "需要的能力", "能力需求", "能力", "ability", "capability", "required ability"),
    INPUT: (
        "输入示例", "示例输入", "用户输入", "输入内容", "输入", "提问", "prompt", "input", "question", "user input",
    ),
    OUTPUT: (
        "期望输出", "预期输出", "理想输出", "期望的输出", "期望回答", "期望结果", "正确输出", "正确答案", "参考答案",
        "示例输出", "输出示例", "输出", "回答", "答案",
        "expected output", "expected answer", "expected result", "expected", "output", "answer",
    ),
    BAD_OUTPUT: (
        "模型输出", "模型的输出", "模型回答", "模型回复", "实际输出", "当前输出", "源输出", "源2.0输出", "yuan输出",
        "yuan 输出", "错误输出", "model output", "actual output", "current output", "yuan output", "actual",
    ),
    NOTE: ("注", "备注", "说明", "补充说明", "note", "notes", "remark", "remarks"),
    MODEL: ("模型版本", "model version"),
    LANGUAGE: ("语言", "language"),
    CONSENT: ("数据许可", "许可", "授权", "consent", "license"),
    MORE: ("更多示例", "其他示例", "more examples", "additional examples"),
}  # fmt: skip
# One character (or one letter) is a label only at the start of a line: `问：` / `Q:`.
LINE_START_LABELS: dict[str, tuple[str, ...]] = {INPUT: ("问", "q"), OUTPUT: ("答", "a")}
# Kinds that only issue-form headings use; in prose "语言：" or "许可：" is content.
HEADING_ONLY = {MODEL, LANGUAGE, CONSENT, MORE}

NO_RESPONSE = "_no response_"
FENCE_OPEN, FENCE_CLOSE = "\ue000", "\ue001"
SCENARIO_MAX = 200
SUMMARY_MAX = 80
MIN_REQUEST_CHARS = 12
# Words that make an unlabelled comment a request rather than a thank-you or a +1.
REQUEST_WORDS = (
    "希望", "需求", "能否", "能不能", "建议", "场景", "支持", "请", "想要", "需要", "增强", "提升", "不会", "不能",
    "错误", "答错", "want", "need", "should", "request", "support", "please", "would like", "fails", "wrong",
)  # fmt: skip
AGREEMENT = re.compile(r"^\s*(\+1|同求|同问|顶|mark|赞|感谢|谢谢|thanks?( you)?|👍|同上)[!！。.~～\s]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Example:
    """One input/output pair (the output may be missing: then the pair is incomplete)."""

    input: str
    output: str = ""
    bad_output: str = ""


@dataclass(frozen=True)
class ParsedRequest:
    scenario: str = ""
    # The first sentence of the prose, for callers that need a scenario nobody labelled.
    summary: str = ""
    examples: tuple[Example, ...] = ()
    notes: str = ""
    model_version: str = ""
    language: str = ""
    # True/False when an issue form's consent checkbox was found, None otherwise.
    consent: bool | None = None
    is_form: bool = False
    labels_found: tuple[str, ...] = field(default=())

    @property
    def complete_examples(self) -> tuple[Example, ...]:
        return tuple(example for example in self.examples if example.input and example.output)


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


_LABEL_TO_KIND = {word.lower(): kind for kind, words in LABELS.items() for word in words}
_LINE_LABEL_TO_KIND = {word.lower(): kind for kind, words in LINE_START_LABELS.items() for word in words}
_INLINE_WORDS = [word for kind, words in LABELS.items() if kind not in HEADING_ONLY for word in words]
_MD_PREFIX = r"[ \t]*(?:>[ \t]*)*(?:[-*+][ \t]+|\d{1,2}[.)、][ \t]*|[（(]\d{1,2}[)）][ \t]*)?"
_BOLD = r"(?:\*\*|__|\*)?"
_COLON = r"[ \t]*(?:\*\*|__)?[ \t]*(?:为[ \t]*)?[:：](?:[ \t]*(?:\*\*|__))?"
# A label starts a line (after list/quote markers) or follows a separator on the same line.
_LABEL_RE = re.compile(
    rf"(?:(?<=\n)|^|(?<=[；;，,。!！?？|\s]))(?P<prefix>{_MD_PREFIX}|[ \t]*){_BOLD}"
    rf"(?P<label>{_alternation(_INLINE_WORDS)})(?:[ \t]*(?:\d{{1,2}}|[一二三四五六七八九十]))?{_COLON}",
    re.IGNORECASE,
)
_LINE_LABEL_RE = re.compile(
    rf"(?m)^{_MD_PREFIX}{_BOLD}(?P<label>{_alternation(list(_LINE_LABEL_TO_KIND))})[ \t]*[:：]{_BOLD}",
    re.IGNORECASE,
)
# `输入为xxx` without a colon, at the start of a line (the "with 为" style).
_WEI_RE = re.compile(
    rf"(?m)^{_MD_PREFIX}{_BOLD}(?P<label>{_alternation(_INLINE_WORDS)})为(?=[^:：\s])",
)
# A heading or a bold-only line naming a field: `### 输入 / Input`, `**期望输出**`.
_HEADING_RE = re.compile(r"(?m)^(?:#{1,6}[ \t]+(?P<h>[^\n]+?)|\*\*(?P<b>[^*\n]{1,40})\*\*)[ \t]*[:：]?[ \t]*$")
_FENCE_RE = re.compile(r"(?ms)^[ \t]*(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)+\|?\s*$")
_ARROW_ITEM = re.compile(
    r"(?m)^[ \t]*(?:[-*+]|\d{1,2}[.)、])[ \t]+(?P<left>[^\n]+?)[ \t]*(?:→|->|=>|⇒)[ \t]*(?P<right>[^\n]+)$"
)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CHECKBOX = re.compile(r"(?m)^[ \t]*[-*][ \t]+\[(?P<mark>[ xX])\][ \t]+(?P<text>.+)$")
_EXAMPLE_HEADER = re.compile(
    r"(?m)^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?(?:示例|例子|例|样例|example|case)[ \t]*[\d一二三四五六七八九十]*"
    r"(?:\*\*)?[ \t]*[:：]?(?:\*\*)?[ \t]*$",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """Line endings, zero-width characters and HTML comments (issue forms' hints) out."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u200b", "").replace("\ufeff", "")
    return _HTML_COMMENT.sub("", text)


def detect_language(text: str) -> str:
    """`zh`, `en`, `mixed` or `other`, from the share of CJK characters among letters."""
    cjk = latin = 0
    for char in text:
        if "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf":
            cjk += 1
        elif char.isascii() and char.isalpha():
            latin += 1
    if cjk == 0 and latin == 0:
        return "other"
    if cjk == 0:
        return "en"
    # Chinese with code or English terms in it is still Chinese: a word is ~5 letters,
    # and a Chinese word ~2 characters.
    words = latin / 5
    if words <= cjk / 2:
        return "zh"
    return "mixed" if cjk >= 4 else "en"


def _mask_fences(text: str) -> tuple[str, list[str]]:
    blocks: list[str] = []

    def keep(match: re.Match[str]) -> str:
        blocks.append(match.group(0))
        return f"{FENCE_OPEN}{len(blocks) - 1}{FENCE_CLOSE}"

    return _FENCE_RE.sub(keep, text), blocks


def _unmask(text: str, blocks: list[str]) -> str:
    return re.sub(f"{FENCE_OPEN}(\\d+){FENCE_CLOSE}", lambda m: blocks[int(m.group(1))], text)


def clean_value(value: str) -> str:
    """A field's text without decoration: a lone fenced block becomes its contents."""
    value = value.strip().rstrip("；").strip()
    value = re.sub(r"^(?:\*\*|__)|(?:\*\*|__)$", "", value).strip()
    if value.lower() == NO_RESPONSE:
        return ""
    match = _FENCE_RE.fullmatch(value)
    if match:
        return textwrap.dedent(match.group("body")).rstrip("\n")
    # Quoted values (`> 你好`) are quotes of the text, not a reply to someone.
    lines = value.split("\n")
    if all(line.startswith(">") or not line.strip() for line in lines):
        value = "\n".join(re.sub(r"^>[ \t]?", "", line) for line in lines).strip()
    # Strip surrounding quotes people put around one-line values: “你好” / "hello".
    if "\n" not in value and len(value) >= 2 and value[0] + value[-1] in {"“”", '""', "「」", "『』", "``"}:
        value = value[1:-1].strip()
    return value


def _heading_kind(title: str) -> str | None:
    title = title.strip().strip("*").strip().rstrip(":：").strip().lower()
    for word in sorted(_LABEL_TO_KIND, key=len, reverse=True):
        if title.startswith(word):
            rest = title[len(word) :].strip()
            if not rest or rest[0] in "/|(（-—:：" or re.fullmatch(r"[a-z ]+", rest):
                return _LABEL_TO_KIND[word]
    return None


def _find_labels(masked: str) -> list[tuple[int, int, str]]:
    """(start, value start, kind) for every label in the masked text, in order."""
    found: dict[int, tuple[int, int, str]] = {}
    for match in _HEADING_RE.finditer(masked):
        kind = _heading_kind(match.group("h") or match.group("b"))
        if kind is not None:
            found[match.start()] = (match.start(), match.end(), kind)
    for regex, table in ((_LABEL_RE, _LABEL_TO_KIND), (_LINE_LABEL_RE, _LINE_LABEL_TO_KIND), (_WEI_RE, _LABEL_TO_KIND)):
        for match in regex.finditer(masked):
            start = match.start()
            if any(begin <= start < end for begin, end, _ in found.values()):
                continue
            found.setdefault(start, (start, match.end(), table[match.group("label").lower()]))
    return sorted(found.values())


def _checkbox_consent(text: str) -> bool | None:
    boxes = list(_CHECKBOX.finditer(text))
    if not boxes:
        return None
    return all(box.group("mark") in "xX" for box in boxes)


def _table_examples(text: str) -> list[Example]:
    lines = text.split("\n")
    for i in range(len(lines) - 1):
        if "|" not in lines[i] or not _TABLE_SEPARATOR.match(lines[i + 1]):
            continue
        header = [_heading_kind(cell) for cell in lines[i].strip().strip("|").split("|")]
        if INPUT not in header or OUTPUT not in header:
            continue
        examples = []
        for row in lines[i + 2 :]:
            if "|" not in row:
                break
            cells = [cell.strip().replace("<br>", "\n") for cell in row.strip().strip("|").split("|")]
            value = {kind: cells[j] for j, kind in enumerate(header) if kind and j < len(cells)}
            if value.get(INPUT):
                examples.append(Example(value[INPUT], value.get(OUTPUT, ""), value.get(BAD_OUTPUT, "")))
        return examples
    return []


def _arrow_examples(text: str) -> list[Example]:
    return [Example(clean_value(m.group("left")), clean_value(m.group("right"))) for m in _ARROW_ITEM.finditer(text)]


def _fields(text: str) -> tuple[list[tuple[str, str]], str]:
    """(kind, value) pairs in order, and the prose before the first label."""
    masked, blocks = _mask_fences(text)
    labels = _find_labels(masked)
    if not labels and blocks:
        # The whole request in a code block: its labels are the request's labels.
        unwrapped = _FENCE_RE.sub(lambda m: m.group("body"), text)
        masked, blocks = _mask_fences(unwrapped)
        labels = _find_labels(masked)
    pairs = []
    for index, (_start, value_start, kind) in enumerate(labels):
        end = labels[index + 1][0] if index + 1 < len(labels) else len(masked)
        raw = masked[value_start:end]
        if end < len(masked) and end > 0 and masked[end - 1] != "\n":
            # Several labels on one line: the separator before the next one is not content.
            raw = raw.rstrip().rstrip("；;，,")
        # An "示例2：" line between two examples belongs to neither value.
        raw = _EXAMPLE_HEADER.sub("", raw)
        pairs.append((kind, clean_value(_unmask(raw, blocks))))
    preamble = _unmask(masked[: labels[0][0]] if labels else masked, blocks)
    return pairs, preamble


def _examples_from_fields(pairs: list[tuple[str, str]]) -> list[Example]:
    examples: list[dict[str, str]] = []
    for kind, value in pairs:
        if kind == INPUT:
            examples.append({INPUT: value, OUTPUT: "", BAD_OUTPUT: ""})
        elif kind in (OUTPUT, BAD_OUTPUT) and examples:
            current = examples[-1]
            if current[kind]:  # a second output without a new input: another answer to the same input
                examples.append({INPUT: current[INPUT], OUTPUT: "", BAD_OUTPUT: ""})
                current = examples[-1]
            current[kind] = value
        elif kind in (OUTPUT, BAD_OUTPUT):
            examples.append({INPUT: "", OUTPUT: "", BAD_OUTPUT: "", kind: value})
    return [Example(e[INPUT], e[OUTPUT], e[BAD_OUTPUT]) for e in examples if e[INPUT] or e[OUTPUT]]


def summarize(text: str, *, limit: int = SUMMARY_MAX) -> str:
    """The first sentence of some prose, for a scenario nobody labelled."""
    masked, _ = _mask_fences(text)
    for line in masked.split("\n"):
        line = re.sub(r"^[\s>#*+\-\d.、)）]+", "", line).strip().strip("*").strip()
        line = re.sub(f"{FENCE_OPEN}\\d+{FENCE_CLOSE}", "", line).strip()
        if len(line) < 2 or line.startswith(("@", "|")):
            continue
        sentence = re.split(r"(?<=[。！？!?])|(?<=[.;；])\s", line, maxsplit=1)[0].strip()
        sentence = sentence.rstrip("。.:：;；，,")
        return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"
    return ""


def parse_request(text: str) -> ParsedRequest:
    """Scenario, example pairs and the other fields of one request; missing parts are empty."""
    text = normalize(text or "")
    pairs, preamble = _fields(text)
    values: dict[str, list[str]] = {}
    for kind, value in pairs:
        values.setdefault(kind, []).append(value)
    examples = _examples_from_fields(pairs)
    for more in values.get(MORE, []):
        examples += parse_request(more).examples
    if not any(example.input and example.output for example in examples):
        examples = examples or _table_examples(text) or _arrow_examples(text)
    notes = [value for kind in (ABILITY, NOTE) for value in values.get(kind, []) if value]
    scenario = next((value for value in values.get(SCENARIO, []) if value), "")
    consent_text = "\n".join(values.get(CONSENT, []))
    language = next((value for value in values.get(LANGUAGE, []) if value), "")
    return ParsedRequest(
        scenario=_one_line(scenario),
        summary=summarize(preamble) if pairs else summarize(text),
        examples=tuple(examples),
        notes="\n\n".join(notes),
        model_version=_one_line(next((v for v in values.get(MODEL, []) if v), ""))[:100],
        language=language_choice(language),
        consent=_checkbox_consent(consent_text) if consent_text else None,
        is_form=bool(re.search(r"(?m)^###[ \t]+\S", text)) and any(kind in HEADING_ONLY for kind, _ in pairs),
        labels_found=tuple(dict.fromkeys(kind for kind, _ in pairs)),
    )


def _one_line(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= SCENARIO_MAX else value[: SCENARIO_MAX - 1] + "…"


def language_choice(value: str) -> str:
    """An issue form's language dropdown (`中文 Chinese`, `English`, ...) as a case language."""
    value = value.strip().lower()
    if not value:
        return ""
    if "混" in value or "mixed" in value:
        return "mixed"
    if "中" in value or "chinese" in value or value == "zh":
        return "zh"
    if "英" in value or "english" in value or value == "en":
        return "en"
    return "other"


def looks_like_request(text: str) -> bool:
    """Whether an unlabelled comment asks for something (not a thank-you, a +1 or a quote)."""
    text = normalize(text or "")
    own = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">")).strip()
    own = re.sub(r"@[\w-]+", "", own).strip()
    if not own or AGREEMENT.match(own):
        return False
    if parse_request(own).labels_found:
        return True
    lowered = own.lower().replace("请问", "")
    return len(own) >= MIN_REQUEST_CHARS and any(word in lowered for word in REQUEST_WORDS)
