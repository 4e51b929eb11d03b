"""Text generation with the key/value (and LFA) cache: greedy or sampled, batched.

Prompts are grouped into batches of similar length (longest first), left-padded
and run through the model once with a fresh `YuanCache` (the prefill); then each
step feeds one new token per row. A row stops at `<eod>` (not included in its
output) or after `max_new_tokens`; finished rows leave the batch at once
(`YuanCache.select`), so the work per step shrinks as rows finish. Results come
back in the order of the input prompts.

Sampled decoding draws from one `torch.Generator` seeded by `SamplingConfig.seed`
on the model's device: the same prompts, batch size and seed give the same text.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .data import yuan_line_parts
from .model import YuanCache, YuanForCausalLM


@dataclasses.dataclass
class SamplingConfig:
    """How to pick each next token.

    `temperature` 0 means greedy (arg-max; `top_k`, `top_p` and `seed` are then
    unused). Otherwise logits are divided by the temperature, cut to the `top_k`
    most likely tokens (0 = no cut) and to the smallest set whose probability
    reaches `top_p` (1.0 = no cut), and one token is drawn.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not _is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(
                f"sampling.temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}"
            )
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"sampling.top_k must be an integer >= 0 (0 = no top-k cut), got {self.top_k!r}")
        if not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampling.top_p must be in (0, 1] (1.0 = no nucleus cut), got {self.top_p!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise ValueError(f"sampling.seed must be null or an integer in [0, 2**63), got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@torch.no_grad()
def generate(model: torch.nn.Module, prompts: list[list[int]], *, eod_id: int, sampling: SamplingConfig,
             batch_size: int = 32, static_cache: bool | None = None, vocab: int | None = None) -> list[list[int]]:
    """The generated token ids of each prompt (without the prompt and without `<eod>`).

    `model` is a `YuanForCausalLM` (or a peft wrapper around one); any model
    with the same `forward(input_ids, attention_mask=, past_key_values=,
    use_cache=)` contract works through its forward. It runs in eval mode and
    gets its previous mode back afterwards.

    `static_cache` (default: on GPUs, for our own model) decodes with
    preallocated cache buffers and replays one CUDA graph per token, since a
    decode step is hundreds of tiny kernels whose launch cost dwarfs their work.

    `vocab`: ids from it up are never drawn. Yuan2's embedding table is padded past its
    tokenizer (135,040 rows for 134,958 ids): a padding row is no token, and an untrained
    or broken model that picks one would otherwise end in an undecodable answer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompts = [[int(t) for t in p] for p in prompts]
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty; a prompt needs at least one token (e.g. <sep>)")
    context = getattr(_config(model), "max_position_embeddings", None)
    budgets = [sampling.max_new_tokens for _ in prompts]
    if context:
        for i, p in enumerate(prompts):
            if len(p) >= context:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens, at least the model's context of {context}; shorten it"
                )
            budgets[i] = min(budgets[i], context - len(p))

    device = _device(model)
    generator = None
    if not sampling.greedy and sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)

    # Longest first: batches of similar lengths pad little, and a memory problem shows at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            outs = _generate_batch(model, [prompts[i] for i in chunk], [budgets[i] for i in chunk],
                                   eod_id=eod_id, sampling=sampling, generator=generator, device=device,
                                   static_cache=static_cache, vocab=vocab)
            for i, out in zip(chunk, outs, strict=True):
                results[i] = out
    finally:
        model.train(was_training)
    return results


def _generate_batch(model: torch.nn.Module, prompts: list[list[int]], budgets: list[int], *, eod_id: int,
                    sampling: SamplingConfig, generator: torch.Generator | None, device: torch.device,
                    static_cache: bool | None = None, vocab: int | None = None) -> list[list[int]]:
    b = len(prompts)
    width = max(len(p) for p in prompts)
    ids = torch.zeros((b, width), dtype=torch.long)  # padding: any valid id, masked out
    mask = torch.zeros((b, width), dtype=torch.bool)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p):] = True
    ids, mask = ids.to(device), mask.to(device)

    outputs: list[list[int]] = [[] for _ in prompts]
    #: Batch row -> index into `prompts`, for the rows still generating.
    active = list(range(b))
    cache = YuanCache(_num_layers(model))
    logits = _next_logits(model, ids, mask, cache)
    core = _core(model)
    if static_cache is None:
        static_cache = device.type == "cuda"
    if static_cache and isinstance(core, YuanForCausalLM):
        return _decode_static(core, cache, logits, budgets, eod_id=eod_id, sampling=sampling,
                              generator=generator, vocab=vocab)
    while True:
        tokens = _pick(logits, sampling, generator, vocab)
        keep: list[int] = []
        for row, token in enumerate(tokens.tolist()):
            r = active[row]
            if token == eod_id:
                continue
            outputs[r].append(token)
            if len(outputs[r]) < budgets[r]:
                keep.append(row)
        if not keep:
            return outputs
        if len(keep) < len(active):
            rows = torch.tensor(keep, dtype=torch.long, device=device)
            cache.select(rows)
            mask = mask.index_select(0, rows)
            tokens = tokens.index_select(0, rows)
            active = [active[row] for row in keep]
        mask = torch.cat((mask, mask.new_ones(len(active), 1)), dim=1)
        logits = _next_logits(model, tokens[:, None], mask, cache)


def _decode_static(core: YuanForCausalLM, cache: YuanCache, logits: torch.Tensor, budgets: list[int], *,
                   eod_id: int, sampling: SamplingConfig, generator: torch.Generator | None,
                   vocab: int | None = None) -> list[list[int]]:
    """Decode after the prefill in a preallocated cache (`YuanCache.preallocate`); on a GPU each
    step is one CUDA-graph replay."""
    outputs: list[list[int]] = [[] for _ in budgets]
    done = [False] * len(budgets)
    cache.preallocate(max(budgets))
    ids = torch.zeros(len(budgets), 1, dtype=torch.long, device=logits.device)

    def step() -> torch.Tensor:
        logits = core.lm_head(core.model(ids, cache=cache)[:, -1])
        cache.step_done()
        return logits

    graph, graph_logits = None, None
    while True:
        # Draw for the rows still going only, in order, exactly as the shrinking batch
        # of the dynamic path does: the same seed then gives the same samples.
        active = [row for row in range(len(budgets)) if not done[row]]
        rows = torch.tensor(active, device=logits.device)
        picked = _pick(logits.index_select(0, rows), sampling, generator, vocab)
        for row, token in zip(active, picked.tolist(), strict=True):
            if token == eod_id:
                done[row] = True
                continue
            outputs[row].append(token)
            done[row] = len(outputs[row]) >= budgets[row]
        if all(done):
            return outputs
        ids.index_copy_(0, rows, picked[:, None])
        if graph is not None and graph_logits is not None:
            graph.replay()
            logits = graph_logits
        else:
            logits = step()  # the first step runs eagerly: it also warms up the kernels
            if ids.device.type == "cuda":
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    graph_logits = step()  # recorded, not run: the next replay is the next step


def _pick(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None,
          vocab: int | None = None) -> torch.Tensor:
    """One token per row from (B, V) logits, among the first `vocab` ids when given."""
    if vocab is not None and vocab < logits.shape[-1]:
        logits = logits[:, :vocab]
    logits = logits.float()
    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, sorted_idx = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first one always stays).
        drop = probs.cumsum(dim=-1) - probs >= sampling.top_p
        drop = torch.zeros_like(drop).scatter(-1, sorted_idx, drop)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _core(model: torch.nn.Module) -> torch.nn.Module:
    """The model under a peft wrapper (its adapters stay in place), or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _config(model: torch.nn.Module) -> Any:
    return getattr(_core(model), "config", None)


def _num_layers(model: torch.nn.Module) -> int:
    core = _core(model)
    if isinstance(core, YuanForCausalLM):
        return len(core.model.layers)
    return int(_config(model).num_hidden_layers)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _next_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 cache: YuanCache) -> torch.Tensor:
    """Logits (B, V) of the last position; extends `cache` with the new tokens.

    For our own model the output head runs on the last position only: the
    prefill's full (B, S, V) logits would cost gigabytes with Yuan2's 135,040-token
    vocabulary and long prompts.
    """
    core = _core(model)
    if isinstance(core, YuanForCausalLM):
        hidden = core.model(input_ids, attention_mask=attention_mask, cache=cache)
        return core.lm_head(hidden[:, -1])
    out = model(input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
    return out.logits[:, -1]


def generate_text(model: torch.nn.Module, tokenizer: Any, prompts: list[str], *, sampling: SamplingConfig,
                  batch_size: int = 32, max_prompt_tokens: int | None = None) -> list[str]:
    """The model's answer to each prompt, Yuan style: `prompt<sep>` -> `answer<eod>`.

    A prompt ending with the text `<sep>` is not given a second one; the `<sep>`
    id is always appended by id, never left to the tokenizer to find in the text.
    `max_prompt_tokens`: a longer prompt keeps its last tokens (the question usually
    comes last, and `<sep>` must), so one pasted document cannot fail a whole evaluation.
    """
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    if max_prompt_tokens is not None:
        if max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        ids = [p[-max_prompt_tokens:] for p in ids]
    outs = generate(model, ids, eod_id=tokenizer.eod_id, sampling=sampling, batch_size=batch_size,
                    vocab=len(tokenizer))
    return [tokenizer.decode(o) for o in outs]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of `prompt` followed by `<sep>` (exactly one), the prompt cleaned as in training."""
    if prompt.endswith("<sep>"):
        prompt = prompt[: -len("<sep>")]
    cleaned, _ = yuan_line_parts(prompt, "")
    return [*tokenizer.encode(cleaned), tokenizer.sep_id]


__all__ = ["SamplingConfig", "encode_prompt", "generate", "generate_text"]
