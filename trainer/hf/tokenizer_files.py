"""The tokenizer files of a released checkpoint folder.

A release carries the sentencepiece model it was trained with (`tokenizer.model`)
and two small JSON files that tell `transformers` how to wrap it. Yuan users load
the tokenizer two ways and both must give the ids the trainer trained on:

- `LlamaTokenizer.from_pretrained(folder, add_eos_token=False, add_bos_token=False,
  eos_token='<eod>')` plus Yuan's `add_tokens([...], special_tokens=True)`: the slow,
  sentencepiece-backed class of transformers 4.x. It reads `added_tokens_decoder`,
  so every added token keeps the id the trainer gave it (ids past the sentencepiece
  vocabulary included) and Yuan's own `add_tokens` call then finds them all already
  present and adds nothing.
- `AutoTokenizer.from_pretrained(folder, trust_remote_code=True)`: `auto_map` names
  `tokenization_yuan.YuanTokenizer` (copied into the folder by
  `trainer.hf.write_remote_code`), which splits the added tokens out and
  sentencepiece-encodes each other chunk, like the trainer does.

`tokenizer_class` is `YuanTokenizer` rather than `LlamaTokenizer` so that
`AutoTokenizer` without `trust_remote_code` refuses the folder instead of silently
building a `tokenizers` conversion whose ids differ. Both bos and eos adding are off
(a Yuan row is `prompt<sep>response<eod>`, with no `<s>`); the pad token is `<eod>`,
the `pad_token_id` of the Yuan `config.json` files, so batched generation pads with
what the model already treats as "end". `legacy: true` keeps the slow LlamaTokenizer
on plain `sentencepiece.encode` per chunk (its non-legacy path drops the dummy-prefix
space after added tokens); `clean_up_tokenization_spaces: false` keeps decode exact.

This module imports neither torch nor transformers: the trainer writes these files
where neither may be installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

#: The remote-code tokenizer class, as `auto_map` names it (no fast class).
TOKENIZER_AUTO_MAP: dict[str, list[str | None]] = {"AutoTokenizer": ["tokenization_yuan.YuanTokenizer", None]}
TOKENIZER_FILE = "tokenizer.model"
BOS = "<s>"
UNK = "<unk>"


def _added_token(content: str) -> dict[str, Any]:
    """One `added_tokens_decoder` entry: matched verbatim, whitespace around it left alone."""
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_sentencepiece_tokenizer(
    folder: Path,
    model_file: Path,
    added_tokens: dict[str, int],
    *,
    eod: str = "<eod>",
    sep: str = "<sep>",
) -> None:
    """Copy `model_file` to `folder/tokenizer.model` and write the configs that wrap it.

    `added_tokens` maps each added token's text to its id (`<eod>`, `<sep>`, `<pad>`
    and Yuan's `add_tokens` list, as the trainer's tokenizer numbers them); `eod`
    becomes eos and pad, `sep` is recorded as the sep token. Raises `ValueError` when
    two tokens share an id or `eod`/`sep` is not among `added_tokens`.
    """
    folder = Path(folder)
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no sentencepiece model there")
    for name, token in (("eod", eod), ("sep", sep)):
        if token not in added_tokens:
            raise ValueError(f"{name} token {token!r} is not among the added tokens")
    by_id: dict[int, str] = {}
    for content, token_id in added_tokens.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise ValueError(f"added token {content!r}: id {token_id!r} is not a non-negative int")
        if token_id in by_id:
            raise ValueError(f"added tokens {by_id[token_id]!r} and {content!r} share id {token_id}")
        by_id[token_id] = content

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / TOKENIZER_FILE
    if model_file.resolve() != target.resolve():
        shutil.copyfile(model_file, target)

    special = {"bos_token": BOS, "eos_token": eod, "unk_token": UNK, "pad_token": eod}
    config: dict[str, Any] = {
        "tokenizer_class": "YuanTokenizer",
        "auto_map": TOKENIZER_AUTO_MAP,
        "add_bos_token": False,
        "add_eos_token": False,
        **special,
        "sep_token": sep,
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "sp_model_kwargs": {},
        # Sorted by id, the order the ids were given out in.
        "added_tokens_decoder": {str(i): _added_token(by_id[i]) for i in sorted(by_id)},
    }
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", {**special, "sep_token": sep})


__all__ = ["TOKENIZER_AUTO_MAP", "write_sentencepiece_tokenizer"]
