"""Decontamination: the train rows that overlap an evaluation item (pure: standard library only).

A dataset build drops the train rows that overlap what the trained model is measured on: the
dataset's own eval split (source "eval"), the general regression set ("general") and every
registered benchmark ("benchmark:<name>"). Overlap means a long shared run of text, the
classic n-gram test (GPT-3 used 13 words), made to work on Chinese, English and mixed text
without a word segmenter.

Units. `units` compares texts as a list of units, after NFKC (full-width letters, digits and
punctuation become ASCII) and casefolding:

    a Han character (also kana, hangul)      one unit: Chinese has no spaces to split words at
    a run of letters ("ligase", "tcp")       one unit, a word
    a number ("37", "4.5", "1,000")          "0": digits are masked, so the item with other
                                             numbers is the same text (Chinese numerals such as
                                             两/三 are characters and are not masked)
    an operator: + = < > × ÷ % ^ / ...       one unit, so "37 + 48" and "37 × 48" differ; "-" and
                                             "*" only before a number (not hyphens, list bullets
                                             or **bold**)
    punctuation, spaces, line breaks, emoji  dropped: re-typed punctuation and spacing are the
                                             commonest edits of a pasted item

Two rules, tried in this order; the first hit names the item:

1. Long items: the row (prompt, then response) shares a run of NGRAM units with an item's
   prompt or answer. A GSM8K problem with its numbers changed, a C-Eval question pasted
   after "帮我做这道题：", forty characters of a reading passage, or a benchmark answer pasted
   as the response are all caught.
2. Short items: most of the general set is shorter than NGRAM units ("计算：37 + 48 = ？" is 6),
   so it has no n-gram. Such an item (at least MIN_UNITS units: no eval owns "你好") is
   matched whole: the row's prompt, or a run of its whole clauses (split at sentence and
   clause punctuation, quotation marks, brackets and line breaks), equals the item unit for
   unit. So "计算：12 + 5 = ？" and "请回答：中国的首都是哪座城市？" count, while "计算：37 × 48 = ？",
   "请计算 37 + 48 + 15", "一周有几个工作日？" and "What is the average of 4, 8, 15 and 23?"
   (the item's words, then more of the same sentence) don't. That the item with other numbers
   counts is deliberate: it is the item's exact question and answer shape, the thing the
   regression set checks, and digit masking already means this for long items; what keeps
   every sum from being "contaminated" is that the shape must match clause for clause.

Templates are not contamination. A benchmark's items often share a header ("以下是单项选择题，
请直接给出正确答案的选项。"), and a row that uses it for another question is clean. When at least
COMMON_ITEMS prompts (or answers) share a prefix or a suffix of TEMPLATE_CHARS characters or
more, it is cut off before indexing (found from neighbours in sorted order: one sort). Without
the cut, the header plus the first character of a question ("……的选项" + "下", two items start
with 下列) is a specific n-gram: with every n-gram indexed it gave 3 false hits at each n from
15 to 21. An n-gram indexed for COMMON_ITEMS items is dropped too, for boilerplate inside the
text; it is counted over the indexed (strided) n-grams, so it only sees boilerplate that sits
at the same offset in those items. The cost of both: a reading passage that opens COMMON_ITEMS
or more items counts as a template.
One item cannot show what is its template, so an instruction gets a rule of its own: a run
that starts in an item's instruction (its prompt's opening up to the first colon, when that is
shorter than NGRAM units: "判断这条评论的情感（正面/负面）：", 14 units) must reach CONTENT_UNITS
units past it. "判断这条评论的情感（正面/负面）：快递太慢了" shares the instruction and "快" with the
general item "……：快递很快，包装也很好。", 15 units, and is another request.

Index. The index is built on the first `match` (templates need every item; adding an item
later rebuilds it). Each text indexes the n-grams that start at every STRIDE-th unit, and its
last one; a row looks up all of its n-grams. So a row sharing a run of NGRAM + STRIDE - 1 (18)
units with an item always hits, a shorter run only if it covers an indexed start: pasting a
run of 15, 16, 17 or 18 units out of the sample's items is caught 27%, 51%, 75% and 100% of the
time. The keys are Python's hashes of the unit tuples (64 bits; the index lives in one process,
so the per-process string hash seed changes nothing), each -> the first item that had it.
Measured on this 2-core machine with 50,000 items of about 300 characters (250 prompt, 50
answer): adding and building take 4 s and 440 MiB (3.5 million n-grams); matching 10,000 rows
of about 270 characters takes 1.0 s (the 1,000 of them holding 70 characters of an item all
hit). STRIDE 1 would take 9.5 s and 1.5 GiB for the same items.

Calibration. tests/web/fixtures/decontam_eval.jsonl: 97 contaminated rows (items pasted after
a request, numbers changed, full-width or re-spaced, answers pasted as responses, parts of
passages) and 134 clean rows (the same subjects, styles and template sentences, near misses of
the short items, everyday requests), against benchmark_sample.jsonl (60 C-Eval, CMMLU, word-
problem, reading, MMLU and GSM8K items) and the general set. Precision comes first: dropping
a clean row loses a contributor's work, missing a paraphrase loses little.

    n    precision  recall   false hits  misses
    12   0.970      1.000    3           0
    14   0.970      1.000    3           0
    15   1.000      1.000    0           0
    16   1.000      0.990    0           1
    17   1.000      0.959    0           4
    18   1.000      0.948    0           5
    20   1.000      0.918    0           8

(the same for STRIDE 1 to 8). The false hits below 15 are 14-unit frames: "in 0 years the sum
of their ages will be 0 how old is" (another age problem), and the sentiment instruction above,
an n-gram of its own once n is 14 (two other reviews). The misses above 15 are stems pasted
without their options ("A firm in a perfectly competitive market maximizes profit by producing
the quantity at which", 15 words) and a problem with its numbers and month changed. Without
the instruction rule n = 15 has one false hit (the review above). The margin is one unit each
way, and the set was written by whoever chose the rules: read the figures as an upper bound.

Not caught, by design: paraphrases and translations of an item, other names ("Alice" ->
"Bob") or Chinese numerals ("两年" -> "三年") that break every run into pieces shorter than
NGRAM, and short items with words added inside a clause.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass

NGRAM = 15  # units in a shared run that makes a row contaminated (calibrated, see above)
STRIDE = 4  # an item indexes one n-gram start in STRIDE (memory); rows look up every start
MIN_UNITS = 3  # shorter items are never matched whole
COMMON_ITEMS = 10  # a prefix, suffix or n-gram shared by this many items is a template
CONTENT_UNITS = 5  # a run that starts in an item's instruction must reach this far past it
TEMPLATE_CHARS = 8  # the shortest prefix or suffix cut off as a template, in normalised characters

# Scripts written without spaces between words: each character is a unit of its own
# (the katakana middle dot U+30FB is punctuation).
_HAN = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3040-\u30fa\u30fc-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
_IS_HAN = re.compile(f"[{_HAN}]")
_WORD_CHAR = re.compile(rf"[^\W\d_{_HAN}]")
# Thousands separators and decimals belong to the number: "1,000" and "4.5" are one "0".
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_UNIT = re.compile(
    rf"[{_HAN}]"
    rf"|[^\W\d_{_HAN}]+"
    r"|0"
    r"|[+=<>×÷±≠≤≥≈%^/∩∪∈⊆]"
    r"|[\-*](?=\s*0)"
)
# Where a short item may start or end inside a row (after NFKC: "，" is ",", "？" is "?").
_CLAUSE_END = re.compile(r"[。!?;:,、\n\"'“”‘’「」『』《》()\[\]【】]|\.(?!\d)")


def _normalise(text: str) -> str:
    return _NUMBER.sub("0", unicodedata.normalize("NFKC", text).casefold().replace("−", "-"))


def units(text: str) -> list[str]:
    """The units `text` is compared in: Han characters, words, "0" for numbers, operators."""
    return _UNIT.findall(_normalise(text))


def _clauses(text: str) -> list[list[str]]:
    return [_UNIT.findall(part) for part in _CLAUSE_END.split(_normalise(text))]


def _gram_hashes(seq: list[str], n: int, stride: int = 1) -> list[int]:
    """Hashes of the n-grams of `seq` that start at every `stride`-th unit, and of the last one."""
    # zip over strided slices builds the tuples in C: no Python-level loop per n-gram.
    hashes = list(map(hash, zip(*(seq[k::stride] for k in range(n)), strict=False)))
    if stride > 1 and len(seq) > n and (len(seq) - n) % stride:
        hashes.append(hash(tuple(seq[-n:])))
    return hashes


def _joined(seq: list[str]) -> str:
    """Units as people read them: Han characters together, other units apart."""
    out: list[str] = []
    for unit in seq:
        if out and not (_IS_HAN.match(unit) and _IS_HAN.match(out[-1])):
            out.append(" ")
        out.append(unit)
    return "".join(out)


@dataclass(frozen=True)
class Hit:
    source: str  # "eval", "general", "benchmark:<name>"
    item_id: str
    ngram: str  # the row's first shared n-gram (joined units), or "whole prompt" (rule 2)


class EvalIndex:
    """Evaluation items, to `match` train rows against; `add` them all first (see the module docstring)."""

    def __init__(self, *, n: int = NGRAM, stride: int = STRIDE, common: int = COMMON_ITEMS) -> None:
        if n < 2 or stride < 1 or common < 2:
            raise ValueError(f"need n >= 2, stride >= 1 and common >= 2, not {n}, {stride}, {common}")
        self.n, self.stride, self.common = n, stride, common
        # (source, item_id, normalised prompt, normalised answer); tokenised when the index is built.
        self._items: list[tuple[str, str, str, str]] = []
        self._built = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, *, source: str, item_id: str, prompt: str, answer: str = "") -> None:
        self._items.append((source, item_id, _normalise(prompt), _normalise(answer)))
        self._built = False  # an item added after a match rebuilds the index at the next one

    def match(self, *, prompt: str, response: str = "") -> Hit | None:
        """The first item this row overlaps (its prompt's n-grams, then short items, then its response), or None."""
        if not self._built:
            self._build()
        return self._gram_hit(units(prompt)) or self._whole_hit(prompt) or self._gram_hit(units(response))

    def _build(self) -> None:
        self._grams: dict[int, int] = {}  # n-gram hash -> index of the first item with it
        self._shared: dict[int, int] = {}  # n-gram hash -> items with it, for those in more than one
        self._common: set[int] = set()  # n-grams of COMMON_ITEMS items: boilerplate, not indexed
        self._whole: dict[tuple[str, ...], int] = {}  # a short item's units -> its index
        self._whole_lengths: set[int] = set()
        prompts = [item[2] for item in self._items]
        answers = [item[3] for item in self._items]
        cuts = zip(_cuts(prompts, self.common), _cuts(answers, self.common), strict=True)
        # One item at a time: the units of all items at once would take several times the index's memory.
        for index, ((start, end), (answer_start, answer_end)) in enumerate(cuts):
            prompt, answer = prompts[index], answers[index]
            whole = _UNIT.findall(prompt)
            body = whole if (start, end) == (0, len(prompt)) else _UNIT.findall(prompt[start:end])
            # The item without its template may be short: "以下是……选项。一周有几天？" is matched by "一周有几天？".
            for seq in (whole, body):
                if MIN_UNITS <= len(seq) < self.n:
                    self._whole.setdefault(tuple(seq), index)
                    self._whole_lengths.add(len(seq))
            answer_body = _UNIT.findall(answer[answer_start:answer_end])
            self._index(index, self._fingerprints(body) | self._fingerprints(answer_body))
        self._built = True

    def _fingerprints(self, seq: list[str]) -> set[int]:
        return set(_gram_hashes(seq, self.n, self.stride))

    def _index(self, index: int, hashes: set[int]) -> None:
        hashes -= self._common
        new = hashes.difference(self._grams)  # set.difference(dict) probes the dict; "- dict.keys()" walks it
        self._grams.update(dict.fromkeys(new, index))
        for h in hashes - new:  # few: n-grams another item has too
            count = self._shared.get(h, 1) + 1
            if count >= self.common:
                del self._grams[h], self._shared[h]
                self._common.add(h)
            else:
                self._shared[h] = count

    def _hit(self, index: int, ngram: str) -> Hit:
        source, item_id = self._items[index][:2]
        return Hit(source=source, item_id=item_id, ngram=ngram)

    def _gram_hit(self, seq: list[str]) -> Hit | None:
        hashes = _gram_hashes(seq, self.n)
        at = 0
        for found in filter(self._grams.__contains__, hashes):  # in C: most rows hit nothing
            at = hashes.index(found, at)
            index = self._grams[found]
            if self._past_instruction(seq, at, index):
                return self._hit(index, _joined(seq[at : at + self.n]))
            at += 1
        return None

    def _past_instruction(self, seq: list[str], at: int, index: int) -> bool:
        """Whether the run shared from seq[at] reaches CONTENT_UNITS past the item's instruction, if it starts in it.

        The instruction is a prompt's opening up to its first colon, if shorter than n units
        ("判断这条评论的情感（正面/负面）：", "Translate into Chinese:"): another request that reuses it
        shares it and a unit or two of its own ("快递太慢了" after "…负面）：" + "快递很快").
        """
        prompt = self._items[index][2]
        colon = prompt.find(":")
        instruction = len(_UNIT.findall(prompt, 0, colon)) if colon > 0 else 0
        if not instruction or instruction >= self.n:
            return True
        item, gram = _UNIT.findall(prompt), seq[at : at + self.n]
        for start in range(instruction):
            if item[start : start + self.n] == gram:
                end, row_end = start + self.n, at + self.n
                while end < len(item) and row_end < len(seq) and item[end] == seq[row_end]:
                    end, row_end = end + 1, row_end + 1
                return end - instruction >= CONTENT_UNITS
        return True  # the n-gram is past the instruction, or from the answer

    def _whole_hit(self, prompt: str) -> Hit | None:
        if not self._whole:
            return None
        clauses = _clauses(prompt)
        for start, first in enumerate(clauses):
            if not first:
                continue
            run: list[str] = []
            for clause in clauses[start:]:
                run += clause
                if len(run) >= self.n:
                    break
                if clause and len(run) in self._whole_lengths:
                    index = self._whole.get(tuple(run))
                    if index is not None:
                        return self._hit(index, "whole prompt")
        return None


def _cuts(texts: list[str], common: int) -> list[tuple[int, int]]:
    """Each text's (start, end) without the prefix and suffix templates it shares with `common - 1` others."""
    heads = _templates(texts, common)
    tails = _templates([text[::-1] for text in texts], common)
    out = []
    for text, head, tail in zip(texts, heads, tails, strict=True):
        start, end = _unit_boundary(text, head), len(text) - _unit_boundary(text[::-1], tail)
        out.append((start, max(start, end)))
    return out


def _templates(texts: list[str], common: int) -> list[int]:
    """For each text, the length of the longest prefix it shares with at least `common - 1` others."""
    longest = [0] * len(texts)
    if len(texts) < common:
        return longest
    order = sorted(range(len(texts)), key=texts.__getitem__)
    # lcp[k]: the common prefix of the k-th and (k+1)-th texts in sorted order.
    lcp = [_common_prefix(texts[a], texts[b]) for a, b in itertools.pairwise(order)]
    # Any `common` neighbours in sorted order share min(their lcps); a text takes the best window it is in.
    for start in range(len(texts) - common + 1):
        shared = min(lcp[start : start + common - 1])
        if shared >= TEMPLATE_CHARS:
            for k in order[start : start + common]:
                longest[k] = max(longest[k], shared)
    return longest


def _common_prefix(a: str, b: str) -> int:
    """The length of the prefix `a` and `b` share, or 0 where it is shorter than a template."""
    if len(a) < TEMPLATE_CHARS or len(b) < TEMPLATE_CHARS or a[:TEMPLATE_CHARS] != b[:TEMPLATE_CHARS]:
        return 0  # most pairs, settled without a loop
    k = TEMPLATE_CHARS
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def _unit_boundary(text: str, cut: int) -> int:
    """`cut` moved back so as not to split a word."""
    while 0 < cut < len(text) and _WORD_CHAR.match(text, cut - 1) and _WORD_CHAR.match(text, cut):
        cut -= 1
    return cut
