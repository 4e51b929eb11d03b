"""Fine-tuning data: load examples, encode them with a loss mask, pack them into fixed-length rows.

Input. The platform writes a dataset folder; `load_examples` reads any of
- a `datasets` `save_to_disk` folder holding a `Dataset` (one split, called "train")
  or a `DatasetDict` (splits by name, e.g. "train" and "eval");
- a single `.jsonl`, `.parquet` or `.txt` file (one split, called "train");
- a folder of `{split}.jsonl` / `{split}.parquet` / `{split}.txt` files.

A `.txt` file is the Yuan team's own fine-tuning format: one example a line,
`<sep>` (or `[SEP]`) between instruction and response, newlines written `<n>`.
Its rows get ids `line-<n>` (n = line number) and the file name as source.

Columns: `id` (non-empty str, unique), `prompt` (str), `response` (str), `source`
(str) and optional `weight` (finite float > 0, default 1.0; null means default).
Other columns are ignored. Instead of `prompt`/`response` a row may give
`messages`, a list of `{"role": "user" | "assistant" | "system", "content": str}`:
the last message must be the assistant's and is the response; the contents of
all earlier turns, in order, joined with "\\n", are the prompt (role names are not
written into the text). So `[user: 你好, assistant: 你好！, user: 今天周几？,
assistant: 周三。]` trains "周三。" on the prompt "你好\\n你好！\\n今天周几？".

Encoding. An example is the Yuan line `prompt<sep>response` (newlines written
`<n>`), cleaned as the Yuan team's `preprocess_data_yuan.py` cleans a line (one
leading `<n>` dropped, the line stripped, `\r` removed, `<n>` back to a newline,
`▃` removed; `yuan_line_parts`), encoded as `prompt <sep> response <eod>`: with a
sentencepiece tokenizer these are exactly the ids of Yuan's pipeline. Unlike
that pipeline, a literal `<sep>`, `[SEP]` or `<eod>` inside people's text stays
text (it is data, not structure).

`targets` are aligned with the inputs: `targets[t]` is the token position t must
predict. Which targets carry loss is `loss_mask`:
- `"yuan"` (the default, as Yuan's Megatron SFT trains): the last prompt token
  predicts `<sep>`, then the response and the closing `<eod>` are learned;
- `"response"`: from the `<sep>` position on, so only the response and `<eod>`.
Earlier prompt positions and the `<eod>` position itself carry no loss (-100).
Too long: the prompt loses tokens from the left (its end is nearest the
question); if `<sep> response <eod>` alone does not fit, the example is dropped.
Every truncation and drop is counted in a `DataReport`.

Rows. `build_rows` packs encoded examples first-fit into rows of exactly
`seq_len` tokens; `segment_ids` number the examples inside a row (-1 on
padding), which `trainer.model` turns into position and attention resets, so a
packed row computes what its examples compute one by one (tests check this).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .model import IGNORE_INDEX
from .tokenizer import Tokenizer

#: The split name given to data that has no split names (one file, one `Dataset`).
DEFAULT_SPLIT = "train"
#: Drop reasons and truncation reasons, as counted in `DataReport`.
EMPTY_RESPONSE = "empty_response"
#: Loss masks (see the module docstring): Yuan's, with the `<sep>` target; response only.
LOSS_MASKS = ("yuan", "response")
RESPONSE_TOO_LONG = "response_too_long"
PROMPT_TRUNCATED = "prompt_truncated"

_ROLES = ("user", "assistant", "system")
_FILE_SUFFIXES = (".jsonl", ".parquet", ".txt")
#: The two separators Yuan's data files use between instruction and response.
_YUAN_SEPARATORS = ("<sep>", "[SEP]")


class DataError(ValueError):
    """A dataset cannot be used as given.

    The message names the file (or folder) and, for a bad row, its row number
    and field. Rows are numbered from 1; in a `.jsonl` file the row number is
    the line number.
    """


@dataclasses.dataclass(frozen=True)
class Example:
    """One training example, already validated."""

    id: str
    prompt: str
    response: str
    source: str
    weight: float = 1.0


# -- loading -------------------------------------------------------------------


def available_splits(path: str | Path) -> list[str]:
    """Split names that `load_examples(path, split)` accepts, in the order the data lists them."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        _check_suffix(path)
        return [DEFAULT_SPLIT]
    if (path / "dataset_dict.json").is_file():
        return _dataset_dict_splits(path)
    if (path / "state.json").is_file():
        return [DEFAULT_SPLIT]
    return list(_split_files(path))


def single_split(path: str | Path) -> str | None:
    """The split name of data that has no split names (one file, a saved plain `Dataset`), else None.

    `trainer eval` scores such data whole whatever `--split` asks for, so no caller
    needs to know the name the trainer gives it (`DEFAULT_SPLIT`).
    """
    path = Path(path)
    unnamed = path.is_file() or ((path / "state.json").is_file() and not (path / "dataset_dict.json").is_file())
    return DEFAULT_SPLIT if unnamed else None


def load_examples(path: str | Path, split: str = "train") -> list[Example]:
    """All examples of one split, validated (see the module docstring for formats and columns).

    Raises `DataError` on the first problem; nothing is returned for a dataset
    with any bad row, so training never starts on part of what was submitted.
    """
    where, columns, rows = _read_split(Path(path), split)
    if not rows:
        raise DataError(f"{where}: split {split!r} has no rows")
    _check_columns(where, columns)
    examples: list[Example] = []
    first_row_of: dict[str, int] = {}
    for number, row in rows:
        example = _example_from_row(where, number, row)
        if example.id in first_row_of:
            raise DataError(f"{where}: row {number}: duplicate id {example.id!r} "
                            f"(first used in row {first_row_of[example.id]})")
        first_row_of[example.id] = number
        examples.append(example)
    return examples


def general_replay_set() -> list[Example]:
    """The small general-ability set shipped with the trainer (`trainer/assets/general.jsonl`).

    Mixed into fine-tuning data with `mix_replay` so a narrow task does not
    make the model forget how to do simple everyday things.
    """
    ref = resources.files("trainer").joinpath("assets", "general.jsonl")
    # as_file: the package may live in a zip; load_examples wants a real path.
    with resources.as_file(ref) as file:
        return load_examples(file)


def _read_split(path: Path, split: str) -> tuple[str, list[str], list[tuple[int, dict[str, Any]]]]:
    """(name for messages, column names, numbered rows) of one split of any accepted layout."""
    splits = available_splits(path)
    if split not in splits:
        raise DataError(f"{path}: no split {split!r}; available splits: {', '.join(splits) or 'none'}")
    if path.is_file():
        return _read_file(path)
    if (path / "dataset_dict.json").is_file():
        return _read_saved(path, split)
    if (path / "state.json").is_file():
        return _read_saved(path, None)
    return _read_file(_split_files(path)[split])


def _read_file(path: Path) -> tuple[str, list[str], list[tuple[int, dict[str, Any]]]]:
    if path.suffix == ".txt":
        return str(path), ["id", "prompt", "response", "source"], _read_yuan_txt(path)
    if path.suffix == ".jsonl":
        rows = _read_jsonl(path)
        # A key that no row has is a missing column; one that some rows lack
        # shows up as null in those rows and is reported with their row number.
        columns = sorted({key for _, row in rows for key in row})
        return str(path), columns, rows
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    return str(path), table.column_names, list(enumerate(table.to_pylist(), start=1))


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    try:
        # Lines end at "\n" only: str.splitlines() would also cut at U+2028, U+0085 and
        # other characters that JSON strings may hold unescaped (ensure_ascii=False).
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # a trailing blank line is common and harmless
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: row {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number}: expected a JSON object, got {_type_name(row)}")
        rows.append((number, row))
    return rows


def _read_yuan_txt(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a Yuan fine-tuning file: `instruction<sep>response` a line, `<n>` for newlines.

    Lines are read the way Yuan's `preprocess_data_yuan.py` reads them (Python text
    mode: "\\n", "\\r\\n" and a lone "\\r" each end a line); lines with nothing but
    whitespace and `<n>` are skipped, as there. The first separator splits the line;
    the line's cleaning is left to `encode_example`, which does it for every format.
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with path.open(encoding="utf-8") as fh:
            lines = list(fh)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if not line.replace("<n>", "").replace("▃", "").replace("\r", "").strip():
            continue
        cuts = [(line.find(sep), sep) for sep in _YUAN_SEPARATORS if sep in line]
        if not cuts:
            raise DataError(f"{path}: row {number}: no <sep> (or [SEP]) between instruction and response")
        at, sep = min(cuts)
        prompt, response = line[:at], line[at + len(sep):]
        rows.append((number, {"id": f"line-{number}", "source": path.name,
                              "prompt": prompt.replace("<n>", "\n"), "response": response.replace("<n>", "\n")}))
    return rows


def _read_saved(folder: Path, split: str | None) -> tuple[str, list[str], list[tuple[int, dict[str, Any]]]]:
    """A `save_to_disk` folder; `split` picks from a `DatasetDict`, None means a plain `Dataset`."""
    # Imported here: `datasets` is slow to import and only this layout needs it.
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises several types for damaged folders
        raise DataError(f"{folder}: cannot load the saved dataset ({type(exc).__name__}: {exc})") from exc
    ds = loaded[split] if split is not None else loaded
    where = str(folder / split) if split is not None else str(folder)
    return where, list(ds.column_names), list(enumerate(ds.to_list(), start=1))


def _dataset_dict_splits(folder: Path) -> list[str]:
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{folder}: unreadable dataset_dict.json ({exc})") from exc
    return [str(s) for s in splits]


def _split_files(folder: Path) -> dict[str, Path]:
    """{split: file} for a folder of `{split}.jsonl` / `{split}.parquet` files."""
    found: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        if file.suffix not in _FILE_SUFFIXES or not file.is_file():
            continue
        if file.stem in found:
            raise DataError(f"{folder}: split {file.stem!r} is given twice ({found[file.stem].name} and "
                            f"{file.name}); keep one")
        found[file.stem] = file
    if not found:
        raise DataError(f"{folder}: no dataset found (expected a datasets save_to_disk folder or "
                        f"{{split}}.jsonl / {{split}}.parquet / {{split}}.txt files)")
    return found


def _check_suffix(path: Path) -> None:
    if path.suffix not in _FILE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .parquet or .txt")


def _check_columns(where: str, columns: Sequence[str]) -> None:
    needed = ["id", "source"] if "messages" in columns else ["id", "prompt", "response", "source"]
    missing = [name for name in needed if name not in columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (expected id, prompt, response, "
                        f"source and optional weight; or messages instead of prompt and response)")


def _example_from_row(where: str, number: int, row: dict[str, Any]) -> Example:
    def bad(field: str, problem: str) -> DataError:
        return DataError(f"{where}: row {number}: field {field!r} {problem}")

    def text(field: str) -> str:
        value = row.get(field)
        if not isinstance(value, str):
            raise bad(field, f"must be a string, got {_type_name(value)}")
        return value

    ex_id = text("id")
    if not ex_id.strip():
        raise bad("id", "is empty")
    source = text("source")

    weight = row.get("weight")
    if weight is None:
        weight = 1.0
    # bool is an int subclass; `true` as a weight is a mistake, not 1.0.
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise bad("weight", f"must be a number, got {_type_name(weight)}")
    if not math.isfinite(weight) or weight <= 0:
        raise bad("weight", f"must be finite and > 0, got {weight!r}")

    if row.get("messages") is not None:
        if row.get("prompt") is not None or row.get("response") is not None:
            raise bad("messages", "is given together with prompt/response; give one or the other")
        prompt, response = _from_messages(row["messages"], bad)
    else:
        prompt, response = text("prompt"), text("response")
    return Example(id=ex_id, prompt=prompt, response=response, source=source, weight=float(weight))


def _from_messages(messages: Any, bad: Callable[[str, str], DataError]) -> tuple[str, str]:
    """(prompt, response) of a multi-turn conversation; convention in the module docstring."""
    if not isinstance(messages, list) or not messages:
        raise bad("messages", f"must be a non-empty list of messages, got {_type_name(messages)}")
    for i, msg in enumerate(messages, start=1):
        if not isinstance(msg, dict):
            raise bad("messages", f"item {i} must be an object with role and content, got {_type_name(msg)}")
        if msg.get("role") not in _ROLES:
            raise bad("messages", f"item {i} has role {msg.get('role')!r}; expected one of {', '.join(_ROLES)}")
        if not isinstance(msg.get("content"), str):
            raise bad("messages", f"item {i} content must be a string, got {_type_name(msg.get('content'))}")
    if messages[-1]["role"] != "assistant":
        raise bad("messages", f"must end with an assistant message (the response), ends with "
                              f"{messages[-1]['role']!r}")
    return "\n".join(m["content"] for m in messages[:-1]), messages[-1]["content"]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# -- encoding --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example with its aligned targets (-100 = no loss)."""

    id: str
    input_ids: list[int]
    targets: list[int]
    weight: float
    #: Why the example was shortened (`PROMPT_TRUNCATED`), or None if it was not.
    truncation: str | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def yuan_line_parts(prompt: str, response: str) -> tuple[str, str]:
    """(prompt, response) as Yuan's pipeline cleans the line `prompt<sep>response`.

    In the line, newlines are written `<n>`. `preprocess_data_yuan.py` drops one
    leading `<n>`, strips the line (Python's `str.strip`: the prompt's leading and
    the response's trailing whitespace, full-width and no-break spaces included),
    removes "\\r", turns `<n>` back into newlines and removes "▃", in that order.
    """
    head = prompt.replace("\n", "<n>")
    head = (head[3:] if head.startswith("<n>") else head).lstrip()
    tail = response.replace("\n", "<n>").rstrip()
    return _yuan_clean(head), _yuan_clean(tail)


def _yuan_clean(text: str) -> str:
    return text.replace("\r", "").replace("<n>", "\n").replace("▃", "")


def encode_example(ex: Example, tokenizer: Tokenizer, seq_len: int, *, loss_mask: str = "yuan"
                   ) -> EncodedExample | str:
    """`prompt <sep> response <eod>` with its loss targets, fitted to `seq_len`; or a drop reason."""
    _check_encoding(seq_len, loss_mask)
    prompt_text, response_text = yuan_line_parts(ex.prompt, ex.response)
    if not response_text.strip():
        return EMPTY_RESPONSE
    return _fit(ex, tokenizer.encode(prompt_text), tokenizer.encode(response_text), tokenizer, seq_len, loss_mask)


def _fit(ex: Example, prompt: list[int], response: list[int], tokenizer: Tokenizer, seq_len: int, loss_mask: str
         ) -> EncodedExample | str:
    """The row of one example from its encoded (cleaned) prompt and response."""
    room = seq_len - len(response) - 2  # tokens left for the prompt after <sep> and <eod>
    if room < 0:
        return RESPONSE_TOO_LONG
    truncation = None
    if len(prompt) > room:
        # Keep the end: in a long prompt the question or instruction usually comes last.
        prompt = prompt[len(prompt) - room:]
        truncation = PROMPT_TRUNCATED
    ids = [*prompt, tokenizer.sep_id, *response, tokenizer.eod_id]
    # Position t predicts ids[t + 1]. Learned: from the last prompt token (which predicts
    # <sep>, Yuan's way) or from <sep> itself, through the last response token (-> <eod>).
    start = len(prompt) - 1 if loss_mask == "yuan" and prompt else len(prompt)
    end = len(ids) - 1
    targets = [IGNORE_INDEX] * start + ids[start + 1:end + 1] + [IGNORE_INDEX]
    return EncodedExample(id=ex.id, input_ids=ids, targets=targets, weight=ex.weight, truncation=truncation)


def _check_encoding(seq_len: int, loss_mask: str) -> None:
    _check_seq_len(seq_len)
    if loss_mask not in LOSS_MASKS:
        raise ValueError(f"loss_mask must be one of {', '.join(LOSS_MASKS)}, got {loss_mask!r}")


def _check_seq_len(seq_len: int) -> None:
    # The shortest example, `<sep> x <eod>`, needs three tokens.
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an integer >= 3, got {seq_len!r}")


# -- rows ------------------------------------------------------------------------


@dataclasses.dataclass
class DataReport:
    """What `build_rows` did with the examples it was given."""

    #: Examples given.
    total: int = 0
    #: Examples placed in rows (total minus dropped).
    used: int = 0
    #: Examples shortened, by reason.
    truncated: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Examples left out, by reason.
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Real (non-padding) tokens in the rows.
    tokens: int = 0
    #: Rows built.
    rows: int = 0
    #: Row length in tokens.
    seq_len: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One human line, e.g. for the run log and the contributor's run page."""
        capacity = self.rows * self.seq_len
        fill = f", {self.tokens / capacity:.0%} full" if capacity else ""
        line = (f"{self.total} examples, {self.used} used in {self.rows} rows of {self.seq_len} tokens "
                f"({self.tokens} tokens{fill})")
        for label, counts in (("dropped", self.dropped), ("truncated", self.truncated)):
            if counts:
                line += f"; {label} {sum(counts.values())} (" + ", ".join(
                    f"{reason} {n}" for reason, n in sorted(counts.items())) + ")"
        return line


@dataclasses.dataclass(frozen=True, eq=False)
class RowSet:
    """Fixed-length training rows, each tensor (N, seq_len); layout in `trainer.loss`."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    segment_ids: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self) -> None:
        shape = self.input_ids.shape
        if len(shape) != 2 or any(t.shape != shape for t in (self.targets, self.segment_ids, self.weights)):
            raise ValueError("RowSet tensors must all have the same (N, seq_len) shape")

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The rows at `indices`, as the batch dict `trainer.loss.weighted_token_loss` takes."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return {name: getattr(self, name).index_select(0, idx)
                for name in ("input_ids", "targets", "segment_ids", "weights")}


def build_rows(examples: list[Example], tokenizer: Tokenizer, seq_len: int, *, pack: bool = True,
               loss_mask: str = "yuan") -> tuple[RowSet, DataReport]:
    """Encode `examples` and lay them out in rows of exactly `seq_len` tokens.

    pack=True fills rows first-fit in input order (an example never spans two
    rows); pack=False puts one example per row. Padding is `<eod>` with target
    -100, segment id -1 and weight 0. Dropped examples are only counted; if all
    are dropped the RowSet is empty and the report says why.
    """
    _check_encoding(seq_len, loss_mask)
    report = DataReport(total=len(examples), seq_len=seq_len)
    encoded: list[EncodedExample] = []
    # What encode_example does one by one, with one batch call for all texts: the
    # tokenizer encodes it in parallel, in native code.
    parts = [yuan_line_parts(ex.prompt, ex.response) for ex in examples]
    kept = [i for i, (_, response) in enumerate(parts) if response.strip()]
    ids = iter(tokenizer.encode_batch([text for i in kept for text in parts[i]]))
    fitted: dict[int, EncodedExample | str] = {i: _fit(examples[i], next(ids), next(ids), tokenizer, seq_len, loss_mask)
                                               for i in kept}
    for i in range(len(examples)):
        enc = fitted.get(i, EMPTY_RESPONSE)
        if isinstance(enc, str):
            report.dropped[enc] = report.dropped.get(enc, 0) + 1
            continue
        if enc.truncation:
            report.truncated[enc.truncation] = report.truncated.get(enc.truncation, 0) + 1
        encoded.append(enc)

    lengths = [len(enc) for enc in encoded]
    groups = _first_fit(lengths, seq_len) if pack else [[i] for i in range(len(encoded))]
    rows = _assemble(encoded, groups, seq_len, pad_id=tokenizer.eod_id)
    report.used, report.tokens, report.rows = len(encoded), sum(lengths), len(rows)
    return rows, report


def _first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Greedy first-fit: each item goes into the first row with room, else into a new row.

    Scanning the open rows for each item is quadratic, minutes for a
    100k-example set; a max-tree over the rows' free space finds the first row
    with room in O(log n). Leaves are rows in opening order (unopened rows have
    no room); each inner node holds the most room of any row below it.
    """
    size = 1
    while size < len(lengths):
        size *= 2
    room = [0] * (2 * size)
    rows: list[list[int]] = []
    for item, length in enumerate(lengths):
        if room[1] >= length:
            node = 1
            while node < size:  # descend, preferring the left (earlier) rows
                node = 2 * node if room[2 * node] >= length else 2 * node + 1
        else:
            node = size + len(rows)
            rows.append([])
            room[node] = capacity
        rows[node - size].append(item)
        room[node] -= length
        node //= 2
        while node:
            room[node] = max(room[2 * node], room[2 * node + 1])
            node //= 2
    return rows


def _assemble(encoded: list[EncodedExample], groups: list[list[int]], seq_len: int, pad_id: int) -> RowSet:
    ids, targets, segments, weights = [], [], [], []
    for group in groups:
        row_ids: list[int] = []
        row_targets: list[int] = []
        row_segments: list[int] = []
        row_weights: list[float] = []
        for segment, i in enumerate(group):
            enc = encoded[i]
            row_ids += enc.input_ids
            row_targets += enc.targets
            row_segments += [segment] * len(enc)
            row_weights += [enc.weight if t != IGNORE_INDEX else 0.0 for t in enc.targets]
        pad = seq_len - len(row_ids)
        ids.append(row_ids + [pad_id] * pad)
        targets.append(row_targets + [IGNORE_INDEX] * pad)
        segments.append(row_segments + [-1] * pad)
        weights.append(row_weights + [0.0] * pad)
    n = len(groups)
    return RowSet(
        input_ids=torch.tensor(ids, dtype=torch.long).reshape(n, seq_len),
        targets=torch.tensor(targets, dtype=torch.long).reshape(n, seq_len),
        segment_ids=torch.tensor(segments, dtype=torch.long).reshape(n, seq_len),
        weights=torch.tensor(weights, dtype=torch.float32).reshape(n, seq_len),
    )


# -- replay ----------------------------------------------------------------------


def mix_replay(examples: list[Example], replay: list[Example], ratio: float, seed: int) -> list[Example]:
    """`examples` followed by replay examples making up `ratio` of the result.

    n_replay = round(n * ratio / (1 - ratio)). Replay examples are drawn without
    replacement while `replay` has enough; beyond that every replay example is
    used equally often (whole shuffled passes, then a sample), which is sampling
    with replacement at the lowest possible repetition. They get source "replay"
    and id "replay:<id>", with "#2", "#3", ... on repeated copies so ids stay
    unique. Same inputs and seed, same result.
    """
    if not (isinstance(ratio, int | float) and 0 <= ratio < 1):
        raise ValueError(f"replay ratio must be in [0, 1), got {ratio!r}")
    n_replay = round(len(examples) * ratio / (1 - ratio))
    if n_replay == 0:
        return list(examples)
    if not replay:
        raise ValueError(f"replay ratio {ratio} asks for {n_replay} replay examples but the replay set is empty")
    rng = random.Random(seed)
    drawn: list[Example] = []
    while n_replay - len(drawn) >= len(replay):
        drawn += rng.sample(replay, len(replay))
    drawn += rng.sample(replay, n_replay - len(drawn))

    copies: dict[str, int] = {}
    mixed = list(examples)
    for ex in drawn:
        copies[ex.id] = copies.get(ex.id, 0) + 1
        suffix = f"#{copies[ex.id]}" if copies[ex.id] > 1 else ""
        mixed.append(dataclasses.replace(ex, id=f"replay:{ex.id}{suffix}", source="replay"))
    return mixed


__all__ = [
    "DataError",
    "DataReport",
    "EncodedExample",
    "Example",
    "RowSet",
    "available_splits",
    "build_rows",
    "encode_example",
    "general_replay_set",
    "load_examples",
    "mix_replay",
    "yuan_line_parts",
]
