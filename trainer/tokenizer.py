"""Tokenizers: the checkpoint's own through `transformers.AutoTokenizer`, or a built-in byte one.

Yuan2 ships a sentencepiece LlamaTokenizer with added tokens (`<sep>`, `<eod>`,
`<n>`, ...). Its vocabulary has no newline; Yuan's own scripts write newlines as
`<n>`, so the wrapper does the same when the vocabulary has `<n>`.

The built-in tokenizer is a byte-level `tokenizers` model (256 byte tokens, no
merges, then the special tokens), saved as a standard `tokenizer.json`: tiny demo
checkpoints therefore load with `AutoTokenizer` too, and nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import BYTE_EOD_ID, BYTE_SEP_ID, BYTE_VOCAB

#: Special tokens of the byte tokenizer, from id 256 on (`<eod>` = 256, `<sep>` = 257).
BYTE_SPECIALS = ("<eod>", "<sep>", "<n>", "<pad>", "<mask>", "<unk>")


class TokenizerError(ValueError):
    """A tokenizer is missing, unreadable, or does not fit the model."""


class Tokenizer:
    """What the trainer needs of a tokenizer: ids of `<eod>` and `<sep>`, encode, decode."""

    def __init__(self, hf: Any) -> None:
        self.hf = hf
        vocab = hf.get_vocab()
        for token in ("<eod>", "<sep>"):
            if token not in vocab:
                raise TokenizerError(f"tokenizer has no {token} token; Yuan2 fine-tuning needs it")
        self.eod_id: int = vocab["<eod>"]
        self.sep_id: int = vocab["<sep>"]
        self._newline_token = "<n>" if "<n>" in vocab and not _has_newline(hf) else None
        controls = (set(hf.all_special_tokens) | set(hf.get_added_vocab())) - {"<n>"}
        self._control = re.compile("|".join(re.escape(t) for t in sorted(controls, key=len, reverse=True))
                                   or "(?!)")

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of `text`, without any automatically added bos/eos.

        People's text is data: a literal "<eod>" or "<sep>" in a bug report must not
        become a control token, so added/special-token strings found in `text` are
        encoded as plain characters unless `allow_special` is set. Newlines become
        Yuan's `<n>` either way.
        """
        if allow_special or not self._control.search(text):
            return self._encode(text)
        ids: list[int] = []
        pos = 0
        for match in self._control.finditer(text):
            ids += self._encode(text[pos:match.start()])
            ids += self.hf.encode(match.group(), add_special_tokens=False, split_special_tokens=True)
            pos = match.end()
        return ids + self._encode(text[pos:])

    def _encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._newline_token:
            text = text.replace("\n", self._newline_token)
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; `<eod>` and `<sep>` are dropped, `<n>` becomes a newline."""
        keep = [int(i) for i in ids if int(i) not in (self.eod_id, self.sep_id)]
        text = self.hf.decode(keep, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return text.replace("<n>", "\n") if self._newline_token else text

    def save(self, folder: str | Path) -> None:
        self.hf.save_pretrained(str(folder))


def _has_newline(hf: Any) -> bool:
    ids = hf.encode("a\nb", add_special_tokens=False)
    return "\n" in hf.decode(ids)


def byte_tokenizer() -> Tokenizer:
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
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eod>", pad_token="<eod>",
                                 bos_token="<eod>", unk_token="<unk>", sep_token="<sep>")
    tok = Tokenizer(hf)
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


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer stored in a checkpoint folder, through `AutoTokenizer` (offline)."""
    folder = Path(path)
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        raise TokenizerError(
            f"{folder}: no tokenizer files (expected one of {', '.join(_TOKENIZER_FILES)})"
        )
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
    return Tokenizer(hf)


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
