"""`transformers` tokenizer of a Yuan 2.0 checkpoint released by cotrain.

Shipped inside every released folder that has a `tokenizer.model` and named by
`tokenizer_config.json`'s `auto_map`, so that

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)

gives exactly the ids cotrain trained on, under transformers 4.36, 4.46 and 5.x.
Those are the ids of Yuan's own pipeline (the slow, sentencepiece-backed
`LlamaTokenizer` plus Yuan's added tokens): the added-token strings (`<eod>`,
`<sep>`, `<mask>`, ...) split the text, every other chunk is
`sentencepiece.encode(chunk)` (dummy-prefix space included), nothing is added at
either end. transformers 5 builds `LlamaTokenizer` as a `tokenizers` conversion of
the sentencepiece model whose merges and whitespace differ, and 4.x's fast class
differs on some lines too; this class therefore calls sentencepiece itself.

Decoding is the exact inverse: each run of ids between added tokens is
`sentencepiece.decode(run)` (which drops that run's dummy-prefix space, the one
its encoding put there), added tokens are their text, and nothing is put between
them (Llama's decoder inserts spaces around special tokens). So
`decode(encode(text)) == text` for any text, whitespace and newlines included.

The base class is transformers' python ("slow") tokenizer, exported as
`transformers.PreTrainedTokenizer` in every supported version (in 5.x it is
`transformers.tokenization_python.PythonBackend`). Only methods whose meaning is
the same in 4.36, 4.46 and 5.x are overridden.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import sentencepiece as spm
from transformers import PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "tokenizer.model"}


class YuanTokenizer(PreTrainedTokenizer):
    """Yuan 2.0's sentencepiece model plus added tokens, encoding as Yuan's pipeline does."""

    vocab_files_names = VOCAB_FILES_NAMES
    # Decoder-only generation continues after the last token: pad batches on the left.
    padding_side = "left"
    model_input_names = ["input_ids", "attention_mask"]  # noqa: RUF012 (the transformers convention)

    def __init__(
        self,
        vocab_file: str,
        unk_token: Any = "<unk>",
        bos_token: Any = "<s>",
        eos_token: Any = "<eod>",
        pad_token: Any = "<eod>",
        sep_token: Any = "<sep>",
        add_bos_token: bool = False,
        add_eos_token: bool = False,
        sp_model_kwargs: dict[str, Any] | None = None,
        clean_up_tokenization_spaces: bool = False,
        legacy: bool = True,
        **kwargs: Any,
    ) -> None:
        self.vocab_file = vocab_file
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.add_bos_token = add_bos_token
        self.add_eos_token = add_eos_token
        # Only legacy (plain per-chunk sentencepiece) encoding exists; the flag is
        # kept so that the config round-trips and LlamaTokenizer reads the same file.
        self.legacy = legacy
        # The base __init__ asks for the vocabulary (to number the special tokens),
        # so the model must be loaded first.
        self.sp_model = self._load_sp()
        self._piece_vocab: dict[str, int] | None = None
        super().__init__(
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            sep_token=sep_token,
            add_bos_token=add_bos_token,
            add_eos_token=add_eos_token,
            sp_model_kwargs=self.sp_model_kwargs,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            legacy=legacy,
            **kwargs,
        )

    def _load_sp(self) -> spm.SentencePieceProcessor:
        sp = spm.SentencePieceProcessor(**self.sp_model_kwargs)
        sp.Load(self.vocab_file)
        return sp

    # The processor is a C++ object: pickle (used by `copy.deepcopy` and
    # multiprocessing data loaders) carries the file path and reloads it.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["sp_model"] = None
        state["_sp_proto"] = self.sp_model.serialized_model_proto()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        proto = state.pop("_sp_proto", None)
        self.__dict__.update(state)
        self.sp_model = spm.SentencePieceProcessor(**self.sp_model_kwargs)
        if proto is not None:
            self.sp_model.LoadFromSerializedProto(proto)
        else:
            self.sp_model.Load(self.vocab_file)

    @property
    def vocab_size(self) -> int:
        """Pieces of the sentencepiece model (added tokens past it not included)."""
        return self.sp_model.get_piece_size()

    def get_vocab(self) -> dict[str, int]:
        if self._piece_vocab is None:
            self._piece_vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab = dict(self._piece_vocab)
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """One chunk between added tokens: plain sentencepiece, dummy prefix included."""
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        if 0 <= index < self.vocab_size:
            return self.sp_model.id_to_piece(index)
        return str(self.unk_token)

    def _skipped_ids(self) -> set[int]:
        """What `skip_special_tokens` drops: the named special tokens and every added token marked special."""
        ids = {int(i) for i in self.all_special_ids if i is not None}
        ids.update(i for i, token in self._added_tokens_decoder.items() if getattr(token, "special", False))
        return ids

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Pieces back to text: added tokens verbatim, each run of pieces between them through sentencepiece."""
        out: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in self._added_tokens_encoder:
                if run:
                    out.append(self.sp_model.decode_pieces(run))
                    run = []
                out.append(token)
            else:
                run.append(token)
        if run:
            out.append(self.sp_model.decode_pieces(run))
        return "".join(out)

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        """Exact inverse of encoding (see the module docstring).

        A skipped special token still ends the run before it, so `prompt<sep>answer`
        decodes to `prompt` + `answer` without the space sentencepiece would keep
        were the two runs joined. Ids past the vocabulary and the added tokens (an
        embedding's padding rows) decode to nothing. `spaces_between_special_tokens`
        and other transformers-4 keywords are accepted and ignored: no spaces are
        ever inserted.
        """
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        skip = self._skipped_ids() if skip_special_tokens else set()
        pieces = self.vocab_size
        out: list[str] = []
        run: list[int] = []
        for raw in token_ids:
            index = int(raw)
            added = self._added_tokens_decoder.get(index)
            if added is None and 0 <= index < pieces:
                run.append(index)
                continue
            if run:
                out.append(self.sp_model.decode(run))
                run = []
            if added is not None and index not in skip:
                out.append(added.content)
        if run:
            out.append(self.sp_model.decode(run))
        text = "".join(out)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """`<s>`/eos around each sequence only when `add_bos_token`/`add_eos_token` (both off for Yuan)."""
        bos = [self.bos_token_id] if self.add_bos_token else []
        eos = [self.eos_token_id] if self.add_eos_token else []
        ids = bos + token_ids_0 + eos
        if token_ids_1 is not None:
            ids += bos + token_ids_1 + eos
        return ids

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            special = self._skipped_ids()
            return [int(int(i) in special) for i in token_ids_0 + (token_ids_1 or [])]
        bos = [1] if self.add_bos_token else []
        eos = [1] if self.add_eos_token else []
        mask = bos + [0] * len(token_ids_0) + eos
        if token_ids_1 is not None:
            mask += bos + [0] * len(token_ids_1) + eos
        return mask

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """All zeros: the model has no token types."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Write the sentencepiece model (as loaded) into `save_directory`."""
        if not os.path.isdir(save_directory):
            raise ValueError(f"{save_directory} is not a directory")
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        target = os.path.join(save_directory, name)
        if os.path.abspath(self.vocab_file) == os.path.abspath(target):
            return (target,)
        if os.path.isfile(self.vocab_file):
            shutil.copyfile(self.vocab_file, target)
        else:
            with open(target, "wb") as handle:
                handle.write(self.sp_model.serialized_model_proto())
        return (target,)


__all__ = ["YuanTokenizer"]
