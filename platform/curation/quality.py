"""Quality heuristics for training rows (a prompt and the response people expect), in Chinese and English.

A pure module (standard library only), so that curation and the dataset builds can both call it.
`row_quality` returns one `Verdict` per filter that fires, none for a good row. "drop" keeps the
row out of the dataset; "flag" keeps it in and shows the reason to maintainers. We drop only
what is never a good training target; whatever can be right in some task is flagged, because
a false drop silently loses a case someone took the time to write.

    filter       action  fires when
    control      drop    prompt or response holds a C0/C1 control character (other than \\n \\t \\r),
                         a bidirectional embedding/override/isolate (U+202A-202E, U+2066-2069),
                         a zero-width space, word joiner or BOM (U+200B, U+2060, U+FEFF), a
                         surrogate or noncharacter; ZWJ/ZWNJ inside an emoji sequence or between
                         letters of a joining script and tag characters inside a flag emoji are
                         fine. The model would learn to print what nobody can see. (The marks
                         U+200E/U+200F stay allowed, as in intake.validators.)
    empty        drop    the response is only whitespace and punctuation
    placeholder  drop    the response is a stand-in ("待补充", "同上", "略", "TODO", "N/A"...) or
                 / flag  an ellipsis ("...", "……", "???"); "nothing" words: see below
    echo         drop    the response is the prompt again (after NFKC, case folding, whitespace
                         and punctuation removed), or the prompt several times over
    repetition   drop    in the response's prose (code set aside, compared without case, width,
                         spaces and punctuation): a unit repeats in a row (1 character 15 times,
                         2-4 characters 8 times, 5-200 characters 4 times), 60% of its 6+
                         sentences or lines repeat another, or 85% of its 200+ 4-grams are repeats
    length       drop    response over 16,000 characters, or prompt and response over 24,000
                 flag    a response of at most 8 visible characters to a prompt of 200+ (not a
                         number, an option letter or yes/no, which are legitimately short)
    language     flag    asked zh, the response is English prose (no Han, 20+ letters); asked en,
                         the response is Chinese (8+ Han, `text_language` says zh)

Exemptions, each because the same text is a correct answer somewhere:
- Punctuation-only responses (empty, ellipsis placeholders) pass when the prompt is about
  punctuation or symbols ("省略号怎么写？" -> "……", "C语言语句以什么符号结尾？" -> ";").
- "Nothing" words (无, 没有, 空, 未知, none, null, nil, nothing, n/a) answer yes/no and set-valued
  questions ("这句话有错别字吗？" -> "无", "print(None) 输出什么？" -> "None"): clean when the
  prompt asks such a question or asks to find/list/check something, dropped when it asks to
  write, explain or summarise, flagged otherwise. Stand-ins in brackets ("（空）", "<response>",
  "[待补充]") are notes to the reader, never answers: dropped whatever the prompt.
- Stand-in words pass when the prompt asks for a translation ("to be added" -> "待补充")
  or quotes the word ("print('test') 的输出" -> "test").
- Echo: a greeting answered with itself ("你好" -> "你好！") is a conversation, not a copy. A
  response that keeps the prompt and adds to it (a rewrite, a continuation) is never an echo.
- Repetition: a repeated unit must hold a letter or Han character, so separators ("=====",
  "|---|---|"), long numbers ("1000000000000000") and indentation do not count.
- Language: code and digit-only answers suit any language, "mixed" and "other" requests never
  mismatch, and a prompt that names a language (翻译, 英文, English, 中文, translate...) is exempt:
  it may ask for the other one. Flag, not drop: the case's language field is set by people and
  is itself sometimes wrong.

Control, length and the content filters are independent; among the content filters, empty,
placeholder and echo each mean the response carries nothing of its own, so once one fires the
later ones (repetition, language, short length) are not measured.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

FILTERS: tuple[str, ...] = ("control", "empty", "placeholder", "echo", "repetition", "length", "language")
ACTIONS: tuple[str, ...] = ("drop", "flag")
REQUEST_LANGUAGES: tuple[str, ...] = ("zh", "en", "mixed", "other")

# Characters. Both are several times the 4,096-token sequences of trainer/configs/yuan2_2b_lora.yaml:
# such a response cannot be trained on whole, and of such a prompt the trainer keeps only the end.
RESPONSE_MAX = 16_000
ROW_MAX = 24_000  # prompt + response
SHORT_RESPONSE = 8  # visible characters: at most this ...
LONG_PROMPT = 200  # ... to a prompt of at least this many is flagged


@dataclass(frozen=True)
class Verdict:
    filter: str  # one of FILTERS
    action: str  # "drop" or "flag"
    reason: str  # a short English sentence for people, with the measured figure

    def __post_init__(self) -> None:
        if self.filter not in FILTERS or self.action not in ACTIONS:
            raise ValueError(f"unknown filter or action: {self.filter!r}, {self.action!r}")


# --- shared character classes -----------------------------------------------------------------

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LETTER = re.compile(r"[^\W\d_]")  # letters of any script, Han included
_ALNUM = re.compile(r"[^\W_]")
_NOT_WORD = re.compile(r"[\W_]+")


def _nfkc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _compact(text: str) -> str:
    """NFKC, case-folded, without whitespace, punctuation and symbols: what a text says, not how."""
    return _NOT_WORD.sub("", _nfkc(text).casefold())


def _visible(text: str) -> int:
    return len(text) - sum(map(text.count, (" ", "\n", "\t", "\r", "\u3000")))


# --- language ---------------------------------------------------------------------------------

ZH_MIN_RATIO = 0.6  # Han characters among letters + Han, at least: "zh"
EN_MAX_RATIO = 0.15  # at most: "en"; in between: "mixed"
CODE_MIN_LINES = 0.6  # share of the counted lines that look like code for the text to be "code"

# Chinese counts one character per syllable and English several letters per word, so Chinese
# prose with English terms ("用 pandas 读取 CSV 文件", ratio 0.35) is mixed, not English, and the
# language filter asks for no Han at all before calling a response to a zh request English.

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# A shell command line: a common program's name in lower case, then an argument.
_SHELL = (
    r"(?:\$\s+)?(?:pip3?|npm|yarn|git|cd|ls|sudo|apt|apt-get|docker|python3?|curl|wget|export|conda|brew)"
    r"\s+[-\w./~]"
)
# Cheap test before the per-line one: code needs at least one of these.
_CODE_HINT = re.compile(r"[;{}=()<>\[\]#$]|^\s*(?:def|import|from|return|class|SELECT)\b|^\s*" + _SHELL, re.M)
# A line of code: structure, not vocabulary. Keywords count only in the shapes code gives them
# (lower case, followed by a name or a colon at the end), so "From the data we see" is prose.
_CODE_LINE = re.compile(
    r"""^\s*(?:
        .*[;{}]\s*$                                                # statement or block end
      | [}\])]                                                     # closing bracket first
      | [{\[]\s*$ | \{\s*\" | \"[^\"\n]+\"\s*:\s*\S                     # JSON
      | (?:def|class|fn|func|function|struct|enum|impl|interface)\s+\w+\s*[(<:{]
      | (?:import|from)\s+[\w.]+(?:\s+import\b.*)?\s*$
      | (?:if|elif|else|for|while|with|try|except|finally|switch|case)\b.*:\s*$
      | (?:return|raise|yield|throw|await|break|continue|pass)\b(?:\s+\S.*)?$
      | (?:const|let|var|int|char|float|double|bool|auto|val|public|private|static)\s+[\w*&<>\[\]]+\s*[=;(:,]
      | \#(?:include|define|if|endif|pragma)\b | \#!/ | //| /\*
      | (?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|FROM|WHERE|AND|OR|JOIN|LEFT|RIGHT|INNER|OUTER|ON|
         GROUP\sBY|ORDER\sBY|HAVING|LIMIT|VALUES|SET|UNION|WITH)\s                  # SQL is written in capitals
      | </?[a-zA-Z][\w-]*(?:\s[^>]*)?/?>
      | """ + _SHELL + r"""
      | [A-Za-z_][\w.]*(?:\[[^\]]*\])*\s*(?:[-+*/%|&^]|<<|>>)?=(?!=)\s*\S   # assignment
      | [A-Za-z_][\w.]*(?:\.[A-Za-z_]\w*)*\(.*\)\s*;?\s*$          # a call on its own line
    )""",
    re.X,
)


def _split_code(text: str) -> tuple[str, int, int]:
    """The prose of `text` (fenced blocks, inline code and code lines removed), and code/counted lines."""
    had_fence = "```" in text
    if had_fence:
        text = _FENCE.sub("\n", text)
    if "`" in text:
        text = _INLINE_CODE.sub(" ", text)
    if not _CODE_HINT.search(text):
        return text, int(had_fence), int(had_fence) and 1 + sum(1 for line in text.splitlines() if line.strip())
    prose: list[str] = []
    code = counted = int(had_fence)
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#include")):
            continue  # blank lines and comments (or Markdown headings) say nothing either way
        counted += 1
        if _HAN.match(stripped) is None and _CODE_LINE.match(line):
            code += 1
        else:
            prose.append(line)
    return "\n".join(prose), code, counted


_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))


def _han_letters(text: str) -> tuple[int, int]:
    """Han characters and other letters (any alphabetic script) in `text`."""
    if text.isascii():  # most English and code: deleting letter bytes is cheaper than a regex
        raw = text.encode()
        return 0, len(raw) - len(raw.translate(None, _ASCII_LETTERS))
    han = len(_HAN.findall(text))
    return han, len(_LETTER.findall(text)) - han


def _language_of(code: int, counted: int, han: int, letters: int) -> str:
    if code and (code >= CODE_MIN_LINES * counted or han + letters == 0):
        return "code"
    if han + letters == 0 or (han == 0 and letters == 1):
        return "none"
    if (ratio := han / (han + letters)) >= ZH_MIN_RATIO:
        return "zh"
    return "en" if ratio <= EN_MAX_RATIO else "mixed"


def text_language(text: str) -> str:
    """"zh", "en", "mixed", "code" or "none" for `text`.

    Code first: fenced blocks, inline code and lines shaped like code (statements ending in
    ";", "{" or "}", definitions, imports, assignments, calls, tags, shell commands) are set
    aside; the text is "code" when they make at least 60% of its non-blank, non-comment lines
    (a fenced block counts as one line) or nothing with letters is left. The rest is judged by
    r = Han / (Han + other letters): r >= 0.6 "zh", r <= 0.15 "en" (any alphabetic script, not
    only English), else "mixed". "none": no letters at all, or a single one (a number, "B", "√").
    """
    prose, code, counted = _split_code(text)
    return _language_of(code, counted, *_han_letters(prose))


# --- prompt reading ---------------------------------------------------------------------------

# The prompt names a language: a translation, or a request to answer in a given language.
_NAMES_LANGUAGE = re.compile(
    r"翻译|译成|译为|译作|英译|中译|译文|英文|英语|中文|汉语|普通话|国语|粤语|日语|日文|韩语|法语|德语|"
    r"translat|english|chinese|mandarin|cantonese|japanese|korean|french|german|spanish|pinyin|拼音",
    re.I,
)
# The prompt asks for a translation, whose answer may be any word at all ("to be added" -> "待补充").
_TRANSLATION = re.compile(
    r"翻译|译成|译为|译作|英译|中译|怎么说|用(?:英文|英语|中文|汉语)|(?:英文|英语|中文|汉语)(?:是什么|怎么写)|"
    r"translat|how do you say|\b(?:in|into|to) (?:english|chinese|mandarin)\b|"
    r"\b(?:english|chinese) (?:word|name|term|for)\b|英文(?:单词|名)",
    re.I,
)
# The prompt is about punctuation or symbols, so a punctuation-only answer can be right.
_ABOUT_SYMBOLS = re.compile(
    r"标点|符号|字符|省略号|句号|逗号|问号|引号|括号|破折号|运算符|正则|punctuation|symbol|character|"
    r"operator|bracket|regex|ellipsis|emoticon|颜文字|分隔线|分割线|横线|separator|divider",
    re.I,
)
# Questions that "nothing" answers: yes/no, which/what/how many, find/list/check tasks.
_ADMITS_NOTHING = re.compile(
    r"吗|是否|有没有|有无|有哪些|哪些|哪个|哪一|哪里|什么|谁|几个|多少|存在|找出|列出|指出|标出|圈出|提取|抽取|"
    r"识别|检查|判断|错别字|语病|错误|输出|返回|结果|值为|等于|"
    r"\b(?:is there|are there|any|does|do|did|is|are|was|were|which|what|who|list|find|extract|identify|"
    r"check|output|return|print|value)\b",
    re.I,
)
# Requests for text of one's own, which "nothing" does not answer.
_COMPOSE = re.compile(
    r"写|作文|创作|生成|编|续写|改写|扩写|总结|概括|摘要|解释|介绍|描述|说明|分析|论述|为什么|怎么|如何|怎样|建议|"
    r"\b(?:write|compose|generate|create|draft|explain|describe|summari[sz]e|introduce|analy[sz]e|why|how)\b",
    re.I,
)
_GREETINGS = frozenset((
    "你好", "您好", "嗨", "哈喽", "hello", "hi", "hey", "早上好", "早安", "中午好", "下午好", "晚上好", "晚安",
    "goodmorning", "goodafternoon", "goodevening", "goodnight", "新年快乐", "春节快乐", "节日快乐", "生日快乐",
    "中秋快乐", "中秋节快乐", "圣诞快乐", "圣诞节快乐", "元旦快乐", "happynewyear", "merrychristmas", "happybirthday",
))


# --- control ----------------------------------------------------------------------------------

_SUSPECT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u202a-\u202e\u2060\u2066-\u2069\ufeff\ufffe\uffff"
    "\ud800-\udfff\U000e0000-\U000e007f]"
)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_JOINERS = frozenset("\u200c\u200d")
_FLAG = "\U0001f3f4"  # the black flag that tag characters spell subdivision flags after


def _is_tag(ch: str) -> bool:
    return 0xE0000 <= ord(ch) <= 0xE007F


def _joining_letter(ch: str) -> bool:
    # Arabic, Indic and the like use ZWJ/ZWNJ between letters; CJK and ASCII never need them.
    code = ord(ch)
    cjk = 0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF or code >= 0x20000
    return code > 0x7F and not cjk and unicodedata.category(ch)[0] in "LM"


def _emoji_part(ch: str) -> bool:
    return ch == "\ufe0f" or unicodedata.category(ch) in ("So", "Sk")


def _allowed_invisible(text: str, i: int) -> bool:
    ch = text[i]
    if ch in _JOINERS:
        if 0 < i < len(text) - 1:
            before, after = text[i - 1], text[i + 1]
            return (_emoji_part(before) and _emoji_part(after)) or (_joining_letter(before) and _joining_letter(after))
        return False
    if _is_tag(ch):
        start = end = i
        while start > 0 and _is_tag(text[start - 1]):
            start -= 1
        while end < len(text) - 1 and _is_tag(text[end + 1]):
            end += 1
        return start > 0 and text[start - 1] == _FLAG and text[end] == "\U000e007f"
    return False


def _kind(ch: str) -> str:
    if ch in _BIDI:
        return "bidirectional control"
    if ch in "\u200b\u200c\u200d\u2060\ufeff":
        return "zero-width character"
    if _is_tag(ch):
        return "tag character"
    if "\ud800" <= ch <= "\udfff" or ch in "\ufffe\uffff":
        return "invalid character"
    return "control character"


def _control(field: str, text: str) -> str | None:
    found = [m.start() for m in _SUSPECT.finditer(text) if not _allowed_invisible(text, m.start())]
    if not found:
        return None
    first = found[0]
    kind = _kind(text[first])
    what = f"{len(found)} invisible characters, the first" if len(found) > 1 else "an invisible character:"
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{field} contains {what} {article} {kind} U+{ord(text[first]):04X} at position {first + 1}"


# --- empty and placeholder ---------------------------------------------------------------------

_STAND_INS = frozenset((
    # Chinese: not yet / omitted / see above / the form's own labels / testing
    "暂无", "暂缺", "暂未", "暂未填写", "略", "答案略", "解答略", "过程略", "证明略", "解析略",
    "同上", "同前", "如上", "见上", "见上文", "见上面", "同题目", "同题", "同问题", "同输入", "同原文", "如题",
    "待补充", "待完善", "待填写", "待定", "待更新", "待回答", "待补", "未填写", "未填", "不填",
    "无内容", "没有内容", "空白",
    "此处填写", "在此填写", "在此输入", "此处输入", "请输入", "请填写", "填写答案", "输入答案", "回答", "答案", "回复",
    "期望回复", "期望回答", "期望输出", "预期回答", "预期输出", "正确答案", "正确回答", "标准答案", "参考答案", "示例",
    "测试", "测试一下", "占位", "占位符",
    # English (spaces removed before the look-up)
    "todo", "tbd", "tba", "fixme", "wip", "placeholder", "answer", "answerhere", "youranswer", "youranswerhere",
    "insertanswerhere", "response", "responsehere", "expectedresponse", "expectedoutput", "expectedanswer",
    "correctanswer", "output", "lorem", "loremipsum", "test", "testing", "asdf", "asdfgh", "asdfghjkl", "qwerty",
    "sample", "example", "blank", "tobeadded", "tobecompleted", "tobefilled", "tobedetermined", "comingsoon",
    "sameasabove", "seeabove", "ditto", "idem",
))
# Words that say "nothing": placeholders unless the prompt is a question they answer.
_NOTHING = frozenset(("无", "没有", "空", "未知", "不详", "none", "null", "nil", "nothing", "n/a"))
# Stand-ins by shape: x's, a TODO note with a few words after it, 待补充 with a word or two.
_STAND_IN_SHAPE = re.compile(r"x{3,}|(?:todo|tbd|fixme)(?:[\s:：-]+\S.{0,25})?|(?:待补充|待完善|待填写)\S{0,4}", re.S)
_ELLIPSIS = re.compile(r"\.{2,}|…+|。{2,}|[?？]+|[-—–_~～]+|/")
_BRACKETED = re.compile(r"[(\[<{【《「『〈]\s*(.+?)\s*[)\]>}】》」』〉]")
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_QUOTES = "'\"“”‘’「」『』`"


def _mentioned(prompt: str, word: str) -> bool:
    """The prompt asks about `word` itself: quotes it, or (an English word) uses it at all."""
    if word.isascii():
        return re.search(rf"\b{re.escape(word.split()[0].rstrip(':-'))}\b", prompt) is not None
    return any(f"{q}{word}" in prompt for q in _QUOTES)


def _placeholder(prompt: str, norm: str, shown: str) -> tuple[str, str] | None:
    """(action, reason) when a short response is a placeholder; `prompt` and `norm` normalised, `shown` as typed."""
    if (m := _BRACKETED.fullmatch(norm)) and _EDGES.sub("", m.group(1)).replace(" ", "") in _STAND_INS | _NOTHING:
        return "drop", f"response is the placeholder note {shown!r}"
    core = _EDGES.sub("", norm)
    if core in _NOTHING:
        if _TRANSLATION.search(prompt) or _ADMITS_NOTHING.search(prompt) or _mentioned(prompt, core):
            return None
        if _COMPOSE.search(prompt):
            return "drop", f"response is only {shown!r} and the prompt asks for a text"
        return "flag", f"response is only {shown!r}, and the prompt is not a question that 'nothing' answers"
    if core.replace(" ", "") in _STAND_INS or _STAND_IN_SHAPE.fullmatch(core):
        if _TRANSLATION.search(prompt) or _mentioned(prompt, core):
            return None
        return "drop", f"response is the placeholder {shown!r}"
    return None


# --- repetition --------------------------------------------------------------------------------

RUN_REPEATS = ((1, 15), (4, 8), (200, 4))  # (longest unit, repeats in a row needed)
SENTENCE_MIN = 6  # sentences (or lines) a response needs before duplicates among them count
SENTENCE_SHARE = 0.6  # share of its sentences that repeat an earlier one
SENTENCE_GUARD = 0.3  # share of repeated 4-grams below which sentences are not compared
NGRAM_MIN = 200  # 4-grams a response needs before their repeat share says anything
NGRAM_SHARE = 0.85  # share of repeated 4-grams that marks a degenerate response
# Sentence ends: Chinese and English stops, line breaks, and a "." that ends a sentence (not 3.5).
_SENTENCE_END = re.compile(r"[。！？!?；;\n]+|\.(?=\s|$)")
_LIST_MARK = re.compile(r"^\s*(?:[-*•·>]+|[(（]?[0-9a-zA-Z一二三四五六七八九十]{1,3}[.、)）:：])\s*")


def _repeats_needed(unit: int) -> int:
    return next(needed for longest, needed in RUN_REPEATS if unit <= longest)


def _longest_run(text: str, counts: Counter[str]) -> tuple[int, int, int] | None:
    """The unit repeated in a row past its threshold that covers most text, as (start, unit length, repeats).

    A unit repeated 4+ times in a row makes each of its 4-grams recur 4+ times at a constant
    distance (the unit's length), so only 4-grams seen 4+ times are followed. A candidate is then
    extended character by character; the unit must hold a letter, so "=====", "|---|---|" and
    "1000000000" are not runs.
    """
    n, best, covered = len(text), None, 0
    for gram in [g for g, c in counts.items() if c >= 4]:
        at = [text.find(gram)]
        while (nxt := text.find(gram, at[-1] + 1)) != -1:
            at.append(nxt)
        k, done = 0, -1
        while k < len(at) - 3:
            gap = at[k + 1] - at[k]
            if at[k] < done or gap > RUN_REPEATS[-1][0] or at[k + 2] - at[k + 1] != gap or at[k + 3] - at[k + 2] != gap:
                k += 1
                continue
            start, end = at[k], at[k] + gap
            while end < n and text[end] == text[end - gap]:
                end += 1
            while start > 0 and text[start - 1] == text[start - 1 + gap]:
                start -= 1
            repeats = (end - start) // gap
            if repeats >= _repeats_needed(gap) and repeats * gap > covered and _LETTER.search(text, start, start + gap):
                best, covered = (start, gap, repeats), repeats * gap
            done, k = end - 3, k + 1  # occurrences inside this run say nothing new
    return best


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 20 else text[:20] + "…"


def _as_typed(prose: str, start: int, length: int) -> str:
    """The part of `prose` that became compact[start:start + length], for people to read."""
    at, begin = 0, 0
    for i, ch in enumerate(prose):
        width = int(ch.isalnum()) if ch.isascii() else len(_compact(ch))
        if at <= start < at + width:
            begin = i
        at += width
        if at >= start + length:
            return _shown(prose[begin:i + 1])
    return ""  # normalising character by character came out shorter


def _repetition(prose: str, folded: str) -> str | None:
    """Why the prose of a response (code set aside) is degenerate, or None.

    Runs and 4-grams are measured on its compact form (NFKC, case-folded, no whitespace,
    punctuation or symbols), so "the, the. The" loops like "thethethe" and separators and
    indentation weigh nothing. Duplicate sentences catch loops that vary a little ("我觉得很好。
    我觉得非常好。我觉得很好。..."); a list built on a template ("第1周：跑步" ... "第8周：跑步") has
    no duplicate sentence, since each differs in its slot, and a poem's refrain or a chorus sung
    twice stays under 60%. `folded` is `prose` NFKC-normalised and case-folded.
    """
    text = _NOT_WORD.sub("", folded)
    if len(text) < 15:
        return None
    grams = [text[i:i + 4] for i in range(len(text) - 3)]
    counts = Counter(grams)
    if max(counts.values()) >= 4 and (run := _longest_run(text, counts)):
        start, gap, repeats = run
        shown = _as_typed(prose, start, gap) or _shown(text[start:start + gap])
        return f"response repeats {shown!r} {repeats} times in a row"
    share = 1 - len(counts) / len(grams)
    # Sentences repeating 60% of one another make a good share of 4-grams repeats: below that
    # share the (costlier) sentence count is skipped.
    if share >= SENTENCE_GUARD and (found := _repeated_sentences(prose, folded)):
        return found
    if len(grams) >= NGRAM_MIN and share >= NGRAM_SHARE:
        return f"response repeats: {share:.0%} of its {len(grams)} 4-grams are repeats"
    return None


def _repeated_sentences(prose: str, folded: str) -> str | None:
    """Why the sentences (and lines) of `prose` repeat one another, or None; `folded` as for _repetition."""
    parts = _SENTENCE_END.split(folded)
    compact = [_NOT_WORD.sub("", _LIST_MARK.sub("", part)) for part in parts]
    sentences = [said for said in compact if len(said) >= 4 and not said.isdecimal()]
    if len(sentences) < SENTENCE_MIN or (dup := 1 - len(set(sentences)) / len(sentences)) < SENTENCE_SHARE:
        return None
    top, times = Counter(sentences).most_common(1)[0]
    typed = _SENTENCE_END.split(prose)
    shown = typed[compact.index(top)] if len(typed) == len(parts) else top  # as typed, unless NFKC moved a stop
    return (
        f"response repeats sentences: {dup:.0%} of its {len(sentences)} sentences repeat another "
        f"({_shown(shown)!r} {times} times)"
    )


# --- length and language -----------------------------------------------------------------------

_SHORT_OK = re.compile(
    r"[-+]?[\d.,/%^√π×÷*+=x-]*\d[\d.,/%^√π×÷*+=x-]*[^\W\d_]{0,2}"  # a number, perhaps with a unit ("85", "3.5米")
    r"|(?:选|答案)?[a-f]|是|否|对|错|正确|错误|不对|不是|有|没有|无|无解|不存在|yes|no|true|false|对的|是的|不是的",
    re.I,
)
ZH_PROSE_LETTERS = 20  # letters a Han-free response to a zh request needs to be English prose
EN_PROSE_HAN = 8  # Han characters a response to an en request needs to be Chinese prose


def _too_long(prompt: str, response: str) -> str | None:
    if len(response) > RESPONSE_MAX:
        return f"response is {len(response):,} characters, over the {RESPONSE_MAX:,} limit"
    if len(prompt) + len(response) > ROW_MAX:
        return f"prompt and response are {len(prompt) + len(response):,} characters, over the {ROW_MAX:,} limit"
    return None


def _too_short(prompt: str, response: str) -> str | None:
    shown, asked = _visible(response), _visible(prompt)
    if shown <= SHORT_RESPONSE and asked >= LONG_PROMPT and not _SHORT_OK.fullmatch(_compact(response)):
        return f"response is {shown} characters for a {asked}-character prompt"
    return None


def _mismatch(prompt: str, asked: str, split: tuple[str, int, int]) -> str | None:
    """Why the response (`split`: its prose and code lines) is in another language than `asked`, or None."""
    prose = split[0]
    # Whether the prose holds Han at all settles most rows without counting anything.
    if asked not in ("zh", "en") or (_HAN.search(prose) is None) == (asked == "en"):
        return None
    han, letters = _han_letters(prose)
    found = _language_of(split[1], split[2], han, letters)
    if found == "code" or _NAMES_LANGUAGE.search(prompt):
        return None
    if asked == "zh" and found == "en" and han == 0 and letters >= ZH_PROSE_LETTERS:
        return f"request asked for Chinese, response is English: no Han characters among {letters} letters"
    if asked == "en" and found == "zh" and han >= EN_PROSE_HAN:
        return (
            f"request asked for English, response is Chinese: {han / (han + letters):.0%} of its "
            f"{han + letters} letters are Han characters"
        )
    return None


# --- the row -----------------------------------------------------------------------------------

def row_quality(*, prompt: str, response: str, language: str) -> list[Verdict]:
    """The verdicts on one training row, in FILTERS order; [] for a good row.

    `language` is what the request asked for (the case's language field: "zh", "en", "mixed",
    "other"). At most one Verdict per filter; see the module docstring for what each means.
    """
    if language not in REQUEST_LANGUAGES:
        raise ValueError(f"unknown request language {language!r}; expected one of {REQUEST_LANGUAGES}")
    verdicts = []
    if reason := _control("prompt", prompt) or _control("response", response):
        verdicts.append(Verdict("control", "drop", reason))
    verdicts += _content(prompt, response, language)
    if reason := _too_long(prompt, response):
        verdicts = [v for v in verdicts if v.filter != "length"]  # the drop says more than a short flag
        verdicts.append(Verdict("length", "drop", reason))
    return sorted(verdicts, key=lambda v: FILTERS.index(v.filter))


def _content(prompt: str, response: str, language: str) -> list[Verdict]:
    """Empty, placeholder, echo, repetition, short length and language, in that order."""
    folded = _nfkc(response).casefold()
    norm = folded.strip()
    if _ALNUM.search(norm) is None and not any(unicodedata.category(ch)[0] == "S" for ch in norm):
        return _no_text(prompt, norm, response)
    if len(norm) <= 40 and (found := _placeholder(_nfkc(prompt).casefold(), norm, response.strip())):
        return [Verdict("placeholder", *found)]
    if reason := _echo(prompt, _NOT_WORD.sub("", folded)):
        return [Verdict("echo", "drop", reason)]
    verdicts = []
    split = _split_code(response)
    prose = split[0]
    if reason := _repetition(prose, folded if prose == response else _nfkc(prose).casefold()):
        verdicts.append(Verdict("repetition", "drop", reason))
    if reason := _too_short(prompt, response):
        verdicts.append(Verdict("length", "flag", reason))
    if reason := _mismatch(prompt, language, split):
        verdicts.append(Verdict("language", "flag", reason))
    return verdicts


def _no_text(prompt: str, norm: str, response: str) -> list[Verdict]:
    """The verdict on a response without letters, digits or symbols (`norm`: its normal form)."""
    if norm and _ABOUT_SYMBOLS.search(prompt):
        return []
    if norm and _ELLIPSIS.fullmatch(norm.replace(" ", "")):
        return [Verdict("placeholder", "drop", f"response is the placeholder {response.strip()!r}")]
    if not norm:
        shown = "only whitespace" if response else "empty"
    elif all(unicodedata.category(ch)[0] in "CZ" for ch in norm):
        shown = "only invisible characters"
    else:
        shown = f"only punctuation {_shown(response.strip())!r}"
    return [Verdict("empty", "drop", f"response is {shown}")]


def _echo(prompt: str, said: str) -> str | None:
    """Why the response, compact (`said`), is the prompt again, or None."""
    if len(prompt) > 4 * len(said) + 20:
        return None  # a prompt this much longer cannot shrink to the response (unless mostly punctuation)
    if (first := _ALNUM.search(prompt)) is None or not said.startswith(_compact(first.group())):
        return None  # the cheap test first: most responses do not even start like their prompt
    asked = _compact(prompt)
    if not asked or len(said) < len(asked) or asked in _GREETINGS:
        return None
    times, rest = divmod(len(said), len(asked))
    if rest or said != asked * times:
        return None
    if times == 1:
        return f"response is the prompt again: the same {len(said)} characters once width, case and spacing are ignored"
    return f"response is the prompt {times} times over"
