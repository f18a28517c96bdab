r"""FAST: action chunks as a few discrete tokens (Pertsch et al. 2025, "FAST: Efficient Action Tokenization").

Naive binning (``action_text.py``) writes a chunk of H steps x D joints as H*D words. A smooth motion wastes
most of them: consecutive actions barely differ. FAST compresses the chunk first, the way JPEG compresses an
image, then tokenises what is left::

    chunk (H, D), data units
      1. quantile normalisation, per dimension: the 1st / 99th percentiles -> -1 / +1
      2. DCT-II (orthonormal) along time, per dimension: H frequencies per joint
      3. scale and round: symbols = round(scale * coefficients)       (the only lossy step)
      4. flatten frequency-major: [f0 of every joint, f1 of every joint, ...]
      5. BPE over the integer symbols: frequent runs (the many zeros of high frequencies) merge into one token

A smooth chunk has its energy in the lowest few frequencies, so most symbols round to 0 and BPE folds them
into a handful of tokens. Decoding runs the steps backwards; it is exact but for step 3, whose error is at
most half a symbol per coefficient (``0.5 / scale`` in normalised units; the DCT is orthonormal, so the
per-joint RMS error over the chunk is bounded the same way).

BPE is HF ``tokenizers`` (as FAST itself uses): each integer symbol becomes one character, each chunk one
string, and a BPE model is trained on those strings. Decoding is **relaxed** (as lerobot's pi0-FAST): a token
list that is truncated, too long or holds invalid ids still decodes to an ``(H, D)`` chunk (missing
frequencies are zero, extra ones dropped, invalid ids skipped) and the repair is counted in
``decode_failures``. A decoder that writes tokens one by one may stop anywhere; the robot still gets a chunk.

    >>> import numpy as np
    >>> t = np.linspace(0, 1, 16)[:, None]
    >>> chunks = np.concatenate([np.sin(3 * t + p) * 40 for p in np.linspace(0, 3, 6)], 1)[None]  # (1, 16, 6)
    >>> tok = FASTTokenizer.fit(np.concatenate([chunks, -chunks]), scale=10, vocab_size=300)
    >>> tokens = tok.encode(chunks[0])
    >>> len(tokens) < 16 * 6, tok.decode(tokens).shape, tok.decode(tokens[:3]).shape, tok.decode_failures
    (True, (16, 6), (16, 6), 1)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import scipy.fft

DEFAULT_SCALE = 10.0  # the paper's default
DEFAULT_VOCAB_SIZE = 1024  # the paper's default
FAST_WORD = "fast_{}"  # FAST token k in a TinyVLM vocabulary
SYMBOL_BASE = 0x4E00  # symbol s becomes chr(SYMBOL_BASE + s - min_symbol): printable, no spaces or combining marks
MAX_ALPHABET = 0x9FFF - SYMBOL_BASE  # the CJK block that the characters come from
FORMAT = "vla_course.FASTTokenizer/1"


# ---- the transform (steps 1-4) ---------------------------------------------------------------
def dct(x, axis: int = -2) -> np.ndarray:
    """Orthonormal DCT-II along ``axis`` (time, for chunks (..., H, D)): row k of the matrix is
    ``c_k cos(pi (t + 1/2) k / H)`` with ``c_0 = sqrt(1/H)``, ``c_k = sqrt(2/H)``."""
    return scipy.fft.dct(np.asarray(x, dtype=np.float64), type=2, norm="ortho", axis=axis)


def idct(c, axis: int = -2) -> np.ndarray:
    """Inverse of :func:`dct` (the matrix is orthonormal, so its inverse is its transpose)."""
    return scipy.fft.idct(np.asarray(c, dtype=np.float64), type=2, norm="ortho", axis=axis)


def resample_actions(actions, factor: int) -> np.ndarray:
    """One episode's actions (T, D) at ``factor`` x the control rate: (factor * (T - 1) + 1, D), the same
    span of time. PCHIP interpolation: smooth where the motion is, no overshoot at the gripper's jumps."""
    from scipy.interpolate import PchipInterpolator

    a = np.asarray(actions, dtype=np.float64)
    t = np.arange(len(a), dtype=np.float64)
    return PchipInterpolator(t, a, axis=0)(np.arange(factor * (len(a) - 1) + 1) / factor).astype(np.float32)


def sliding_chunks(actions, horizon: int, stride: int = 1) -> np.ndarray:
    """Every chunk of ``horizon`` steps of one episode (T, D), starting each ``stride`` steps: (N, H, D)."""
    a = np.asarray(actions)
    starts = range(0, len(a) - horizon + 1, stride)
    return np.stack([a[s: s + horizon] for s in starts]) if len(starts) else np.zeros((0, horizon, a.shape[1]))


class FASTTokenizer:
    """Chunk (H, D) in data units <-> a short list of FAST token ids. Make one with :meth:`fit` or :meth:`load`.

    Attributes:
        low, high: (D,) the 1st / 99th percentiles of every dimension (mapped to -1 / +1).
        scale: coefficients are multiplied by it before rounding (larger: finer, more tokens).
        clip: normalised values are clipped to ``[-clip, clip]`` before the DCT, so every symbol lies in the
            alphabet ``[-max_symbol, max_symbol]`` (a bound, not a fit: ``scale * clip * sqrt(H)``).
        horizon, action_dim: the chunk shape it was fitted on (the default shape to decode to).
        bpe: the trained HF ``tokenizers.Tokenizer`` (None: steps 1-4 only, e.g. to measure the error of a scale;
            the error never depends on BPE, which is lossless).
        decode_failures: how many :meth:`decode` calls had to repair their input (counted, never raised).
        encode_clipped: how many normalised values :meth:`encode` has clipped to ``[-clip, clip]``.
    """

    def __init__(self, low, high, scale: float, bpe, horizon: int, action_dim: int, clip: float = 2.0,
                 metadata: dict | None = None):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != (action_dim,) or self.high.shape != (action_dim,):
            raise ValueError(f"low/high must have {action_dim} entries, got {self.low.shape}, {self.high.shape}")
        self.scale, self.clip = float(scale), float(clip)
        self.horizon, self.action_dim = int(horizon), int(action_dim)
        self.max_symbol = max_symbol(scale, horizon, clip)
        self.bpe = bpe
        self.metadata = dict(metadata or {})
        self._pieces = [] if bpe is None else [bpe.id_to_token(i) for i in range(bpe.get_vocab_size())]
        self.decode_failures = 0
        self.encode_clipped = 0

    # ---- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, chunks, scale: float = DEFAULT_SCALE, vocab_size: int = DEFAULT_VOCAB_SIZE, clip: float = 2.0,
            quantile: float = 0.01, metadata: dict | None = None) -> FASTTokenizer:
        """Fit on chunks (N, H, D) in the data's own units: the quantiles, then BPE on their symbols.

        ``vocab_size`` counts every token, the alphabet of single symbols included; it must be at least
        the alphabet (``alphabet_size(scale, H, clip)``), and BPE adds merges until it reaches it or no pair
        occurs twice (HF ``BpeTrainer``, ``min_frequency=2``, as FAST's own code).
        """
        from tokenizers import Tokenizer, models, trainers

        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.ndim != 3 or len(chunks) == 0:
            raise ValueError(f"chunks must be (N, H, D) with N >= 1, got {chunks.shape}")
        _, h, d = chunks.shape
        low, high = quantiles(chunks, quantile)
        n_alpha = alphabet_size(scale, h, clip)
        if n_alpha > min(vocab_size, MAX_ALPHABET):
            raise ValueError(f"scale {scale} on {h}-step chunks needs an alphabet of {n_alpha} symbols, more than "
                             f"vocab_size={vocab_size} (or {MAX_ALPHABET}); raise vocab_size or lower the scale")
        bpe = Tokenizer(models.BPE())
        alphabet = [chr(SYMBOL_BASE + i) for i in range(n_alpha)]  # every symbol, seen in the data or not
        trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), min_frequency=2, show_progress=False,
                                      special_tokens=[], initial_alphabet=alphabet)
        tok = cls(low, high, scale, None, h, d, clip, metadata)
        strings = [tok._to_string(s) for s in tok.symbols(chunks)]
        bpe.train_from_iterator(strings, trainer=trainer)
        tok.bpe = bpe
        tok._pieces = [bpe.id_to_token(i) for i in range(bpe.get_vocab_size())]
        tok.encode_clipped = 0
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    # ---- steps 1-4 ------------------------------------------------------------------------
    def normalize(self, chunks) -> np.ndarray:
        """Data units -> normalised: the 1st / 99th percentiles go to -1 / +1 (not clipped)."""
        return 2.0 * (np.asarray(chunks, dtype=np.float64) - self.low) / (self.high - self.low) - 1.0

    def unnormalize(self, x) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) + 1.0) / 2.0 * (self.high - self.low) + self.low

    def symbols(self, chunks) -> np.ndarray:
        """Chunk(s) (..., H, D) -> integer symbols (..., H*D), frequency-major (f0 of every joint first)."""
        x = self.normalize(chunks)
        if x.shape[-1] != self.action_dim:
            raise ValueError(f"chunks must end in {self.action_dim} action dimensions, got {x.shape}")
        clipped = np.clip(x, -self.clip, self.clip)
        self.encode_clipped += int((clipped != x).sum())
        s = np.around(dct(clipped, axis=-2) * self.scale).astype(np.int64)
        s = np.clip(s, -self.max_symbol, self.max_symbol)  # only another horizon than the fitted one can need it
        return s.reshape(*s.shape[:-2], -1)  # row-major over (frequency, joint)

    def from_symbols(self, symbols, horizon: int | None = None, action_dim: int | None = None) -> np.ndarray:
        """Integer symbols (..., H*D) -> chunk(s) (..., H, D) in data units (steps 4-1 backwards)."""
        h, d = horizon or self.horizon, action_dim or self.action_dim
        s = np.asarray(symbols, dtype=np.float64)
        coeffs = s.reshape(*s.shape[:-1], h, d) / self.scale
        return self.unnormalize(idct(coeffs, axis=-2)).astype(np.float32)

    # ---- step 5: BPE ---------------------------------------------------------------------------
    def _to_string(self, symbols) -> str:
        return "".join(chr(SYMBOL_BASE + int(v) + self.max_symbol) for v in symbols)

    def _to_symbols(self, piece: str) -> tuple[int, ...]:
        return tuple(ord(c) - SYMBOL_BASE - self.max_symbol for c in piece)

    def encode(self, chunk) -> list[int]:
        """Chunk (H, D) in data units -> FAST token ids."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2:
            raise ValueError(f"encode takes one chunk (H, {self.action_dim}), got shape {chunk.shape}")
        if self.bpe is None:
            raise RuntimeError("this FASTTokenizer has no BPE model; make one with FASTTokenizer.fit")
        return self.bpe.encode(self._to_string(self.symbols(chunk))).ids

    def decode(self, tokens, horizon: int | None = None, action_dim: int | None = None) -> np.ndarray:
        """FAST token ids -> chunk (H, D) in data units. Never raises on the tokens: invalid ids are skipped,
        missing symbols are 0 (the high frequencies), extra ones dropped; each repaired call adds one to
        ``decode_failures``."""
        h, d = int(horizon or self.horizon), int(action_dim or self.action_dim)
        if h < 1 or d != self.action_dim:
            raise ValueError(f"horizon must be >= 1 and action_dim {self.action_dim} (the fitted one), got {h}, {d}")
        ok, syms = True, []
        try:
            ids = list(np.asarray(tokens).reshape(-1)) if not isinstance(tokens, (list, tuple)) else list(tokens)
        except Exception:  # noqa: BLE001 (anything a decoder hands us)
            ids, ok = [], False
        for i in ids:
            try:
                piece = self._pieces[int(i)] if 0 <= int(i) < len(self._pieces) and int(i) == i else None
            except (TypeError, ValueError, OverflowError):
                piece = None
            if piece is None:
                ok = False
                continue
            syms.extend(self._to_symbols(piece))
        n = h * d
        if len(syms) != n:
            ok = False
            syms = (syms + [0] * n)[:n]
        if not ok:
            self.decode_failures += 1
        return self.from_symbols(np.array(syms, dtype=np.int64), h, d)

    def token_symbols(self, token: int) -> tuple[int, ...]:
        """The run of integer symbols that FAST token ``token`` stands for."""
        return self._to_symbols(self._pieces[token])

    def merges(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """BPE's merges in the order it learned them, as pairs of symbol runs: ``[((0,), (0,)), ...]``."""
        raw = json.loads(self.bpe.to_str())["model"]["merges"]
        pairs = [m.split(" ") if isinstance(m, str) else m for m in raw]
        return [(self._to_symbols(a), self._to_symbols(b)) for a, b in pairs]

    def words(self) -> list[str]:
        """The vocabulary to add to a VLM: one word per FAST token ("fast_0" ...)."""
        return [FAST_WORD.format(k) for k in range(self.vocab_size)]

    # ---- one JSON file ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write everything (quantiles, scale, BPE model, ``metadata`` e.g. the command that made it) to one JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        d = {"format": FORMAT, "scale": self.scale, "clip": self.clip, "horizon": self.horizon,
             "action_dim": self.action_dim, "vocab_size": self.vocab_size, "low": self.low.tolist(),
             "high": self.high.tolist(), **self.metadata, "bpe": json.loads(self.bpe.to_str())}
        path.write_text(json.dumps(d, indent=1, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FASTTokenizer:
        from tokenizers import Tokenizer

        path = Path(path)
        try:
            d = json.loads(path.read_text())
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {FORMAT!r}")
            keys = ("format", "scale", "clip", "horizon", "action_dim", "vocab_size", "low", "high", "bpe")
            meta = {k: v for k, v in d.items() if k not in keys}
            tok = cls(d["low"], d["high"], d["scale"], Tokenizer.from_str(json.dumps(d["bpe"])), d["horizon"],
                      d["action_dim"], d["clip"], meta)
        except Exception as e:  # noqa: BLE001 (a broken file of any kind gets the one message)
            raise ValueError(f"{path} is not a FAST tokenizer ({e}); re-make it with the command in "
                             "its 'command' field (see data/tokenizers/README.md)") from e
        if tok.vocab_size != d["vocab_size"]:
            raise ValueError(f"{path}: BPE has {tok.vocab_size} tokens, the file says {d['vocab_size']}")
        return tok

    def __repr__(self) -> str:
        return (f"FASTTokenizer(scale={self.scale:g}, vocab_size={self.vocab_size}, horizon={self.horizon}, "
                f"action_dim={self.action_dim})")


def quantiles(chunks, quantile: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """The ``quantile`` / ``1 - quantile`` values of every dimension of chunks (..., D): what maps to -1 / +1."""
    a = np.asarray(chunks, dtype=np.float64)
    flat = a.reshape(-1, a.shape[-1])
    low, high = np.quantile(flat, quantile, axis=0), np.quantile(flat, 1.0 - quantile, axis=0)
    return low, np.maximum(high, low + 1e-6)


def max_symbol(scale: float, horizon: int, clip: float = 2.0) -> int:
    """The largest |symbol| a chunk of normalised values in ``[-clip, clip]`` can give: ``scale * clip`` times the
    largest L1 norm of a row of the DCT-II matrix (the constant row's, ``sqrt(H)``: a chunk standing still at
    ``clip``)."""
    row_l1 = np.abs(dct(np.eye(int(horizon)), axis=0)).sum(1).max()
    return int(math.ceil(scale * clip * row_l1 - 1e-9))


def alphabet_size(scale: float, horizon: int, clip: float = 2.0) -> int:
    """How many single-symbol tokens the vocabulary starts with: ``-max_symbol .. max_symbol``."""
    return 2 * max_symbol(scale, horizon, clip) + 1


# ---- FAST tokens in a TinyVLM vocabulary --------------------------------------------------------
def add_fast_words(vlm, tokenizer: FASTTokenizer) -> list[int]:
    """Grow a VLM's vocabulary (and embedding) with "fast_0" .. "fast_{V-1}"; return their ids, in FAST order
    (``ids[k]`` is the vocabulary id of FAST token k). openpi instead reuses PaliGemma's last ids
    (``vocab - 1 - 128 - k``): our vocabulary can simply grow."""
    ids = vlm.tokenizer.add_words(tokenizer.words())
    vlm.resize_token_embeddings()
    return ids


def fast_answer_ids(tokenizer: FASTTokenizer, chunks, word_ids: list[int], pad_id: int = 0):
    """Chunks (B, H, D) -> ``(answer_ids (B, M) long, answer_pad (B, M) bool)``: each chunk's FAST tokens as
    vocabulary ids, right-padded with ``pad_id``; what ``Pi0`` reads as ``batch["answer_ids"]`` /
    ``batch["answer_pad"]`` for the Knowledge Insulation layout (it appends ``<eos>`` itself)."""
    import torch

    lut = np.asarray(word_ids, dtype=np.int64)
    rows = [lut[tokenizer.encode(c)] for c in np.asarray(chunks)]
    m = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), m), int(pad_id), dtype=torch.long)
    pad = torch.zeros(len(rows), m, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r)
        pad[i, : len(r)] = True
    return ids, pad


def fast_tokens_from_ids(ids, word_ids: list[int], eos_id: int | None = None) -> list[int]:
    """Vocabulary ids (what ``TinyVLM.generate`` wrote) -> FAST token ids, stopping at ``eos_id``. An id that is
    not a FAST word becomes -1, which :meth:`FASTTokenizer.decode` skips and counts."""
    back = {int(w): k for k, w in enumerate(word_ids)}
    out = []
    for i in np.asarray(ids).reshape(-1).tolist():
        if eos_id is not None and i == eos_id:
            break
        out.append(back.get(int(i), -1))
    return out
