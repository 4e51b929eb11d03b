"""The trainer's ids and loss mask are the Yuan team's, on the real Yuan 2.0 tokenizer.

The reference below is written from `../shared/yuan/README.md` (the Yuan team's
`preprocess_data_yuan.py` and Megatron's SFT loss mask) with sentencepiece alone:
no transformers, no code of the trainer. Every case goes through the trainer's
own path (`encode_example`, `build_rows`, the `.txt` loader) and must give the
same ids token for token.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import sentencepiece

from trainer.data import Example, build_rows, encode_example, load_examples
from trainer.model import IGNORE_INDEX
from trainer.tokenizer import SentencePieceTokenizer, load_tokenizer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yuan_tokenizer"
EOD, SEP = 77185, 77187
#: Yuan's add_tokens list; the five the model lacks get 134953.. in this order.
ADDED = ["<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>",
         "<commit_before>", "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>",
         "<jupyter_code>", "<jupyter_output>", "<empty_output>"]

#: The two real fine-tuning lines of the Yuan docs (docs/data_process.md).
REAL_LINES = [
    "John买了3件衬衫，每件售价为20美元。此外，他还需要支付所有商品的10%税款。他总共支付了多少钱？<sep>John购买的3件衬衫的总价为3 \\times 20 = 60美元。<n>所有商品的税款为总价的10%，即60 \\times 0.1 = 6美元。<n>因此，John总共支付的钱数为60 + 6 = 66美元。",  # noqa: E501
    "每年，Dani作为赢得亚马逊季度最佳买家的奖励，会得到4个一对裤子（每对裤子2条）。如果初始时他有50条裤子，计算出5年后他将拥有多少条裤子。<sep>每年Dani会得到4 \\times 2 = 8条裤子，因此5年后他将得到8 \\times 5 = 40条裤子。<n>那么，5年后他总共拥有的裤子数量为初始时的50条加上5年内得到的40条，即50 + 40 = 90条裤子。<n>因此，5年后他将拥有90条裤子。",  # noqa: E501
]


class YuanReference:
    """Yuan's pipeline on one line, with sentencepiece only."""

    def __init__(self) -> None:
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(FIXTURE / "tokenizer.model"))
        vocab_size = self.sp.get_piece_size()
        self.special: dict[str, int] = {"<eod>": EOD, "<s>": 1, "<unk>": 0}
        for token in ADDED:
            piece = self.sp.piece_to_id(token)
            self.special[token] = piece if self.sp.id_to_piece(piece) == token else vocab_size + len(
                [t for t in self.special.values() if t >= vocab_size])
        self.split = re.compile("(" + "|".join(re.escape(t) for t in sorted(self.special, key=len, reverse=True)) + ")")

    @staticmethod
    def clean(line: str) -> str:
        data = line[3:] if line[:3] == "<n>" else line
        data = data.strip().replace("\r", "").replace("\n", "")
        return data.replace("<n>", "\n").replace("▃", "").replace("[SEP]", "<sep>")

    def line_ids(self, line: str) -> list[int] | None:
        if line == "\n":
            return None
        data = self.clean(line)
        if re.sub(r"(\n)+", "", data) == "":
            return None
        ids: list[int] = []
        for chunk in self.split.split(data):
            if chunk in self.special:
                ids.append(self.special[chunk])
            elif chunk:
                ids += self.sp.encode(chunk)
        return [*ids, EOD]

    def mask(self, ids: list[int]) -> list[bool]:
        """Megatron's SFT loss mask for a one-example row: which positions t learn ids[t + 1]."""
        labels = ids[1:]
        first_sep = labels.index(SEP) if SEP in labels else 0
        return [t >= first_sep and ids[t] != EOD for t in range(len(labels))]


@pytest.fixture(scope="module")
def yuan() -> YuanReference:
    return YuanReference()


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    loaded = load_tokenizer(FIXTURE)
    assert isinstance(loaded, SentencePieceTokenizer)
    return loaded


def as_line(prompt: str, response: str) -> str:
    """The Yuan data-file line of an example: newlines written <n>."""
    return prompt.replace("\n", "<n>") + "<sep>" + response.replace("\n", "<n>")


def trainer_ids(tok: SentencePieceTokenizer, prompt: str, response: str) -> list[int] | str:
    enc = encode_example(Example(id="x", prompt=prompt, response=response, source="t"), tok, seq_len=100_000)
    return enc if isinstance(enc, str) else enc.input_ids


CASES = [
    ("你好", "你好！有什么可以帮你？"),
    ("Mamou is a town in Guinea.", "Mamou"),
    ("写一个函数", "def add(a, b):\n    return a + b\n\n\nclass A:\n\tdef f(self):\n\t\treturn 1"),
    ("求 $\\int_0^1 x^2\\,dx$", "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$"),
    ("表情", "好的😀👍🏽 🇨🇳"),
    ("全角\u3000空格和不换行\u00a0空格", "\u3000缩进的回答\u00a0"),
    ("   leading spaces", " a response that starts with a space"),
    ("trailing spaces   ", "   "  + "x" + "   "),
    ("repeated\n\n\nnewlines", "a\n\n\n\nb\n"),
    ("\nstarts with a newline", "\n\nresponse starting with newlines"),
    ("windows\r\nline ends", "yes\r\nno\r\n"),
    ("Yuan's ▃ marker", "removed▃here"),
    ("混合 mixed 中英文 text，标点。", "English, 中文；punctuation!?"),
    ("", "empty prompt"),
    ("<FIM_PREFIX>def f():<FIM_SUFFIX>    return 1<FIM_MIDDLE>", "x = 1"),
    ("把 <mask> 填上", "<jupyter_code>print(1)<jupyter_output>1"),
    ("tabs\tinside\t\ttext", "\tindented"),
    ("数字 12345 和 3.14159", "1,000,000 ≈ 10^6"),
]


def test_real_yuan_lines_give_the_yuan_ids(yuan: YuanReference, tok: SentencePieceTokenizer) -> None:
    for line in REAL_LINES:
        prompt, response = line.split("<sep>")
        assert trainer_ids(tok, prompt.replace("<n>", "\n"), response.replace("<n>", "\n")) == yuan.line_ids(line)


@pytest.mark.parametrize(("prompt", "response"), CASES)
def test_hand_written_cases_give_the_yuan_ids(yuan: YuanReference, tok: SentencePieceTokenizer, prompt: str,
                                              response: str) -> None:
    assert trainer_ids(tok, prompt, response) == yuan.line_ids(as_line(prompt, response))


def test_random_text_gives_the_yuan_ids(yuan: YuanReference, tok: SentencePieceTokenizer) -> None:
    # Strings built from the characters where tokenizers disagree: whitespace of every
    # kind, newlines, tabs, CJK, Latin, digits, LaTeX, emoji, full-width forms.
    alphabet = [*"  \t\n\n\u3000\u00a0abcxyzMamouTHE的一是了中文，。！？「」0123456789$\\{}^_()[]<>=+-*/'\"#:;",
                "😀", "👍🏽", "ℝ", "é", "ß", "▃", "\r", "return", "def ", "    ", "<n>", "Ma", "mou", "ﬁ", "Ａ", "１"]
    rng = random.Random(11)
    mismatches = []
    for _ in range(1500):
        prompt = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        response = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        line = as_line(prompt, response)
        expected = yuan.line_ids(line)
        got = trainer_ids(tok, prompt, response)
        if not yuan.clean(line).split("<sep>", 1)[1].strip():
            # Yuan trains on a response that cleans to whitespace only (or nothing);
            # the trainer drops such an example and counts it.
            assert got == "empty_response"
            continue
        if got != expected:
            mismatches.append((prompt, response))
    assert not mismatches, mismatches[:5]


def test_build_rows_and_batch_encoding_give_the_same_ids(yuan: YuanReference, tok: SentencePieceTokenizer) -> None:
    examples = [Example(id=str(i), prompt=p, response=r, source="t") for i, (p, r) in enumerate(CASES)]
    rows, report = build_rows(examples, tok, seq_len=512, pack=False)
    assert report.used == len(CASES)
    for row, (prompt, response) in zip(rows.input_ids.tolist(), CASES, strict=True):
        expected = yuan.line_ids(as_line(prompt, response))
        assert row[: len(expected)] == expected


def test_yuan_txt_files_load_and_encode_as_yuan_does(yuan: YuanReference, tok: SentencePieceTokenizer,
                                                     tmp_path: Path) -> None:
    # A lone "\r" ends a line in a text file (Yuan reads them in Python's text mode too),
    # so cases holding one are not lines of their own.
    lines = [*REAL_LINES, "<n>问题<n>第二行  [SEP]  回答<n>  ", "   ", "x▃<sep>y<n>z",
             *(as_line(p, r) for p, r in CASES if "\r" not in p + r)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples = load_examples(tmp_path / "train.txt")
    kept = [line for line in lines if yuan.line_ids(line) is not None]
    assert [ex.id for ex in examples][:3] == ["line-1", "line-2", "line-3"]
    assert len(examples) == len(kept)
    for ex, line in zip(examples, kept, strict=True):
        assert ex.source == "train.txt"
        assert trainer_ids(tok, ex.prompt, ex.response) == yuan.line_ids(line), line


def test_a_txt_line_without_separator_is_refused_with_its_line_number(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("问题<sep>回答\n只有问题没有回答\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.txt: row 2: no <sep>"):
        load_examples(tmp_path / "train.txt")


def test_loss_mask_is_megatrons_sft_mask(yuan: YuanReference, tok: SentencePieceTokenizer) -> None:
    for prompt, response in CASES[:6]:
        enc = encode_example(Example(id="x", prompt=prompt, response=response, source="t"), tok, seq_len=4096)
        learned = [t != IGNORE_INDEX for t in enc.targets[:-1]]
        assert learned == yuan.mask(enc.input_ids)
        # Each learned position predicts the next token.
        assert all(t == enc.input_ids[i + 1] for i, t in enumerate(enc.targets[:-1]) if t != IGNORE_INDEX)
        assert enc.targets[-1] == IGNORE_INDEX  # the <eod> position learns nothing


@pytest.mark.parametrize("text", [
    "写着 <sep> 和 <eod> 结束",
    "  leading and trailing  ",
    "a\n\n\tb\r\nc",
    "def f(x):\n    return x\n",
    "😀\u3000\u00a0Ｆｕｌｌ",
    "<mask> and <FIM_PREFIX> and <s> and <unk> stay as written",
    " Mamou",
    "",
])
def test_decode_gives_back_the_text(tok: SentencePieceTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    # People's control text is data: it never becomes a row delimiter.
    assert EOD not in ids and SEP not in ids


def test_decode_drops_delimiters_and_reads_written_newlines(tok: SentencePieceTokenizer) -> None:
    # A model may write a newline as Yuan's <n> piece instead of the byte <0x0A>.
    response = [77186 if i == 13 else i for i in tok.encode(" 回答\n下一行")]
    assert 77186 in response
    assert tok.decode([*tok.encode("问题"), SEP, *response, EOD]) == "问题 回答\n下一行"


def test_added_tokens_take_yuans_ids(tok: SentencePieceTokenizer) -> None:
    assert (tok.eod_id, tok.sep_id) == (EOD, SEP)
    assert [tok.added[t] for t in ("<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>")] == list(
        range(134953, 134958))
    assert tok.added["<pad>"] == 77188 and tok.added["<commit_msg>"] == 96636
    assert len(tok) == 134958


def test_saved_tokenizer_reloads_with_the_same_ids(tok: SentencePieceTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path)
    assert (tmp_path / "tokenizer.model").read_bytes() == (FIXTURE / "tokenizer.model").read_bytes()
    again = load_tokenizer(tmp_path)
    assert isinstance(again, SentencePieceTokenizer) and again.added == tok.added
    text = "".join(p + r for p, r in CASES)
    assert again.encode(text) == tok.encode(text)


def test_a_tokenizer_model_wins_over_a_tokenizer_json(tok: SentencePieceTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")  # what an older release shipped beside it
    assert isinstance(load_tokenizer(tmp_path), SentencePieceTokenizer)


def test_an_unreadable_tokenizer_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable sentencepiece model"):
        load_tokenizer(tmp_path)
