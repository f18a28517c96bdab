r"""Actions as text: the naive way to turn a VLM into a VLA (RT-2, OpenVLA).

A VLM can only answer in words. So the first VLAs wrote actions *as words*: cut each action
dimension's range into ``N`` equal bins (RT-2 and OpenVLA use 256), give every bin a word of its
own, and train the VLM to answer "act_131 act_64 ..." to "put the red cube in the bin".

    value a in [low, high]  ->  bin b = floor((a - low) / (high - low) * N), clipped to 0..N-1
    bin b                   ->  value  low + (b + 0.5) * (high - low) / N      (the bin's centre)

Two costs follow, and chapter 01 measures both:

* **coarse**: a value comes back as its bin's centre, up to half a bin width away
  (the RMS error of a uniform quantiser is ``width / sqrt(12)``);
* **slow**: an action chunk of H steps x D joints is H*D words, and a decoder writes one word
  per forward pass. pi0 instead emits the whole chunk with a continuous action head.

    >>> tok = ActionTextTokenizer(low=[-90.0], high=[90.0], num_bins=256)
    >>> tok.encode(np.array([[0.0], [45.0]]))
    'act_128 act_192'
    >>> tok.decode('act_128 act_192').ravel().tolist()
    [0.3515625, 45.3515625]
"""

from __future__ import annotations

import numpy as np

BIN_WORD_PREFIX = "act_"


def bin_actions(actions, low, high, num_bins: int = 256) -> np.ndarray:
    """Uniform binning per dimension: values (..., D) -> integer bins (..., D) in ``0..num_bins-1``.

    Values outside ``[low, high]`` fall in the first or last bin.
    """
    a = np.asarray(actions, dtype=np.float64)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if np.any(high <= low):
        raise ValueError(f"every high must exceed its low, got low={low}, high={high}")
    bins = np.floor((a - low) / (high - low) * num_bins)
    return np.clip(bins, 0, num_bins - 1).astype(np.int64)


def unbin_actions(bins, low, high, num_bins: int = 256) -> np.ndarray:
    """Integer bins (..., D) -> the bins' centres (..., D), float32."""
    b = np.asarray(bins, dtype=np.float64)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return (low + (b + 0.5) * (high - low) / num_bins).astype(np.float32)


class ActionTextTokenizer:
    """Action chunk (H, D) <-> a sentence of H*D bin words ("act_0" ... "act_<N-1>").

    Args:
        low, high: per-dimension range (D,) mapped onto the bins.
        num_bins: bins (and words) per dimension; RT-2 and OpenVLA use 256.
    """

    def __init__(self, low, high, num_bins: int = 256):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape:
            raise ValueError(f"low {self.low.shape} and high {self.high.shape} differ in shape")
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins = int(num_bins)

    @classmethod
    def fit(cls, actions, num_bins: int = 256, quantile: float = 0.0) -> ActionTextTokenizer:
        """Range from data (..., D): min/max, or the ``quantile``/``1-quantile`` values (OpenVLA: 0.01)."""
        a = np.asarray(actions, dtype=np.float64).reshape(-1, np.shape(actions)[-1])
        low, high = np.quantile(a, quantile, axis=0), np.quantile(a, 1.0 - quantile, axis=0)
        high = np.maximum(high, low + 1e-6)
        return cls(low, high, num_bins)

    @property
    def action_dim(self) -> int:
        return len(self.low)

    @property
    def bin_width(self) -> np.ndarray:
        return (self.high - self.low) / self.num_bins

    def words(self) -> list[str]:
        """The vocabulary to add to a VLM: one word per bin (shared by all dimensions, as in RT-2)."""
        return [f"{BIN_WORD_PREFIX}{b}" for b in range(self.num_bins)]

    def tokens_per_chunk(self, chunk_size: int) -> int:
        """Words needed for one chunk: one per step per dimension."""
        return int(chunk_size) * self.action_dim

    def bin(self, actions) -> np.ndarray:
        return bin_actions(actions, self.low, self.high, self.num_bins)

    def unbin(self, bins) -> np.ndarray:
        return unbin_actions(bins, self.low, self.high, self.num_bins)

    def roundtrip(self, actions) -> np.ndarray:
        """What survives the trip through text: each value replaced by its bin's centre."""
        return self.unbin(self.bin(actions))

    def encode(self, chunk) -> str:
        """Chunk (H, D) -> "act_b00 act_b01 ... act_b(H-1)(D-1)" (time-major, like RT-2)."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[1] != self.action_dim:
            raise ValueError(f"chunk must be (H, {self.action_dim}), got {chunk.shape}")
        return " ".join(f"{BIN_WORD_PREFIX}{b}" for b in self.bin(chunk).reshape(-1))

    def decode(self, text: str) -> np.ndarray:
        """Text -> chunk (H, D). Non-bin words are an error (a VLM may write anything)."""
        bins = []
        for w in str(text).split():
            if not w.startswith(BIN_WORD_PREFIX) or not w[len(BIN_WORD_PREFIX):].isdigit():
                raise ValueError(f"{w!r} is not an action word "
                                 f"({BIN_WORD_PREFIX}0..{BIN_WORD_PREFIX}{self.num_bins - 1})")
            b = int(w[len(BIN_WORD_PREFIX):])
            if b >= self.num_bins:
                raise ValueError(f"{w!r} is out of range for {self.num_bins} bins")
            bins.append(b)
        if len(bins) % self.action_dim:
            raise ValueError(f"{len(bins)} action words is not a whole number of {self.action_dim}-joint steps")
        return self.unbin(np.array(bins).reshape(-1, self.action_dim))


def add_action_words(vlm, tokenizer: ActionTextTokenizer) -> list[int]:
    """Grow a VLM's vocabulary (and embedding) with the bin words; return their ids."""
    ids = vlm.tokenizer.add_words(tokenizer.words())
    vlm.resize_token_embeddings()
    return ids


def expert_action_chunks(num_episodes: int = 4, chunk_size: int = 16, seed: int = 0,
                         task: str = "pick_place") -> np.ndarray:
    """Action chunks (N, H, 6) from the scripted expert's episodes (no rendering, so fast).

    Every episode is cut into consecutive, non-overlapping chunks of ``chunk_size`` steps.
    """
    from vla_course.sim import make_env
    from vla_course.sim.expert import ScriptedExpert

    chunks = []
    env = make_env(task, seed=seed, cameras=())
    try:
        for ep in range(num_episodes):
            env.reset(seed=seed + ep)
            expert = ScriptedExpert(env)
            actions = []
            while True:
                a = expert.act()
                actions.append(a)
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    break
            actions = np.asarray(actions, dtype=np.float32)
            n = len(actions) // chunk_size
            chunks.append(actions[: n * chunk_size].reshape(n, chunk_size, -1))
    finally:
        env.close()
    return np.concatenate(chunks, 0)
