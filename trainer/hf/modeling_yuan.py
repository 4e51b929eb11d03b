"""`transformers` wrapper of a Yuan 2.0 checkpoint released by cotrain.

Shipped inside every released checkpoint folder and named by `config.json`'s
`auto_map`, so users load a release the usual Yuan way:

    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)

(transformers 5 reads `config.json`, whose `AutoConfig` is this remote code, even
for the tokenizer: without `trust_remote_code` it asks, or falls back to a plain config.)

This file does not implement the network. The layers come from `yuan_lfa.py`,
a byte-for-byte copy of cotrain's `trainer/model.py` placed next to it at export
time, so the released code computes exactly what cotrain trained and evaluated.
State-dict names are those of the public Yuan2 HF checkpoints
(`model.layers.{i}.self_attn.lf_gate.conv1.weight`, `lm_head.weight`, ...).

Supported: `forward` with `input_ids`, `attention_mask` (1 = token, 0 = padding,
left padding included), `labels` (HF convention: the input ids, shifted inside,
-100 ignored), `past_key_values`/`cache` plus `use_cache` for incremental
decoding, and `generate()` for greedy decoding and sampling (beam search
reorders the cache too). The cache is cotrain's own `YuanCache` (keys, values
and the last two LFA inputs per layer), not a `transformers.Cache`; generation
therefore never uses static caches, `torch.compile`d decoding or assisted
decoding. cotrain's `trainer.generation` is the supported and tested path for
production inference; `generate()` here is a convenience for users.

Works with transformers 4.36 (what Yuan's docs pin), 4.46 and 5.x; 5.2x names the
cache argument and output field `cache` instead of `past_key_values`, and both are
accepted. 4.36's `generate()` hands back whatever object the model returned as
`past_key_values` without converting it, so our cache goes through untouched
there too; a legacy tuple-of-tuples cache is refused with a `TypeError` in every
version (it cannot hold the LFA inputs). `scripts/transformers_compat.py` loads a
release under each of these versions and compares `generate()`'s greedy tokens
with `trainer.generation`.
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import __version__ as _transformers_version
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_yuan import YuanConfig
from .yuan_lfa import IGNORE_INDEX, RMSNorm, YuanCache, YuanModel

try:  # transformers 5: initialisers that leave weights read from the checkpoint alone
    from transformers import initialization as _init
except ImportError:  # transformers 4
    from torch.nn import init as _init  # type: ignore[no-redef]  # one of the two, by version

_TRANSFORMERS_MAJOR = int(_transformers_version.split(".")[0])

#: Name of the cache field of `CausalLMOutputWithPast` (`cache` from transformers 5.2x on).
_CACHE_FIELD = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


class YuanGenerationCache(YuanCache):
    """`YuanCache` plus the hook that `generate()`'s beam search calls."""

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.select(beam_idx.to(self.key_valid.device) if self.key_valid is not None else beam_idx)


def _is_yuan_cache(cache) -> bool:
    # Duck-typed: trainer.model.YuanCache and this folder's copy are different classes.
    return hasattr(cache, "lf_inputs") and hasattr(cache, "key_valid") and hasattr(cache, "select")


def _as_yuan_cache(cache):
    """The cache to use: ours, or None for an empty `transformers` cache handed in by generic code."""
    if cache is None or _is_yuan_cache(cache):
        return cache
    get_length = getattr(cache, "get_seq_length", None)
    if get_length is not None and get_length() == 0:
        return None
    raise TypeError(
        f"Yuan LFA models keep their own cache (keys, values and LFA inputs); got {type(cache).__name__}. "
        "Pass back the cache this model returned, or nothing."
    )


class YuanPreTrainedModel(PreTrainedModel):
    config_class = YuanConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer"]  # noqa: RUF012 (the transformers convention)
    _skip_keys_device_placement = ["past_key_values", "cache"]  # noqa: RUF012
    _supports_sdpa = True
    # The cache is not a `transformers.Cache`: generate() must not build a DynamicCache/StaticCache.
    _supports_cache_class = False
    _supports_static_cache = False
    # Buffers some exported Yuan2 checkpoints carry; they are recomputed.
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq", r"rotary_emb\.(cos|sin)_cached"]  # noqa: RUF012

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            _init.ones_(module.weight)


class YuanForCausalLM(YuanPreTrainedModel, GenerationMixin):
    """Yuan 2.0 decoder plus output head, tied to the embedding when `tie_word_embeddings` is true."""

    # transformers 5 maps tied target -> source; transformers 4 lists the tied targets.
    if _TRANSFORMERS_MAJOR >= 5:
        _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    else:  # the checked type is the installed (5.x) one
        _tied_weights_keys = ["lm_head.weight"]  # type: ignore[assignment]

    def __init__(self, config: YuanConfig) -> None:
        super().__init__(config)
        self.model = YuanModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def get_decoder(self) -> nn.Module:
        return self.model

    def set_decoder(self, decoder: nn.Module) -> None:
        self.model = decoder

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        cache=None,
        segment_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        num_items_in_batch=None,
        **kwargs,
    ):
        """Logits (B, S, V), the loss when `labels` are given, and the cache when `use_cache`.

        `segment_ids` (B, S), an extension, numbers the examples of a packed row.
        Positions are derived from `attention_mask` and the cache, so `position_ids`
        and `cache_position` passed by generic code are ignored.
        """
        if inputs_embeds is not None:
            raise ValueError("YuanForCausalLM takes input_ids, not inputs_embeds")
        if input_ids is None:
            raise ValueError("input_ids is required")
        logits_to_keep = logits_to_keep or kwargs.get("num_logits_to_keep") or 0
        cache = _as_yuan_cache(cache if cache is not None else past_key_values)
        if use_cache is None:
            use_cache = bool(getattr(self.config, "use_cache", True)) and not self.training and labels is None
        if self.training and self.model.gradient_checkpointing:
            use_cache = False  # recomputed layers would append to the cache a second time
        if use_cache and cache is None:
            cache = YuanGenerationCache(len(self.model.layers))
        if attention_mask is not None:
            if attention_mask.dim() != 2:
                raise ValueError("attention_mask must be 2-D (batch, tokens): 1 for tokens, 0 for padding")
            if segment_ids is None and bool(attention_mask.all()):
                attention_mask = None  # nothing masked: the same result, and the plain causal kernel

        hidden = self.model(input_ids, attention_mask=attention_mask, segment_ids=segment_ids, cache=cache)
        if logits_to_keep and labels is None:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)

        loss = None
        if labels is not None:
            targets = labels[:, 1:].to(logits.device).reshape(-1)
            flat = logits[:, :-1].float().reshape(-1, logits.shape[-1])
            if num_items_in_batch is None:
                loss = F.cross_entropy(flat, targets, ignore_index=IGNORE_INDEX)
            else:
                loss = F.cross_entropy(flat, targets, ignore_index=IGNORE_INDEX, reduction="sum")
                if isinstance(num_items_in_batch, torch.Tensor):
                    num_items_in_batch = num_items_in_batch.to(loss.device)
                loss = loss / num_items_in_batch

        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        if not return_dict:
            out = (logits, cache) if cache is not None else (logits,)
            return (loss, *out) if loss is not None else out
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: cache})

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, cache=None, use_cache=True, **kwargs):
        """Only the tokens the cache has not seen yet, the full attention mask, and the cache."""
        if inputs_embeds is not None:
            raise ValueError("YuanForCausalLM generates from input_ids, not inputs_embeds")
        cache = _as_yuan_cache(cache if cache is not None else past_key_values)
        if cache is not None and cache.length:
            input_ids = input_ids[:, cache.length:]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "cache": cache, "use_cache": use_cache}
        for key in ("logits_to_keep", "num_logits_to_keep"):
            if kwargs.get(key) is not None:
                inputs[key] = kwargs[key]
        return inputs

    def _reorder_cache(self, cache, beam_idx: torch.Tensor):
        """Beam search: keep the cache rows of the surviving beams."""
        cache.select(beam_idx.to(cache.key_valid.device) if cache.key_valid is not None else beam_idx)
        return cache


# So that `save_pretrained` copies this code along and names it in `auto_map` (transformers 4
# only does that for classes registered for an Auto class; transformers 5 does it anyway).
YuanForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["YuanForCausalLM", "YuanGenerationCache", "YuanPreTrainedModel"]
