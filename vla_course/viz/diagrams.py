"""Static diagrams for notebooks 01 and 04: boxes, arrows and attention masks, drawn with matplotlib.

They render anywhere a PNG does (GitHub included) and draw only what they are given: the numbers on a
diagram (widths, token counts, parameters) are arguments, so a notebook passes what its model measures.

* :func:`vlm_to_vla`: a VLM, a VLA that writes actions as words (RT-2, OpenVLA), and a VLM plus an action
  head (pi0), side by side (notebook 01).
* :func:`two_experts_one_attention`: one layer of pi0's transformer: two sets of weights (backbone, action
  expert) whose queries, keys and values meet in one masked attention (notebook 04; the picture in
  ``vla_course/models/transformer.py``'s docstring).
* :func:`draw_attention_mask`: a boolean attention mask with its blocks labelled and, optionally, one
  query's row picked out (notebook 04's mask figures and explorer).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# One colour per kind of weights, the same in every diagram.
COLORS = {
    "input": "#eeeeee",
    "vision": "#d6e6f5",
    "backbone": "#9ecae1",
    "expert": "#fdae6b",
    "shared": "#d9c6ea",
    "output": "#e5f5e0",
    "words": "#fde0dd",
}
EDGE = "0.25"


def _box(ax, x, y, w, h, text, fc, fontsize=11, weight="normal", ec=EDGE, lw=1.2, ls="-"):
    """A rounded box centred at (x, y) with centred text."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=fc, ec=ec, lw=lw, ls=ls, zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight=weight, zorder=3)


def _arrow(ax, start, end, color="0.2", lw=1.6, style="-|>", ls="-", text=None, fontsize=10, rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=16, lw=lw, color=color, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", zorder=1, shrinkA=2, shrinkB=2))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.1, (start[1] + end[1]) / 2, text, fontsize=fontsize, color=color,
                va="center", ha="left", zorder=3)


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, (int, np.integer)) else str(n)


def vlm_to_vla(*, vlm_params=None, expert_params=None, n_words: int = 96, chunk: tuple[int, int] = (16, 6),
               flow_steps: int = 10, question: str = "is the red cube in the bin?", answer: str = "no",
               instruction: str = "put the red cube in the bin", figsize=(15, 6.6)):
    """Three columns: a VLM answering in words; a VLA writing its action chunk as ``n_words`` bin words, one
    decoder pass each (RT-2, OpenVLA); and pi0's VLM + action expert, which turns noise into a ``chunk``
    (H, D) of real numbers in ``flow_steps`` passes of the expert. ``vlm_params`` and ``expert_params``
    (numbers or strings) are written on the boxes when given. Returns the figure."""
    fig, ax = plt.subplots(figsize=figsize)
    h_, d_ = chunk
    vlm_note = f"the VLM: {_fmt(vlm_params)} parameters" if vlm_params is not None else ""
    exp_note = f"the VLM + {_fmt(expert_params)} new parameters" if expert_params is not None else ""
    cols = [1.0, 11.0, 21.0]  # left edge of each column; each is 9 wide
    titles = ["a VLM: sees and talks", "a VLA, actions as words\n(RT-2, OpenVLA)",
              "a VLA = VLM + action head\n(pi0)"]
    for x0, title, note in zip(cols, titles, [vlm_note, vlm_note, exp_note]):
        ax.text(x0 + 4.5, 10.6, title, ha="center", va="center", fontsize=13, weight="bold")
        if note:
            ax.text(x0 + 4.5, 9.75, note, ha="center", va="center", fontsize=10.5, color="0.3")

    # --- 1 and 2: the same VLM, asked a question / asked for an action ---------------------------------
    for k, x0 in enumerate(cols[:2]):
        prompt = f"'{question}'" if k == 0 else f"'{instruction}'"
        _box(ax, x0 + 2.2, 0.9, 4.0, 1.0, "front + wrist\nimages", COLORS["input"], 10.5)
        _box(ax, x0 + 6.8, 0.9, 4.0, 1.0, textwrap.fill(prompt, 24), COLORS["input"], 9.5)
        _box(ax, x0 + 2.2, 2.6, 4.0, 1.0, "image encoder\n-> image tokens", COLORS["vision"], 10.5)
        _box(ax, x0 + 6.8, 2.6, 4.0, 1.0, "word embeddings", COLORS["vision"], 10.5)
        _box(ax, x0 + 4.5, 4.8, 8.6, 1.7, "transformer backbone (VLM weights)\n[ image tokens | words | answer ]",
             COLORS["backbone"], 11)
        for xa in (2.2, 6.8):
            _arrow(ax, (x0 + xa, 1.4), (x0 + xa, 2.1))
            _arrow(ax, (x0 + xa, 3.1), (x0 + xa, 3.95))
        _arrow(ax, (x0 + 4.5, 5.65), (x0 + 4.5, 6.45))
        if k == 0:
            _box(ax, x0 + 4.5, 7.0, 6.0, 1.0, "LM head: one word per pass", COLORS["words"], 11)
            _arrow(ax, (x0 + 4.5, 7.5), (x0 + 4.5, 8.25))
            _box(ax, x0 + 4.5, 8.8, 6.0, 1.0, textwrap.fill(f"answer: '{answer}'", 40), COLORS["output"], 11)
        else:
            _box(ax, x0 + 4.5, 7.0, 7.0, 1.0, "LM head, only the bin words allowed\n(act_0 ... act_255)",
                 COLORS["words"], 10.5)
            _arrow(ax, (x0 + 4.5, 7.5), (x0 + 4.5, 8.25))
            _box(ax, x0 + 4.5, 8.8, 7.6, 1.1, f"{n_words} words = {h_} x {d_} numbers\n"
                 f"{n_words} decoder passes, one after another", COLORS["output"], 10.5)
            _arrow(ax, (x0 + 8.3, 8.4), (x0 + 8.6, 5.4), color="tab:red", rad=-0.35, lw=1.3)
            ax.text(x0 + 9.15, 6.9, "each word\nfed back", fontsize=9.5, color="tab:red", ha="left", va="center")

    # --- 3: pi0 -------------------------------------------------------------------------------------------
    x0 = cols[2]
    _box(ax, x0 + 1.25, 0.9, 2.3, 1.0, "images", COLORS["input"], 10.5)
    _box(ax, x0 + 3.75, 0.9, 2.3, 1.0, "instruction", COLORS["input"], 10.5)
    _box(ax, x0 + 7.7, 0.9, 3.0, 1.0, "state + noisy\nchunk x_t, time t", COLORS["input"], 10)
    _box(ax, x0 + 2.5, 2.6, 4.8, 1.0, "image encoder,\nword embeddings", COLORS["vision"], 10.5)
    _arrow(ax, (x0 + 1.25, 1.4), (x0 + 1.25, 2.1))
    _arrow(ax, (x0 + 3.75, 1.4), (x0 + 3.75, 2.1))
    _box(ax, x0 + 2.5, 4.8, 4.6, 1.7, "backbone\n(the VLM's weights)", COLORS["backbone"], 10.5)
    _box(ax, x0 + 7.7, 4.8, 3.2, 1.7, "action\nexpert\n(new weights)", COLORS["expert"], 10.5)
    _arrow(ax, (x0 + 2.5, 3.1), (x0 + 2.5, 3.95))
    _arrow(ax, (x0 + 7.7, 1.4), (x0 + 7.7, 3.95))
    _arrow(ax, (x0 + 4.85, 5.0), (x0 + 6.05, 5.0), style="<|-|>", color="tab:purple", lw=2.2)
    ax.text(x0 + 6.1, 3.5, "shared attention\nin every layer", ha="center", va="center", fontsize=9.5,
            color="tab:purple")
    _arrow(ax, (x0 + 7.7, 5.65), (x0 + 7.7, 6.45))
    _box(ax, x0 + 6.6, 7.0, 5.2, 1.0, "velocity v -> Euler step\n(flow matching)", COLORS["expert"], 10.5)
    _arrow(ax, (x0 + 6.6, 7.5), (x0 + 6.6, 8.25))
    _box(ax, x0 + 4.9, 8.8, 7.6, 1.1, f"a {h_} x {d_} chunk of real numbers\n{flow_steps} passes of the expert, "
         "all actions at once", COLORS["output"], 10.5)
    _arrow(ax, (x0 + 9.25, 7.0), (x0 + 9.25, 1.45), color="tab:orange", rad=0.0, lw=1.3, ls="--")
    ax.text(x0 + 9.4, 7.7, f"x {flow_steps}", fontsize=10.5, color="tab:orange", ha="left", va="center")
    ax.text(x0 + 2.4, 6.4, "prefix: run once\n(the KV cache)", ha="center", va="center", fontsize=9.5, color="0.3")

    ax.set_xlim(0, 31.5)
    ax.set_ylim(0, 11.2)
    ax.axis("off")
    fig.tight_layout()
    return fig


def two_experts_one_attention(*, n_prefix: int, n_suffix: int, backbone_width: int, expert_width: int,
                              num_heads: int, head_dim: int, depth: int, backbone_mlp: int | None = None,
                              expert_mlp: int | None = None, knowledge_insulation: bool = False, figsize=(15, 6.2)):
    """One layer of pi0's transformer, the picture of ``transformer.py``'s docstring, with the given sizes.

    The prefix (``n_prefix`` tokens, ``backbone_width`` wide) goes through the backbone's norm and Q/K/V
    weights, the suffix (state + actions, ``n_suffix`` tokens, ``expert_width`` wide) through the action
    expert's; their queries, keys and values are concatenated along the sequence into one masked attention
    over ``n_prefix + n_suffix`` tokens, then split again, each part into its own output projection and MLP.
    ``knowledge_insulation`` draws the stop-gradient on the backbone's keys and values. Returns the figure."""
    fig, ax = plt.subplots(figsize=figsize)
    n = n_prefix + n_suffix
    yb, ye = 5.0, 1.6  # the backbone's row and the expert's
    rows = [(yb, "backbone", "prefix", n_prefix, backbone_width, "b", backbone_mlp),
            (ye, "expert", "suffix", n_suffix, expert_width, "a", expert_mlp)]
    for y, kind, part, count, width, tag, mlp in rows:
        who = "images + instruction" if part == "prefix" else "state + noisy actions"
        _box(ax, 1.7, y, 3.0, 1.3, f"{part} tokens\n{who}\n{count} x {width}", COLORS["input"], 10.5)
        _box(ax, 4.9, y, 2.2, 1.3, f"{kind}\nRMSNorm", COLORS[kind], 10.5)
        _box(ax, 8.0, y, 2.8, 1.3, f"W_q{tag}, W_k{tag}, W_v{tag}\n{width} -> {num_heads} x {head_dim}",
             COLORS[kind], 10.5)
        _box(ax, 15.7, y, 2.6, 1.3, f"W_o{tag}\n{num_heads * head_dim} -> {width}", COLORS[kind], 10.5)
        mlp_txt = f"MLP_{tag}\n{width} -> {mlp} -> {width}" if mlp else f"MLP_{tag}"
        _box(ax, 18.9, y, 2.8, 1.3, mlp_txt, COLORS[kind], 10.5)
        _box(ax, 21.9, y, 2.0, 1.3, f"{part}\nout", COLORS["input"], 10.5)
        for a, b in ((3.2, 3.8), (6.0, 6.6), (9.4, 10.2), (13.8, 14.4), (17.0, 17.5), (20.3, 20.9)):
            _arrow(ax, (a, y), (b, y))
    # the one shared attention
    _box(ax, 12.0, (yb + ye) / 2, 3.6, yb - ye + 1.3,
         f"concat\n{n_prefix} + {n_suffix} = {n} tokens\n\none masked attention\nsoftmax(Q·Kᵀ/√d + mask)·V\n"
         f"(who sees whom: the mask)\n\nsplit\n{n_prefix} | {n_suffix}", COLORS["shared"], 10.5)
    if knowledge_insulation:
        ax.text(9.8, yb + 0.9, "stop-gradient\non K_b, V_b", ha="center", fontsize=9.5, color="tab:red")
    # what must match, what may differ
    ax.text(11.6, 0.0, f"x {depth} layers.  Widths may differ (backbone {backbone_width}, expert {expert_width}); "
            f"heads and head dim must match ({num_heads} x {head_dim}): the tokens meet inside attention.",
            ha="center", va="center", fontsize=11)
    ax.text(11.6, -0.55, "At inference the prefix never sees the suffix, so its K and V are computed once and cached "
            "(the KV cache). Not drawn: the residual connections and the norm before each MLP.",
            ha="center", va="center", fontsize=10, color="0.3")
    handles = [plt.Rectangle((0, 0), 1, 1, fc=COLORS[k], ec=EDGE) for k in ("backbone", "expert", "shared")]
    ax.legend(handles, ["backbone weights (the VLM's)", "action expert weights (new)", "shared by both"],
              loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=11, frameon=False)
    ax.set_xlim(0, 23.2)
    ax.set_ylim(-0.9, 6.9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def draw_attention_mask(ax, mask, blocks: Sequence[tuple[str, int]], *, query: int | None = None,
                        query_label: str | None = None, title: str | None = None, fontsize: float = 11,
                        boundaries: Sequence[int] | None = None) -> int | None:
    """Draw a boolean mask (N, N) (rows: queries, columns: keys; dark = may attend) on ``ax``.

    ``blocks`` are ``(name, length)`` in sequence order (lengths sum to N): each is labelled at its centre and
    separated by a line (``boundaries`` adds more lines, e.g. between the two cameras inside a prefix).
    ``query`` (a row index) is picked out, and the title says how many tokens it sees; ``query_label`` names
    it there. Returns that count, or None without a query."""
    mask = np.asarray(mask, dtype=bool)
    n = mask.shape[0]
    if mask.shape != (n, n):
        raise ValueError(f"mask must be square, got {mask.shape}")
    lengths = [int(length) for _, length in blocks]
    if sum(lengths) != n:
        raise ValueError(f"block lengths sum to {sum(lengths)}, the mask has {n} tokens")
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest")
    edges = np.cumsum(lengths)[:-1]
    for b in sorted(set(edges.tolist()) | set(boundaries or ())):
        ax.axhline(b - 0.5, color="tab:red", lw=1.0)
        ax.axvline(b - 0.5, color="tab:red", lw=1.0)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    centres = [s + (length - 1) / 2 for s, length in zip(starts, lengths) if length]
    names = [name for name, length in blocks if length]
    ax.set_xticks(centres, names, fontsize=fontsize, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(centres, names, fontsize=fontsize)
    ax.set_xlabel("key (is looked at)", fontsize=fontsize)
    ax.set_ylabel("query (looks)", fontsize=fontsize)
    seen = None
    lines = [title] if title else []
    if query is not None:
        seen = int(mask[query].sum())
        ax.axhline(query, color="tab:orange", lw=3, alpha=0.75)
        name = query_label if query_label is not None else f"token {query}"
        lines.append(f"query {name!r}: sees {seen} of {n} tokens")
    if lines:
        ax.set_title("\n".join(lines), fontsize=fontsize)
    return seen
