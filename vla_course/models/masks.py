r"""Block attention masks: who may look at whom.

pi0 runs one transformer over one sequence, ``[images, instruction | state | actions]``,
and decides what each token may see with a **block-causal** mask. openpi
(after big_vision) writes the layout as an ``ar_mask``, one integer per token:

* ``0``: same block as the previous token;
* ``1``: start a new block that earlier tokens cannot see.

Token ``i`` attends to token ``j`` iff ``cumsum(ar)[j] <= cumsum(ar)[i]`` and both
are real tokens (not padding). pi0's layout, with 4 prefix tokens (images +
text), 1 state token and H=3 actions::

    ar_mask = [0 0 0 0 | 1 | 1 0 0]          rows: query token, cols: key token

                 img img txt txt  st  a0  a1  a2
        img    [  #   #   #   #   .   .   .   . ]   prefix: bidirectional,
        img    [  #   #   #   #   .   .   .   . ]   never sees state/actions
        txt    [  #   #   #   #   .   .   .   . ]   (so it can be computed once
        txt    [  #   #   #   #   .   .   .   . ]    and cached)
        st     [  #   #   #   #   #   .   .   . ]   state: prefix + itself
        a0     [  #   #   #   #   #   #   #   # ]   actions: everything,
        a1     [  #   #   #   #   #   #   #   # ]   bidirectional among
        a2     [  #   #   #   #   #   #   #   # ]   themselves

The prefix never sees the suffix. So at inference the prefix's keys and
values are the same at every denoising step, and we compute them once (the
KV cache). The state has its own block and never sees the actions, so its
K/V can be cached too. openpi recomputes it at each step; ``Pi0.sample_actions``
caches it with the prefix.

An ``ar_mask`` can only say "see all earlier blocks". Some layouts need more.
In Knowledge Insulation, the action expert must **not** see the FAST tokens
that come before it. :class:`Block` therefore takes an optional ``sees=``
list of block names. :func:`block_mask` builds the general mask (``Pi0`` always
uses it), and :meth:`BlockLayout.ar_mask` gives the openpi encoding when one
exists (the tests check the two agree there).

    >>> print(ascii_mask(pi0_layout(prefix_len=4, chunk_size=3)))
         pre pre pre pre sta act act act
    pre [  #   #   #   #   .   .   .   . ]
    pre [  #   #   #   #   .   .   .   . ]
    pre [  #   #   #   #   .   .   .   . ]
    pre [  #   #   #   #   .   .   .   . ]
    sta [  #   #   #   #   #   .   .   . ]
    act [  #   #   #   #   #   #   #   # ]
    act [  #   #   #   #   #   #   #   # ]
    act [  #   #   #   #   #   #   #   # ]

The three layouts of the course's one VLA core (:func:`vla_layout`), each a list of blocks:

* ``"pi0"``: ``prefix | state | actions`` (above).
* ``"knowledge_insulation"`` (KI, Driess et al. 2025, App. B): the backbone also decodes the chunk as
  FAST tokens, causally, after the prefix; the action expert sees the prefix and itself, **not** the
  FAST tokens (it must not copy the discrete answer); nothing of the backbone sees the expert::

    >>> print(ascii_mask(ki_layout(prefix_len=2, fast_len=2, chunk_size=2)))
         pre pre fas fas sta act act
    pre [  #   #   .   .   .   .   . ]
    pre [  #   #   .   .   .   .   . ]
    fas [  #   #   #   .   .   .   . ]
    fas [  #   #   #   #   .   .   . ]
    sta [  #   #   .   .   #   .   . ]
    act [  #   #   .   .   #   #   # ]
    act [  #   #   .   .   #   #   # ]

* ``"subtask"`` (pi0.5): the backbone decodes the next subtask in words, causally; the action expert
  acts on it, so it sees the prefix *and* the subtask (an ``ar_mask`` layout)::

    >>> print(ascii_mask(subtask_layout(prefix_len=2, subtask_len=2, chunk_size=2)))
         pre pre sub sub sta act act
    pre [  #   #   .   .   .   .   . ]
    pre [  #   #   .   .   .   .   . ]
    sub [  #   #   #   .   .   .   . ]
    sub [  #   #   #   #   .   .   . ]
    sta [  #   #   #   #   #   .   . ]
    act [  #   #   #   #   #   #   # ]
    act [  #   #   #   #   #   #   # ]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def make_att_2d_masks(pad_masks: Tensor, ar_mask: Tensor) -> Tensor:
    """openpi/big_vision mask semantics. Returns a bool (B, N, N) mask, True = may attend.

    Args:
        pad_masks: bool (B, N), True for real tokens and False for padding.
        ar_mask: int/bool (B, N) or (N,). A 1 opens a new block that earlier tokens can't see.
    """
    if pad_masks.ndim != 2:
        raise ValueError(f"pad_masks must be (B, N), got shape {tuple(pad_masks.shape)}")
    ar_mask = torch.as_tensor(ar_mask, device=pad_masks.device)
    if ar_mask.ndim == 1:
        ar_mask = ar_mask[None].expand(pad_masks.shape[0], -1)
    if ar_mask.shape != pad_masks.shape:
        raise ValueError(f"ar_mask {tuple(ar_mask.shape)} and pad_masks {tuple(pad_masks.shape)} differ")
    block_id = torch.cumsum(ar_mask.long(), dim=1)  # (B, N): which block each token is in
    causal = block_id[:, None, :] <= block_id[:, :, None]  # [b, i, j]: block(j) <= block(i)
    real = pad_masks.bool()
    return causal & real[:, None, :] & real[:, :, None]


@dataclass(frozen=True)
class Block:
    """A run of ``length`` consecutive tokens that share a visibility rule.

    Args:
        name: label, e.g. ``"prefix"``, ``"state"``, ``"actions"``.
        length: number of tokens.
        causal: False means the tokens see each other both ways (bidirectional).
            True means each token sees itself and the tokens before it in this block.
        sees: names of the *earlier* blocks this block may attend to. ``None``
            (the default) means all earlier blocks, which is the ar_mask rule.
    """

    name: str
    length: int
    causal: bool = False
    sees: tuple[str, ...] | None = None


class BlockLayout:
    """An ordered list of :class:`Block` s covering a token sequence.

    It accepts ``Block`` objects or tuples ``(name, length)``,
    ``(name, length, "bidirectional" | "causal")`` and
    ``(name, length, kind, sees)``.
    """

    def __init__(self, blocks: Sequence[Block | tuple]):
        self.blocks: list[Block] = []
        for b in blocks:
            if not isinstance(b, Block):
                name, length, *rest = b
                kind = rest[0] if rest else "bidirectional"
                if kind not in ("bidirectional", "causal"):
                    raise ValueError(f"block kind must be 'bidirectional' or 'causal', got {kind!r}")
                sees = tuple(rest[1]) if len(rest) > 1 and rest[1] is not None else None
                b = Block(name, int(length), kind == "causal", sees)
            if b.length < 0:
                raise ValueError(f"block {b.name!r} has negative length")
            self.blocks.append(b)
        names = [b.name for b in self.blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"block names must be unique, got {names}")
        for i, b in enumerate(self.blocks):
            if b.sees is not None:
                unknown = set(b.sees) - set(names[:i])
                if unknown:
                    raise ValueError(f"block {b.name!r} sees {sorted(unknown)}, which are not earlier blocks")

    def __len__(self) -> int:
        return sum(b.length for b in self.blocks)

    def spans(self) -> dict[str, slice]:
        """Map each block name to its slice of the sequence."""
        out, start = {}, 0
        for b in self.blocks:
            out[b.name] = slice(start, start + b.length)
            start += b.length
        return out

    def labels(self) -> list[str]:
        """One label per token: the name of the block it belongs to."""
        return [b.name for b in self.blocks for _ in range(b.length)]

    @property
    def expressible_as_ar_mask(self) -> bool:
        return all(b.sees is None for b in self.blocks)

    def ar_mask(self) -> Tensor:
        """The openpi ``ar_mask`` (int64, shape (N,)) for this layout.

        A bidirectional block becomes ``[1, 0, 0, ...]`` and a causal block
        ``[1, 1, 1, ...]``. The very first token's value does not matter; we
        write 0 there, as openpi does for the prefix.
        """
        if not self.expressible_as_ar_mask:
            raise ValueError("this layout uses `sees=`; an ar_mask cannot express it, use block_mask()")
        ar: list[int] = []
        for b in self.blocks:
            if b.causal:
                ar += [1] * b.length  # every token opens its own block
            elif b.length:
                ar += [1] + [0] * (b.length - 1)  # one new block, shared by all its tokens
        if ar:
            ar[0] = 0
        return torch.tensor(ar, dtype=torch.long)

    def mask(self, pad_mask: Tensor | None = None) -> Tensor:
        """Bool attention mask, (N, N) or (B, N, N) when ``pad_mask`` (B, N) is given."""
        return block_mask(self, pad_mask)

    def __repr__(self) -> str:
        parts = ", ".join(f"{b.name}:{b.length}{'c' if b.causal else ''}" for b in self.blocks)
        return f"BlockLayout({parts})"


def block_mask(layout: BlockLayout | Sequence, pad_mask: Tensor | None = None) -> Tensor:
    """General block mask: True where query token i may attend to key token j.

    Rules: a block sees the earlier blocks it is allowed to see, and itself
    (fully, or causally). It never sees a later block. Padding (``pad_mask``
    False) neither sees nor is seen.
    """
    if not isinstance(layout, BlockLayout):
        layout = BlockLayout(layout)
    n = len(layout)
    spans = layout.spans()
    m = torch.zeros(n, n, dtype=torch.bool)
    for i, b in enumerate(layout.blocks):
        rows = spans[b.name]
        earlier = layout.blocks[:i] if b.sees is None else [x for x in layout.blocks[:i] if x.name in b.sees]
        for e in earlier:
            m[rows, spans[e.name]] = True
        own = torch.ones(b.length, b.length, dtype=torch.bool)
        m[rows, rows] = torch.tril(own) if b.causal else own
    if pad_mask is None:
        return m
    if pad_mask.ndim != 2 or pad_mask.shape[1] != n:
        raise ValueError(f"pad_mask must be (B, {n}), got {tuple(pad_mask.shape)}")
    real = pad_mask.bool()
    return m.to(pad_mask.device)[None] & real[:, None, :] & real[:, :, None]


def pi0_layout(prefix_len: int, chunk_size: int, state: bool = True) -> BlockLayout:
    """pi0: bidirectional prefix, state in its own block, bidirectional action chunk."""
    blocks = [("prefix", prefix_len)]
    if state:
        blocks.append(("state", 1))
    blocks.append(("actions", chunk_size))
    return BlockLayout(blocks)


def prefix_lm_layout(prefix_len: int, answer_len: int) -> BlockLayout:
    """PaliGemma's prefix-LM: bidirectional prefix (image + question), causal answer."""
    return BlockLayout([("prefix", prefix_len), ("answer", answer_len, "causal")])


def ki_layout(prefix_len: int, fast_len: int, chunk_size: int) -> BlockLayout:
    """Knowledge Insulation (App. B). The prefix is bidirectional. FAST tokens are
    causal and see the prefix. The state and actions see the prefix but **not** the
    FAST tokens, so the expert cannot copy the discrete answer."""
    return BlockLayout([
        ("prefix", prefix_len),
        ("fast", fast_len, "causal"),
        ("state", 1, "bidirectional", ("prefix",)),
        ("actions", chunk_size, "bidirectional", ("prefix", "state")),
    ])


def subtask_layout(prefix_len: int, subtask_len: int, chunk_size: int) -> BlockLayout:
    """pi0.5: the prefix, then the subtask words the backbone decodes (causal), then state and actions,
    which see everything before them (the subtask included)."""
    return BlockLayout([("prefix", prefix_len), ("subtask", subtask_len, "causal"), ("state", 1),
                        ("actions", chunk_size)])


# Layout name -> (the backbone's answer block, or None; whether the action expert sees that block).
LAYOUTS = {"pi0": (None, False), "knowledge_insulation": ("fast", False), "subtask": ("subtask", True)}


def vla_layout(kind: str, prefix_len: int, answer_len: int, chunk_size: int) -> BlockLayout:
    """The layout ``kind`` (a key of :data:`LAYOUTS`) of ``Pi0``'s sequence: prefix, the backbone's answer
    block (``answer_len`` tokens; 0 leaves it empty, e.g. at inference), state, actions."""
    if kind == "pi0":
        if answer_len:
            raise ValueError("the 'pi0' layout has no answer block; use 'subtask' or 'knowledge_insulation'")
        return pi0_layout(prefix_len, chunk_size)
    if kind == "knowledge_insulation":
        return ki_layout(prefix_len, answer_len, chunk_size)
    if kind == "subtask":
        return subtask_layout(prefix_len, answer_len, chunk_size)
    raise ValueError(f"unknown layout {kind!r}; use one of {sorted(LAYOUTS)}")


def ascii_mask(layout: BlockLayout | Sequence, pad_mask: Tensor | None = None, width: int = 3) -> str:
    """Draw a layout's mask: '#' = may attend, '.' = masked. Rows are queries and
    columns are keys. ``pad_mask`` (N,) may mark padding, shown as 'pad'."""
    if not isinstance(layout, BlockLayout):
        layout = BlockLayout(layout)
    labels = layout.labels()
    if pad_mask is not None:
        pad_mask = torch.as_tensor(pad_mask).bool().reshape(1, -1)
        labels = [lab if bool(p) else "pad" for lab, p in zip(labels, pad_mask[0], strict=True)]
        m = block_mask(layout, pad_mask)[0]
    else:
        m = block_mask(layout)
    short = [lab[:width] for lab in labels]
    lw = max([len(s) for s in short] + [1])
    head = " " * (lw + 2) + " ".join(s.rjust(width) for s in short)
    lines = [head]
    for i, s in enumerate(short):
        cells = " ".join(("#" if m[i, j] else ".").rjust(width) for j in range(len(short)))
        lines.append(f"{s.rjust(lw)} [{cells} ]")
    return "\n".join(lines)
