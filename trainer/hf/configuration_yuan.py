"""`transformers` configuration of a Yuan 2.0 checkpoint released by cotrain.

Shipped inside every released checkpoint folder (next to `modeling_yuan.py` and
`yuan_lfa.py`) and named by `config.json`'s `auto_map`, so that
`AutoConfig.from_pretrained(folder, trust_remote_code=True)` works. It accepts
every key of the public Yuan2 `config.json` files (`use_flash_attention`,
`causal_mask`, `reset_attention_mask`, `reset_position_ids`, `use_loss_mask`,
`eod_token`, `sep_token`, `dropout`, ...) and writes unknown keys back unchanged.

Works with transformers 4.36 (what Yuan's docs pin), 4.46 and 5.x
(`scripts/transformers_compat.py` checks all three).
"""

from transformers import PretrainedConfig


class YuanConfig(PretrainedConfig):
    """Hyper-parameters of a Yuan 2.0 decoder with Localized Filtering-based Attention."""

    model_type = "yuan"
    keys_to_ignore_at_inference = ["past_key_values"]  # noqa: RUF012 (the transformers convention)

    def __init__(
        self,
        vocab_size=135040,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        hidden_act="silu",
        max_position_embeddings=8192,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        use_cache=True,
        pad_token_id=77185,
        bos_token_id=77185,
        eos_token_id=77185,
        tie_word_embeddings=True,
        eod_token=77185,
        sep_token=77187,
        eod_token_id=None,
        sep_token_id=None,
        use_flash_attention=False,
        causal_mask=True,
        reset_attention_mask=True,
        reset_position_ids=True,
        use_loss_mask=False,
        dropout=0.0,
        **kwargs,
    ):
        # The public files spell the special tokens both `eod_token` and `eod_token_id`.
        eod_token_id = eod_token if eod_token_id is None else eod_token_id
        sep_token_id = sep_token if sep_token_id is None else sep_token_id
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.use_cache = use_cache
        self.eod_token = eod_token
        self.sep_token = sep_token
        self.eod_token_id = eod_token_id
        # Flags of the reference implementation; the LFA model reads none of them.
        self.use_flash_attention = use_flash_attention
        self.causal_mask = causal_mask
        self.reset_attention_mask = reset_attention_mask
        self.reset_position_ids = reset_position_ids
        self.use_loss_mask = use_loss_mask
        self.dropout = dropout
        # Token ids and tying go through the base class: transformers 4 sets them there
        # (and would overwrite values set before), transformers 5 keeps them as plain attributes.
        # transformers 5's typed __init__ lists only its dataclass fields; it takes these as extra keywords.
        super().__init__(  # type: ignore[call-arg]
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            sep_token_id=sep_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        # transformers 5 may move `rope_theta` into `rope_parameters`; the model reads `rope_theta`.
        if getattr(self, "rope_theta", None) is None:
            self.rope_theta = rope_theta
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )


__all__ = ["YuanConfig"]
