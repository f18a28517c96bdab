r"""A multi-expert transformer: several sets of weights, one attention.

pi0 is **one** transformer with **two** sets of weights. The VLM backbone
(PaliGemma's Gemma-2B) processes the prefix (images + text). The action
expert (a Gemma-300M) processes the suffix (state + noisy actions). In every
layer each expert has its own norms, Q/K/V/out projections and MLP. The two
meet in one place: their queries, keys and values are concatenated along the
sequence and go through **one** masked softmax attention::

        prefix tokens ──► backbone norm ─► Wq_b,Wk_b,Wv_b ─┐
                                                           ├─ concat ─► masked attention ─► split
        suffix tokens ──► expert   norm ─► Wq_a,Wk_a,Wv_a ─┘                  │
                                                          ┌─ Wo_b, MLP_b ◄────┤
                                                          └─ Wo_a, MLP_a ◄────┘

So the widths may differ (backbone 2048 and expert 1024 in pi0), but the
number of heads and the head dimension must match, because the tokens meet
inside attention.

**KV cache.** The mask stops the prefix from seeing the suffix, so the
prefix's keys and values never change while we denoise. We run the prefix
once, keep each layer's K and V (:class:`KVCache`), and then run only the
suffix against them at each of the 10 Euler steps. Text generation uses the
same cache, one token at a time.

**Knowledge insulation (KI).** With ``knowledge_insulation=True``, the queries of the
non-backbone experts see the backbone's keys and values through a
stop-gradient:

    logits_a = Q_a · [sg(K_b), K_a]ᵀ,     E_a = P_ab · sg(V_b) + P_aa · V_a

The forward pass is unchanged, but the action loss can no longer push
gradients into the backbone (Driess et al., 2025, §5.2). The backbone then
learns only from its own losses (text, FAST tokens), and the freshly
initialised expert cannot damage what the VLM knows.

Positions use RoPE, as Gemma does, with positions ``cumsum(pad_mask) - 1``
(openpi, :func:`positions_from_pad`), so padding takes up no position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Large negative logit for masked pairs (finite, so fully-masked padding rows give
# a uniform distribution instead of NaN, as openpi's -2.4e38 constant does).
MASK_VALUE = -1e9


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    """Gemma's RMSNorm: ``x / rms(x) * (1 + weight)``.

    ``rms(x) = sqrt(mean(x^2)) = ||x|| / sqrt(d)``. We write it with the vector
    norm because that takes fewer small ops, and on a CPU at batch 1 the number
    of ops is what costs time.
    """
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x * (((1.0 + weight) * math.sqrt(x.shape[-1])) / (norm + eps))


class RMSNorm(nn.Module):
    """:func:`rms_norm` with a learned ``weight`` that starts at zero (so the scale starts at 1)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


@dataclass
class ExpertConfig:
    """Sizes for one set of weights. ``num_heads`` and ``head_dim`` belong to the
    shared transformer (:func:`joint_forward` checks that the experts agree)."""

    width: int
    mlp_dim: int
    depth: int
    num_heads: int
    head_dim: int


class ExpertLayer(nn.Module):
    """One layer's weights for one expert: pre-norm, fused QKV, out-proj and a gated-GELU MLP (Gemma)."""

    def __init__(self, cfg: ExpertConfig):
        super().__init__()
        inner = cfg.num_heads * cfg.head_dim
        self.attn_norm = RMSNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * inner, bias=False)
        self.out = nn.Linear(inner, cfg.width, bias=False)
        self.mlp_norm = RMSNorm(cfg.width)
        self.gate_up = nn.Linear(cfg.width, 2 * cfg.mlp_dim, bias=False)
        self.down = nn.Linear(cfg.mlp_dim, cfg.width, bias=False)


class Expert(nn.Module):
    """A full stack of weights (``depth`` layers plus a final norm) for one kind of token."""

    def __init__(self, cfg: ExpertConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(ExpertLayer(cfg) for _ in range(cfg.depth))
        self.final_norm = RMSNorm(cfg.width)


class KVCache:
    """Per-layer keys and values of tokens already processed, each (B, heads, N, head_dim).

    The cache owns its ``pad_mask`` (B, N): which cached tokens are real. :func:`joint_forward` fills it in
    (the new tokens' pad mask appended to the old cache's), so a caller never has to. ``next_pos`` (B,) is
    the RoPE position the next token will get. For insulation, every cached token counts as a backbone
    (expert 0) token. (Insulation only matters for gradients, i.e. in training; pi0's sampler also caches
    the state token, which is harmless there.)
    """

    def __init__(self, keys: list[Tensor], values: list[Tensor], pad_mask: Tensor):
        self.keys, self.values, self.pad_mask = keys, values, pad_mask

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @property
    def next_pos(self) -> Tensor:
        return self.pad_mask.long().sum(-1)


def positions_from_pad(pad_mask: Tensor, offset: Tensor | int = 0) -> Tensor:
    """openpi's RoPE positions: ``cumsum(pad) - 1``, so padding takes up no position."""
    off = offset[:, None] if isinstance(offset, Tensor) else offset
    return (torch.cumsum(pad_mask.long(), 1) - 1).clamp(min=0) + off


def rope_cos_sin(positions: Tensor, head_dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables for rotary embeddings, each (B, 1, N, head_dim).

    Dimension pair (i, i + head_dim/2) is rotated by the angle ``pos * base^(-2i/head_dim)``.
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    ang = positions.float()[..., None] * inv_freq  # (B, N, hd/2)
    ang = torch.cat([ang, ang], -1)[:, None]
    return ang.cos(), ang.sin()


def _rotate_half_matrix(head_dim: int, device=None) -> Tensor:
    """P with ``x @ P == cat([-x2, x1])`` (x1, x2 the two halves of x): one matmul instead of three ops."""
    h = head_dim // 2
    p = torch.zeros(head_dim, head_dim, device=device)
    p[h:, :h] = -torch.eye(h)
    p[:h, h:] = torch.eye(h)
    return p


_ROT_CACHE: dict[tuple, Tensor] = {}


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding: rotate each pair ``(x1_i, x2_i)`` by its position's angle::

        [x1, x2] -> [x1 cos - x2 sin,  x2 cos + x1 sin]  =  x * cos + rotate_half(x) * sin
    """
    key = (x.shape[-1], x.device, x.dtype)
    if key not in _ROT_CACHE:
        with torch.inference_mode(False):  # a normal tensor, usable later with autograd too
            _ROT_CACHE[key] = _rotate_half_matrix(x.shape[-1], x.device).to(x.dtype)
    return x * cos + (x @ _ROT_CACHE[key]) * sin


def attention_bias(allowed: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Bool mask (B, Nq, Nk) -> additive bias (B, 1, Nq, Nk): 0 where allowed, MASK_VALUE elsewhere."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, MASK_VALUE)[:, None]


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def joint_forward(
    experts: list[Expert],
    inputs: list[Tensor | None],
    attn_mask: Tensor,
    positions: Tensor | None = None,
    kv_cache: KVCache | None = None,
    return_cache: bool = False,
    knowledge_insulation: bool = False,
    rope: tuple[Tensor, Tensor] | None = None,
    rope_base: float = 10_000.0,
    pad_mask: Tensor | None = None,
) -> tuple[list[Tensor | None], KVCache | None]:
    """Run token groups through their experts with one masked attention per layer.

    Args:
        experts: expert ``e`` processes ``inputs[e]``. Expert 0 is the backbone.
        inputs: one (B, N_e, width_e) tensor per expert, or None if that expert
            has no tokens in this call. The sequence is the concatenation in
            expert order.
        attn_mask: bool (B, N_new, N_cache + N_new), True = may attend. Its rows are the new
            tokens; its columns are the cached tokens, then the new ones. A float
            (B, 1, N_new, N_cache + N_new) from :func:`attention_bias` is used as is
            (precompute it once to save time in a loop).
        positions: long (B, N_new), the RoPE positions of the new tokens. It is not
            needed when ``rope`` (precomputed :func:`rope_cos_sin`) is given.
        kv_cache: keys/values of earlier tokens (e.g. the prefix). They are prepended.
        return_cache: if True, return a cache holding cached + new K/V, and their pad mask.
        knowledge_insulation: queries of experts 1.. see the backbone's (expert 0's, including all
            cached) keys/values through a stop-gradient.
        pad_mask: bool (B, N_new), which new tokens are real (default: all). It goes into the returned
            cache; the attention itself reads only ``attn_mask``.

    Returns:
        (outputs, cache): ``outputs[e]`` is the final-normed hidden states of
        ``inputs[e]`` (None where the input was None).
    """
    active = [e for e, x in enumerate(inputs) if x is not None]
    if not active:
        raise ValueError("joint_forward needs at least one non-empty input")
    heads, hd = experts[active[0]].cfg.num_heads, experts[active[0]].cfg.head_dim
    for e in active:
        if (experts[e].cfg.num_heads, experts[e].cfg.head_dim) != (heads, hd):
            raise ValueError("all experts must share num_heads and head_dim (their tokens meet in attention)")
    lengths = [inputs[e].shape[1] for e in active]
    bsz, n_new = inputs[active[0]].shape[0], sum(lengths)
    n_cache = 0 if kv_cache is None else kv_cache.length
    if attn_mask.dtype == torch.bool:
        if attn_mask.shape != (bsz, n_new, n_cache + n_new):
            raise ValueError(f"attn_mask must be {(bsz, n_new, n_cache + n_new)}, got {tuple(attn_mask.shape)}")
        attn_mask = attention_bias(attn_mask, inputs[active[0]].dtype)
    elif attn_mask.shape != (bsz, 1, n_new, n_cache + n_new):
        raise ValueError(f"attention bias must be {(bsz, 1, n_new, n_cache + n_new)}, got {tuple(attn_mask.shape)}")
    if rope is None:
        if positions is None:
            raise ValueError("give positions or a precomputed rope table")
        rope = rope_cos_sin(positions, hd, rope_base)
    cos, sin = rope

    # Insulation matters only if some non-backbone query may look at backbone keys.
    n_backbone_new = lengths[0] if active[0] == 0 else 0
    n_backbone_keys = n_cache + n_backbone_new
    split_rows = knowledge_insulation and n_backbone_keys > 0 and n_backbone_new < n_new

    hidden = {e: inputs[e] for e in active}
    new_keys, new_values = [], []
    # (Inside the loop we call F.linear / rms_norm on the weights instead of calling the modules.
    # It is the same maths; skipping the module-call overhead saves ~10% at batch 1 on a CPU.)
    for li in range(len(experts[active[0]].layers)):
        layers = {e: experts[e].layers[li] for e in active}
        qkvs = []
        for e in active:
            qkv = F.linear(rms_norm(hidden[e], layers[e].attn_norm.weight), layers[e].qkv.weight)  # own weights
            qkvs.append(qkv.view(bsz, -1, 3, heads, hd))  # (B, N_e, 3, heads, hd)
        qkv = qkvs[0] if len(qkvs) == 1 else torch.cat(qkvs, 1)  # all experts' tokens in one sequence
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, heads, N, hd)
        q, k = apply_rope(qkv[:2], cos, sin)  # rotate queries and keys together
        v = qkv[2]
        if kv_cache is not None:
            k = torch.cat([kv_cache.keys[li], k], 2)
            v = torch.cat([kv_cache.values[li], v], 2)
        if return_cache:
            new_keys.append(k), new_values.append(v)

        if split_rows:
            # Softmax is row-wise, so we may split the query rows: backbone rows see
            # the plain K/V; the other experts' rows see stop-gradient backbone K/V.
            b = n_backbone_new
            k_sg = torch.cat([k[:, :, :n_backbone_keys].detach(), k[:, :, n_backbone_keys:]], 2)
            v_sg = torch.cat([v[:, :, :n_backbone_keys].detach(), v[:, :, n_backbone_keys:]], 2)
            parts = [] if b == 0 else [_attend(q[:, :, :b], k, v, attn_mask[:, :, :b])]
            parts.append(_attend(q[:, :, b:], k_sg, v_sg, attn_mask[:, :, b:]))
            att = torch.cat(parts, 2)
        else:
            att = _attend(q, k, v, attn_mask)
        att = att.transpose(1, 2).reshape(bsz, n_new, heads * hd)

        start = 0
        for e, n in zip(active, lengths, strict=True):
            lay = layers[e]
            a = att if n == n_new else att[:, start:start + n]
            x = hidden[e] + F.linear(a, lay.out.weight)
            gate, up = F.linear(rms_norm(x, lay.mlp_norm.weight), lay.gate_up.weight).chunk(2, dim=-1)
            hidden[e] = x + F.linear(F.gelu(gate, approximate="tanh") * up, lay.down.weight)
            start += n

    outputs: list[Tensor | None] = [None] * len(inputs)
    for e in active:
        outputs[e] = experts[e].final_norm(hidden[e])
    cache = None
    if return_cache:
        new_pad = torch.ones(bsz, n_new, dtype=torch.bool, device=hidden[active[0]].device) if pad_mask is None \
            else pad_mask.bool()
        cache = KVCache(new_keys, new_values,
                        new_pad if kv_cache is None else torch.cat([kv_cache.pad_mask, new_pad], 1))
    return outputs, cache
