"""Evaluation: held-out loss, generation scores, and a base-vs-tuned comparison.

Metrics on generated text, both per example:
- `exact_match`: 1.0 when prediction and reference are equal after NFKC
  normalisation (full-width ASCII and punctuation become half-width: "，" -> ",")
  and whitespace clean-up (ends stripped, inner runs collapsed to one space).
- `chrf`: character n-gram F-score (chrF, Popović 2015), 0..100, whitespace
  removed. Works on Chinese as is: a character is a unit, no word segmentation.

`compare` scores one set of examples with a base and a tuned model: greedy (or
sampled) answers scored against the references, and the mean loss of the
reference answer under each model. An example counts as improved / regressed /
unchanged by the sign of its chrF change.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import contract
from .data import encode_example
from .generation import SamplingConfig, generate_text
from .loss import weighted_token_loss

_WHITESPACE = re.compile(r"\s+")
#: |delta chrF| at or below this counts as unchanged (float noise, not a change).
_TIE = 1e-9


# -- text metrics ------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """NFKC (full-width -> half-width), whitespace runs -> one space, ends stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the two texts are equal after `normalize_text`, else 0.0."""
    return 1.0 if normalize_text(prediction) == normalize_text(reference) else 0.0


def _char_ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


def chrf(prediction: str, reference: str, *, max_n: int = 6, beta: float = 2.0) -> float:
    """Character n-gram F-beta score in [0, 100] (chrF; beta 2 weighs recall twice).

    For each order n = 1..max_n, precision = matched n-grams / prediction
    n-grams and recall = matched / reference n-grams (matches clipped by count).
    Precision and recall are averaged over the orders that both texts are long
    enough to have, then combined: (1 + b²)·P·R / (b²·P + R). Whitespace is
    removed first. Both texts empty: 100; one empty: 0.
    """
    if not isinstance(max_n, int) or isinstance(max_n, bool) or max_n < 1:
        raise ValueError(f"chrf max_n must be an integer >= 1, got {max_n!r}")
    if not isinstance(beta, int | float) or isinstance(beta, bool) or not beta > 0 or not math.isfinite(beta):
        raise ValueError(f"chrf beta must be a finite number > 0, got {beta!r}")
    hyp = _WHITESPACE.sub("", prediction)
    ref = _WHITESPACE.sub("", reference)
    if not hyp and not ref:
        return 100.0
    if not hyp or not ref:
        return 0.0
    precision = recall = 0.0
    orders = 0
    for n in range(1, min(max_n, len(hyp), len(ref)) + 1):
        hyp_grams, ref_grams = _char_ngrams(hyp, n), _char_ngrams(ref, n)
        matched = sum((hyp_grams & ref_grams).values())
        precision += matched / (len(hyp) - n + 1)
        recall += matched / (len(ref) - n + 1)
        orders += 1
    precision, recall = precision / orders, recall / orders
    if precision + recall == 0:
        return 0.0
    b2 = beta * beta
    return 100.0 * (1 + b2) * precision * recall / (b2 * precision + recall)


# -- losses ------------------------------------------------------------------------


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def eval_loss(model: torch.nn.Module, rows: Any, *, batch_size: int = 8) -> float:
    """Weighted mean token loss over all rows of a `trainer.data.RowSet`.

    Sum of weight x cross-entropy over every target token, divided by the sum
    of the weights: the training loss of one batch holding every row.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _device(model)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    weight = torch.zeros((), dtype=torch.float64)
    try:
        for start in range(0, len(rows), batch_size):
            indices = list(range(start, min(start + batch_size, len(rows))))
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in rows.batch(indices).items()}
            loss, w = weighted_token_loss(model, batch)
            total += loss.double().cpu()
            weight += w.double().cpu()
    finally:
        model.train(was_training)
    if weight <= 0:
        raise ValueError("eval_loss: the rows hold no target tokens with weight > 0; nothing to average")
    return float(total / weight)


@torch.no_grad()
def example_losses(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], seq_len: int
                   ) -> dict[str, float]:
    """{example id: mean cross-entropy of its response tokens and closing `<eod>`}.

    Examples are encoded exactly as for training (`trainer.data.encode_example`:
    `prompt <sep> response <eod>`, long prompts cut from the left); ones that
    training would drop (empty response, response longer than `seq_len`) are
    left out. The example weight is not applied: it is one number per example.
    """
    device = _device(model)
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        for ex in examples:
            # The response and <eod> only, whatever the run learned: scores of base and
            # tuned models (and of runs with either loss mask) stay comparable.
            enc = encode_example(ex, tokenizer, seq_len, loss_mask="response")
            if isinstance(enc, str):  # a drop reason
                continue
            ids = torch.tensor([enc.input_ids], dtype=torch.long, device=device)
            targets = torch.tensor([enc.targets], dtype=torch.long, device=device)
            loss, weight = weighted_token_loss(model, {"input_ids": ids, "targets": targets,
                                                       "weights": torch.ones_like(targets, dtype=torch.float32)})
            out[ex.id] = float(loss) / float(weight)
    finally:
        model.train(was_training)
    return out


# -- generation scores -------------------------------------------------------------


@dataclasses.dataclass
class ExampleScore:
    """One example's generated answer and its scores (loss: of the reference answer, if computed)."""

    id: str
    prompt: str
    reference: str
    prediction: str
    exact_match: float
    chrf: float
    loss: float | None = None


def score_generations(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], *,
                      sampling: SamplingConfig, batch_size: int = 32,
                      max_prompt_tokens: int | None = None) -> list[ExampleScore]:
    """Generate an answer to each example's prompt (its last `max_prompt_tokens`) and score it."""
    predictions = generate_text(model, tokenizer, [ex.prompt for ex in examples], sampling=sampling,
                                batch_size=batch_size, max_prompt_tokens=max_prompt_tokens)
    return [ExampleScore(id=ex.id, prompt=ex.prompt, reference=ex.response, prediction=pred,
                         exact_match=exact_match(pred, ex.response), chrf=chrf(pred, ex.response))
            for ex, pred in zip(examples, predictions, strict=True)]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _score(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], sampling: SamplingConfig,
           seq_len: int, batch_size: int) -> list[ExampleScore]:
    # A prompt is seen as far as the loss sees it: the eval's sequence length.
    scores = score_generations(model, tokenizer, examples, sampling=sampling, batch_size=batch_size,
                               max_prompt_tokens=seq_len)
    losses = example_losses(model, tokenizer, examples, seq_len)
    for s in scores:
        s.loss = losses.get(s.id)
    return scores


def _summary(scores: Sequence[ExampleScore]) -> dict[str, float | None]:
    return {"loss": _mean([s.loss for s in scores]),
            "exact_match": _mean([s.exact_match for s in scores]),
            "chrf": _mean([s.chrf for s in scores])}


def _check_examples(examples: Sequence[Any]) -> None:
    if not examples:
        raise ValueError("no examples to evaluate")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"example ids must be unique; {dup!r} is used more than once")


def eval_report(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], *, sampling: SamplingConfig,
                seq_len: int, batch_size: int = 32) -> dict[str, Any]:
    """One model's scores: {"summary": {n, loss, exact_match, chrf}, "examples": [ExampleScore as dict]}."""
    _check_examples(examples)
    scores = _score(model, tokenizer, examples, sampling, seq_len, batch_size)
    return {"summary": {"n": len(scores), **_summary(scores)},
            "examples": [dataclasses.asdict(s) for s in scores]}


def compare(base_model: torch.nn.Module, tuned_model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], *,
            sampling: SamplingConfig, seq_len: int, batch_size: int = 32) -> dict[str, Any]:
    """Score the same examples with both models.

    Returns {"summary": {"n", "base": {loss, exact_match, chrf}, "tuned": {...},
    "delta": {...} (tuned - base), "improved", "regressed", "unchanged"},
    "examples": [{id, prompt, reference, base: {prediction, exact_match, chrf,
    loss}, tuned: {...}, delta_chrf}]}. Means are over examples (loss over those
    that have one); improved/regressed/unchanged go by the sign of delta_chrf.
    """
    _check_examples(examples)
    base = _score(base_model, tokenizer, examples, sampling, seq_len, batch_size)
    tuned = _score(tuned_model, tokenizer, examples, sampling, seq_len, batch_size)

    rows: list[dict[str, Any]] = []
    counts = {"improved": 0, "regressed": 0, "unchanged": 0}
    for b, t in zip(base, tuned, strict=True):
        delta = t.chrf - b.chrf
        counts["improved" if delta > _TIE else "regressed" if delta < -_TIE else "unchanged"] += 1
        rows.append({
            "id": b.id, "prompt": b.prompt, "reference": b.reference,
            "base": {"prediction": b.prediction, "exact_match": b.exact_match, "chrf": b.chrf, "loss": b.loss},
            "tuned": {"prediction": t.prediction, "exact_match": t.exact_match, "chrf": t.chrf, "loss": t.loss},
            "delta_chrf": delta,
        })
    base_summary, tuned_summary = _summary(base), _summary(tuned)
    delta_summary: dict[str, float | None] = {}
    for key, before in base_summary.items():
        after = tuned_summary[key]
        delta_summary[key] = None if before is None or after is None else after - before
    summary = {"n": len(rows), "base": base_summary, "tuned": tuned_summary, "delta": delta_summary, **counts}
    return {"summary": summary, "examples": rows}


# -- files -------------------------------------------------------------------------

#: Characters of text kept in a markdown table cell.
_CELL_CHARS = 60


def write_comparison(result: dict[str, Any], out_dir: Path) -> None:
    """Write `comparison.json` (all), `comparison.jsonl` (one example a line) and `comparison.md`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / contract.COMPARISON).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    with (out_dir / contract.COMPARISON_EXAMPLES).open("w", encoding="utf-8") as fh:
        for row in result["examples"]:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out_dir / contract.COMPARISON_TABLE).write_text(_markdown(result), encoding="utf-8")


def _cell(text: str, limit: int = _CELL_CHARS) -> str:
    """Text fit for one markdown table cell: one line, pipes escaped, cut to `limit` characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in _WHITESPACE.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|") or " "


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    base, tuned, delta = s["base"], s["tuned"], s["delta"]
    lines = [
        "# Base vs tuned",
        "",
        f"{s.get('n', len(result['examples']))} examples; by chrF: {s['improved']} improved, "
        f"{s['regressed']} regressed, {s['unchanged']} unchanged.",
        "",
        "| metric | base | tuned | delta |",
        "| --- | ---: | ---: | ---: |",
        f"| loss (lower is better) | {_num(base['loss'], 4)} | {_num(tuned['loss'], 4)} "
        f"| {_signed(delta['loss'], 4)} |",
        f"| exact match | {_num(base['exact_match'], 3)} | {_num(tuned['exact_match'], 3)} "
        f"| {_signed(delta['exact_match'], 3)} |",
        f"| chrF | {_num(base['chrf'], 2)} | {_num(tuned['chrf'], 2)} | {_signed(delta['chrf'], 2)} |",
        "",
        "## Examples",
        "",
        "| id | prompt | reference | base answer | tuned answer | chrF base | chrF tuned | Δ chrF |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in result["examples"]:
        lines.append(
            f"| {_cell(str(row['id']), 40)} | {_cell(row['prompt'])} | {_cell(row['reference'])} "
            f"| {_cell(row['base']['prediction'])} | {_cell(row['tuned']['prediction'])} "
            f"| {row['base']['chrf']:.1f} | {row['tuned']['chrf']:.1f} | {row['delta_chrf']:+.1f} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["ExampleScore", "chrf", "compare", "eval_loss", "eval_report", "exact_match", "example_losses",
           "normalize_text", "score_generations", "write_comparison"]
