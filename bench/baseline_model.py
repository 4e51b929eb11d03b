"""The baseline for benchmarks: Yuan 2.0 computed the way the public reference code computes it.

LFA as padded `Conv2d` on a (B, H, S, 1) layout with the reference's transposes
and its process-wide cuDNN flags, eager RMSNorm and rotary embeddings from a
cached table, SDPA attention, and cross-entropy on full float32 logits. Same
parameter names as `trainer.model`, so peft targets the same modules. Written
for this project from the architecture description; no reference code is copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)


class LocalizedFiltering(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(hidden, hidden // 2, (2, 1), padding=(1, 0))
        self.conv2 = nn.Conv2d(hidden // 2, hidden, (2, 1), padding=(1, 0))
        self.output_layernorm = RMSNorm(hidden, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The reference flips these process-wide flags on every call.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        b, s, h = x.shape
        seq_first = x.transpose(0, 1)
        inp = seq_first.reshape(s, 1, b, h).permute(2, 3, 0, 1)
        out1 = self.conv1(inp)[:, :, :s, :]
        out2 = self.conv2(out1)[:, :, :s, :].permute(2, 3, 0, 1).contiguous().view(s, b, h)
        return self.output_layernorm(out2 + seq_first).transpose(0, 1)


class Attention(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.n = cfg.num_attention_heads
        self.d = h // self.n
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)
        self.lf_gate = LocalizedFiltering(h, cfg.rms_norm_eps)
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, self.d, 2).float() / self.d))
        t = torch.arange(cfg.max_position_embeddings).float()
        emb = torch.cat((torch.outer(t, inv),) * 2, dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        v = self.v_proj(x).view(b, s, self.n, self.d).transpose(1, 2)
        z = self.lf_gate(x)
        qk = torch.cat([self.q_proj(z), self.k_proj(z)], dim=-1).view(b, s, self.n, 2 * self.d)
        q, k = (t.transpose(1, 2) for t in torch.chunk(qk, 2, dim=-1))
        cos, sin = self.cos[:s].to(x.dtype), self.sin[:s].to(x.dtype)
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, h))


class MLP(nn.Module):
    def __init__(self, h: int, f: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(h, f, bias=False)
        self.up_proj = nn.Linear(h, f, bias=False)
        self.down_proj = nn.Linear(f, h, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.gate_proj(x) * F.silu(self.up_proj(x)))


class Layer(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class BaselineYuan(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.config = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x)
        logits = self.lm_head(self.model.norm(x)).float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)
