"""Tokenizers: a checkpoint's sentencepiece model exactly as Yuan uses it, a `tokenizers` one, or a built-in byte one.

Yuan 2.0 ships a sentencepiece BPE model (`tokenizer.model`) and turns fine-tuning
text into ids with the slow, sentencepiece-backed `LlamaTokenizer` plus a list of
added tokens (`../shared/yuan/README.md`): the added-token strings split the text,
and every other piece of it is `sentencepiece.encode(piece)`, dummy-prefix space
included. transformers 5 (and, for about 2% of lines, 4.46's fast tokenizer)
converts that model into a `tokenizers` BPE whose merges and whitespace handling
differ, so for a folder with a `tokenizer.model` the trainer calls sentencepiece
itself (`SentencePieceTokenizer`): the ids are the Yuan team's, token for token.
Newlines are text to it (byte fallback `<0x0A>`), as in Yuan's pipeline.

A folder with only a `tokenizer.json` goes through `tokenizers` (`HFTokenizer`,
via `AutoTokenizer`); when its vocabulary has `<n>` and no newline, newlines are
written `<n>`, as Yuan's scripts do.

The built-in tokenizer is a byte-level `tokenizers` model (256 byte tokens, no
merges, then the special tokens), saved as a standard `tokenizer.json`: tiny demo
checkpoints therefore load with `AutoTokenizer` too, and nothing is downloaded.

People's text is data everywhere: a literal "<eod>" or "<sep>" in a bug report is
encoded as the characters it is made of unless `allow_special` is set, and
decodes back to exactly that text.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .config import BYTE_EOD_ID, BYTE_SEP_ID, BYTE_VOCAB

#: Special tokens of the byte tokenizer, from id 256 on (`<eod>` = 256, `<sep>` = 257).
BYTE_SPECIALS = ("<eod>", "<sep>", "<n>", "<pad>", "<mask>", "<unk>")
#: What the Yuan team's scripts add to the sentencepiece model, in their order
#: (`tools/preprocess_data_yuan.py`); names the model lacks get the next free ids.
YUAN_ADDED_TOKENS = (
    "<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>", "<FIM_MIDDLE>",
    "<commit_before>", "<commit_msg>", "<commit_after>", "<jupyter_start>", "<jupyter_text>",
    "<jupyter_code>", "<jupyter_output>", "<empty_output>",
)
EOD, SEP, NEWLINE = "<eod>", "<sep>", "<n>"


class TokenizerError(ValueError):
    """A tokenizer is missing, unreadable, or does not fit the model."""


class Tokenizer:
    """What the trainer needs of a tokenizer: ids of `<eod>` and `<sep>`, encode, decode, save."""

    eod_id: int
    sep_id: int

    def __len__(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of `text`, without any automatically added bos/eos.

        Control-token strings in `text` stay plain characters unless `allow_special`.
        """
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text (plain text, no control tokens), possibly in parallel."""
        return [self.encode(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; `<eod>` and `<sep>` are dropped, `<n>` becomes a newline."""
        raise NotImplementedError

    def save(self, folder: str | Path) -> None:
        """Write the tokenizer files into a checkpoint folder."""
        raise NotImplementedError


def _control_pattern(tokens: Iterable[str]) -> re.Pattern[str]:
    """A regex matching any of `tokens`, longest first (so `<sep>` never hides `<sep2>`)."""
    alternatives = "|".join(re.escape(t) for t in sorted(set(tokens), key=len, reverse=True))
    return re.compile(alternatives or "(?!)")


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model plus added tokens, encoding as Yuan's `LlamaTokenizer` does.

    `added` maps added-token strings to ids: those the model has as pieces keep
    their piece ids, the others come after the model's last piece (Yuan's
    `<mask>` is 134953). As in Yuan's pipeline, these strings (the model's `<s>`
    and `<unk>` too) split the text and become their ids; each other stretch is
    `sentencepiece.encode`d. The row delimiters `<eod>` and `<sep>` are the
    exception: in people's text they stay characters unless `allow_special`.
    None of `<eod>`, `<sep>`, `<n>`, `<pad>` can come out of the model's merges
    (no two pieces concatenate to them), so plain text never yields them.
    """

    def __init__(self, model_file: str | Path, added: dict[str, int] | None = None) -> None:
        import sentencepiece

        self.model_file = Path(model_file)
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(f"{self.model_file}: not a readable sentencepiece model ({exc})") from exc
        # Kept so that save() works after the source folder is gone (a temporary download, say).
        self._proto = self.sp.serialized_model_proto()
        self.pieces = self.sp.get_piece_size()
        self.added = dict(added) if added is not None else {}
        next_id = max([self.pieces - 1, *self.added.values()]) + 1
        # Yuan loads with eos_token='<eod>' first, then add_tokens(YUAN_ADDED_TOKENS).
        for token in (EOD, *YUAN_ADDED_TOKENS):
            if token not in self.added:
                piece = self._piece_id(token)
                self.added[token] = piece if piece is not None else next_id
                next_id += 1 if piece is None else 0
        # The slow LlamaTokenizer also splits at its bos and unk tokens (`<s>`, `<unk>`).
        for idx in (self.sp.bos_id(), self.sp.unk_id()):
            if idx >= 0:
                self.added.setdefault(self.sp.id_to_piece(idx), idx)
        self.eod_id, self.sep_id = self.added[EOD], self.added[SEP]
        self._newline_piece = self._piece_id(NEWLINE) if NEWLINE not in self.added else self.added[NEWLINE]
        self._byte_newline = self._piece_id("<0x0A>")
        # What splits the text, and into which id. A model that cannot spell a newline
        # (no byte fallback) but has Yuan's `<n>` gets newlines written as `<n>`.
        self._split_ids = dict(self.added)
        if self._newline_piece is not None and self.sp.unk_id() in self.sp.encode("\n"):
            self._split_ids["\n"] = self._newline_piece
        self._split_all = _control_pattern(self._split_ids)
        self._split_data = _control_pattern(t for t in self._split_ids if t not in (EOD, SEP))
        # Ids sentencepiece cannot decode to their text (past its pieces, or control pieces).
        self._spelled = {i: t for t, i in self.added.items() if i not in (self.eod_id, self.sep_id)
                         and (i >= self.pieces or self.sp.is_control(i) or self.sp.is_unknown(i))}

    def _piece_id(self, piece: str) -> int | None:
        idx = self.sp.piece_to_id(piece)
        return idx if self.sp.id_to_piece(idx) == piece else None

    @classmethod
    def from_folder(cls, folder: str | Path) -> SentencePieceTokenizer:
        """The folder's `tokenizer.model`, with the added tokens its `tokenizer_config.json` lists."""
        folder = Path(folder)
        return cls(folder / "tokenizer.model", _added_tokens_of(folder))

    def __len__(self) -> int:
        return max(self.pieces - 1, *self.added.values()) + 1

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        split = self._split_all if allow_special else self._split_data
        if not split.search(text):
            return list(self.sp.encode(text)) if text else []
        ids: list[int] = []
        pos = 0
        for match in split.finditer(text):
            if match.start() > pos:
                ids += self.sp.encode(text[pos:match.start()])
            ids.append(self._split_ids[match.group()])
            pos = match.end()
        if pos < len(text):
            ids += self.sp.encode(text[pos:])
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # sentencepiece encodes a list on its own thread pool, in C++; the rare text
        # holding an added token goes through encode().
        special = {i for i, text in enumerate(texts) if self._split_data.search(text)}
        plain = [text for i, text in enumerate(texts) if i not in special]
        out = iter(self.sp.encode(plain, num_threads=os.cpu_count() or 1))
        return [self.encode(text) if i in special else list(next(out)) for i, text in enumerate(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, exactly what was encoded: `<eod>`/`<sep>` dropped, `<n>` a newline.

        Each run between control tokens is decoded on its own, so that the run's
        dummy-prefix space is removed as sentencepiece removes it at the start
        of a text (`prompt <sep> response` decodes to prompt + response).
        """
        parts: list[str] = []
        run: list[int] = []
        for raw in ids:
            i = int(raw)
            if i in (self.eod_id, self.sep_id) or (i in self._spelled and i != self._newline_piece):
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                parts.append(self._spelled.get(i, ""))
                continue
            if i == self._newline_piece and self._byte_newline is None:
                # Written newline of a model without byte pieces: spelled out here.
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                parts.append("\n")
                continue
            # `<n>` is Yuan's written newline; models may emit it.
            run.append(self._byte_newline if i == self._newline_piece and self._byte_newline is not None else i)
        if run:
            parts.append(self.sp.decode(run))
        return "".join(parts)

    def save(self, folder: str | Path) -> None:
        from .hf.tokenizer_files import write_sentencepiece_tokenizer

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "tokenizer.model"
            source.write_bytes(self._proto)
            write_sentencepiece_tokenizer(folder, source, dict(self.added))


def _added_tokens_of(folder: Path) -> dict[str, int]:
    """Added tokens listed in `tokenizer_config.json` (`added_tokens_decoder`) or `added_tokens.json`."""
    added: dict[str, int] = {}
    config = folder / "tokenizer_config.json"
    if config.is_file():
        raw = _read_json(config)
        for idx, entry in (raw.get("added_tokens_decoder") or {}).items():
            content = entry.get("content") if isinstance(entry, dict) else None
            if isinstance(content, str) and str(idx).isdigit():
                added[content] = int(idx)
    extra = folder / "added_tokens.json"
    if extra.is_file():
        for content, idx in _read_json(extra).items():
            if isinstance(idx, int):
                added.setdefault(content, idx)
    return added


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise TokenizerError(f"{path}: expected a JSON object")
    return raw


class HFTokenizer(Tokenizer):
    """A `transformers` tokenizer (a `tokenizer.json`); `<n>` for newlines when its vocabulary needs it."""

    def __init__(self, hf: Any) -> None:
        self.hf = hf
        vocab = hf.get_vocab()
        for token in (EOD, SEP):
            if token not in vocab:
                raise TokenizerError(f"tokenizer has no {token} token; Yuan2 fine-tuning needs it")
        self.eod_id: int = vocab[EOD]
        self.sep_id: int = vocab[SEP]
        self._newline_token = NEWLINE if NEWLINE in vocab and not _has_newline(hf) else None
        controls = (set(hf.all_special_tokens) | set(hf.get_added_vocab())) - {NEWLINE}
        self._control = _control_pattern(controls)

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        if allow_special or not self._control.search(text):
            return self._encode(text)
        ids: list[int] = []
        pos = 0
        for match in self._control.finditer(text):
            ids += self._encode(text[pos:match.start()])
            ids += self.hf.encode(match.group(), add_special_tokens=False, split_special_tokens=True)
            pos = match.end()
        return ids + self._encode(text[pos:])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # The fast tokenizer encodes a batch in parallel in Rust; the rare text holding a
        # control string goes through encode(), which keeps it as characters.
        special = {i for i, text in enumerate(texts) if self._control.search(text)}
        plain = [self._prepare(text) for i, text in enumerate(texts) if i not in special]
        out = iter(self.hf(plain, add_special_tokens=False)["input_ids"] if plain else [])
        return [self.encode(text) if i in special else list(next(out)) for i, text in enumerate(texts)]

    def _prepare(self, text: str) -> str:
        return text.replace("\n", self._newline_token) if self._newline_token else text

    def _encode(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.hf.encode(self._prepare(text), add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        keep = [int(i) for i in ids if int(i) not in (self.eod_id, self.sep_id)]
        text = self.hf.decode(keep, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return text.replace(NEWLINE, "\n") if self._newline_token else text

    def save(self, folder: str | Path) -> None:
        self.hf.save_pretrained(str(folder))


def _has_newline(hf: Any) -> bool:
    ids = hf.encode("a\nb", add_special_tokens=False)
    return "\n" in hf.decode(ids)


def byte_tokenizer() -> HFTokenizer:
    """The built-in byte-level tokenizer (vocabulary `BYTE_VOCAB`, `<eod>` 256, `<sep>` 257)."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(256)}
    assert set(vocab) == set(alphabet)
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    # Added tokens take the next free ids in the order given, so add them here first.
    raw.add_special_tokens(list(BYTE_SPECIALS))
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=EOD, pad_token=EOD,
                                 bos_token=EOD, unk_token="<unk>", sep_token=SEP)
    tok = HFTokenizer(hf)
    if (tok.eod_id, tok.sep_id) != (BYTE_EOD_ID, BYTE_SEP_ID) or len(hf) > BYTE_VOCAB:
        raise TokenizerError(f"byte tokenizer ids drifted: eod={tok.eod_id} sep={tok.sep_id}")
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-to-printable-character map that `ByteLevel` uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer stored in a checkpoint folder (offline).

    A `tokenizer.model` wins: sentencepiece itself encodes, as in Yuan's pipeline.
    Otherwise `AutoTokenizer` reads the folder's `tokenizer.json`.
    """
    folder = Path(path)
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        raise TokenizerError(
            f"{folder}: no tokenizer files (expected one of {', '.join(_TOKENIZER_FILES)})"
        )
    if (folder / "tokenizer.model").is_file():
        return SentencePieceTokenizer.from_folder(folder)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer peeks at config.json, whose custom model_type "yuan" it does not
    # know; that only triggers a misleading warning, so quiet it for this call.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types here; name the folder
        raise TokenizerError(f"{folder}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from exc
    finally:
        hf_logging.set_verbosity(level)
    return HFTokenizer(hf)


def check_vocab(tokenizer: Tokenizer, config: Any) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embedding table."""
    if len(tokenizer) > config.vocab_size:
        raise TokenizerError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {config.vocab_size}"
        )
    if tokenizer.eod_id != config.eod_token_id:
        raise TokenizerError(
            f"tokenizer's <eod> is id {tokenizer.eod_id} but config.json says eod_token_id "
            f"{config.eod_token_id}"
        )
    sep = getattr(config, "sep_token_id", None)
    if sep is not None and tokenizer.sep_id != sep:
        raise TokenizerError(
            f"tokenizer's <sep> is id {tokenizer.sep_id} but config.json says sep_token {sep}"
        )


__all__ = [
    "YUAN_ADDED_TOKENS",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerError",
    "byte_tokenizer",
    "check_vocab",
    "load_tokenizer",
]
