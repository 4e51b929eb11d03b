"""An independent Yuan 2.0 forward pass, written from the architecture description.

It follows the public reference's computation literally (LFA as padded Conv2d on a
(B, H, S, 1) layout, explicit causal softmax in float32, the stacked q/k split per
head) and shares no code with `trainer.model`, so a parity test against it checks
our port rather than itself. It reads a plain state dict in HF Yuan2 names.

Like the public reference's `LlamaModel.forward`, it builds its attention mask
from the `<eod>` positions (`cfg["eod_token"]`) when training or when
`cfg["reset_position_ids"]` is set, and that mask blocks attention across each
`<eod>` only under `cfg["reset_attention_mask"]`; positions stay 0..S-1 and the
LFA filters the whole row either way. The flags are read without defaults, as
the reference reads them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def _lfa(x: torch.Tensor, sd: dict, p: str, eps: float) -> torch.Tensor:
    s = x.shape[1]
    inp = x.permute(0, 2, 1).unsqueeze(-1)  # (B, H, S, 1)
    o1 = F.conv2d(inp, sd[p + "conv1.weight"], sd[p + "conv1.bias"], padding=(1, 0))[:, :, :s]
    o2 = F.conv2d(o1, sd[p + "conv2.weight"], sd[p + "conv2.bias"], padding=(1, 0))[:, :, :s]
    y = o2.squeeze(-1).permute(0, 2, 1)
    return _rms(y + x, sd[p + "output_layernorm.weight"], eps)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    # x: (B, N, S, D); positions 0..S-1; "rotate half" convention.
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    t = torch.arange(x.shape[2]).float()
    freqs = torch.einsum("i,j->ij", t, inv)
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat((-x2, x1), -1) * sin


def _attention_bias(cfg: dict, input_ids: torch.Tensor, training: bool) -> torch.Tensor:
    """(B, 1, S, S) additive mask: causal, and cut at each `<eod>` when the flags say so."""
    b, s = input_ids.shape
    keep = torch.ones(s, s).tril().repeat(b, 1, 1, 1)
    if (training or cfg["reset_position_ids"]) and cfg["reset_attention_mask"]:
        for row in range(b):
            for i in (input_ids[row] == cfg["eod_token"]).nonzero().flatten().tolist():
                # Tokens after the <eod> at i see nothing at or before i.
                keep[row, 0, i + 1:, : i + 1] = 0
    return torch.zeros(b, 1, s, s).masked_fill(keep == 0, float("-inf"))


def reference_logits(sd: dict, cfg: dict, input_ids: torch.Tensor, *, training: bool = False) -> torch.Tensor:
    """Logits (B, S, V) of a Yuan2 model given as an HF-named state dict.

    `training` stands for the reference module's `self.training` (which also
    decides whether `<eod>` cuts attention); no dropout is modelled.
    """
    h, n = cfg["hidden_size"], cfg["num_attention_heads"]
    d = h // n
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    x = sd["model.embed_tokens.weight"][input_ids]
    b, s, _ = x.shape
    bias = _attention_bias(cfg, input_ids, training)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        res = x
        hs = _rms(x, sd[p + "input_layernorm.weight"], eps)
        v = (hs @ sd[p + "self_attn.v_proj.weight"].T).view(b, s, n, d).transpose(1, 2)
        z = _lfa(hs, sd, p + "self_attn.lf_gate.", eps)
        qk_w = torch.cat((sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]), 0)
        qk = (z @ qk_w.T).view(b, s, n, 2 * d)
        q, k = qk[..., :d].transpose(1, 2), qk[..., d:].transpose(1, 2)
        q, k = _rope(q, theta), _rope(k, theta)
        att = (q @ k.transpose(2, 3)) / math.sqrt(d)
        att = torch.softmax((att + bias).float(), -1).to(q.dtype)
        o = (att @ v).transpose(1, 2).reshape(b, s, h) @ sd[p + "self_attn.o_proj.weight"].T
        x = res + o
        res = x
        hs = _rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate = hs @ sd[p + "mlp.gate_proj.weight"].T
        up = hs @ sd[p + "mlp.up_proj.weight"].T
        x = res + (gate * F.silu(up)) @ sd[p + "mlp.down_proj.weight"].T
    x = _rms(x, sd["model.norm.weight"], eps)
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return x @ head.T
