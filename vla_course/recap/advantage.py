"""RECAP's advantages and the advantage-conditioned prompt (pi*0.6).

With the value function V (``vla_course.models.value``) the advantage of frame t is pi*0.6's post-training
form, an N-step estimate::

    A_t = r_t + r_{t+1} + ... + r_{t+N-1} + V(o_{t+N}) - V(o_t)

where the rewards are the normalised ones of :func:`~vla_course.recap.returns.mc_returns` (-1/Z per step, the
failure penalty at a failed episode's last frame, Z = max_steps + penalty) and V after an episode's end is 0.
(pi*0.6 pre-trains with the full return minus V, ``A_t = G_t - V(o_t)``: ``n=None`` here. The N-step form is
less noisy, because V's own estimate replaces the far future, and it is what post-training uses.)

Each frame is then labelled by a per-task threshold: the top ``positive_fraction`` (pi*0.6: about 30%) of the
task's advantages are "positive", the rest "negative"; expert corrections are always positive. The policy
trains with the label written after the instruction, ``"put the red cube in the bin advantage: positive"``,
and the label is dropped ``dropout`` of the time (so one model is also the unconditioned policy); at inference
it is always asked for "positive".
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

POSITIVE, NEGATIVE = "advantage: positive", "advantage: negative"


def normalised_rewards(steps_to_go, episode_success, max_steps: int, penalty: float | None = None) -> Tensor:
    """Per-frame rewards whose sum from frame t to the episode's end is ``mc_returns`` of frame t."""
    penalty = float(max_steps if penalty is None else penalty)
    togo = torch.as_tensor(steps_to_go, dtype=torch.long)
    ok = torch.as_tensor(episode_success, dtype=torch.bool)
    last = togo == 0
    r = torch.where(last, torch.where(ok, 0.0, -penalty), -1.0)
    return r / (max_steps + penalty)


def n_step_advantages(rewards, values, steps_to_go, n: int | None) -> Tensor:
    """A_t for frames in episode order (``steps_to_go`` counts down to 0 at each episode's last frame):
    the next ``n`` rewards plus ``V(o_{t+n})`` (0 past the end) minus ``V(o_t)``; ``n=None``: the whole
    rest of the episode, ``G_t - V(o_t)``."""
    r = torch.as_tensor(rewards, dtype=torch.float32)
    v = torch.as_tensor(values, dtype=torch.float32)
    togo = torch.as_tensor(steps_to_go, dtype=torch.long)
    if not (r.shape == v.shape == togo.shape):
        raise ValueError(f"rewards {tuple(r.shape)}, values {tuple(v.shape)} and steps_to_go {tuple(togo.shape)} "
                         "must have one entry per frame")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for the full return), got {n}")
    out = torch.empty_like(r)
    ends = torch.nonzero(togo == 0).flatten().tolist()
    start = 0
    for end in ends:  # one episode at a time: frames start..end
        rr, vv = r[start:end + 1], v[start:end + 1]
        csum = torch.cat([torch.zeros(1), rr.cumsum(0)])  # csum[k] = sum of the first k rewards
        length = end + 1 - start
        t = torch.arange(length)
        stop = torch.full_like(t, length) if n is None else (t + n).clamp(max=length)
        boot = torch.where(stop < length, vv[stop.clamp(max=length - 1)], torch.zeros(()))
        out[start:end + 1] = csum[stop] - csum[t] + boot - vv
        start = end + 1
    if start != len(r):
        raise ValueError("the last frame's steps_to_go is not 0: pass whole episodes, in order")
    return out


def advantage_threshold(advantages, positive_fraction: float = 0.3) -> float:
    """The value above which the top ``positive_fraction`` of ``advantages`` lie (pi*0.6: ~30% positive)."""
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}")
    return float(np.quantile(np.asarray(advantages, dtype=np.float64), 1.0 - positive_fraction))


def advantage_labels(advantages, threshold: float, corrections=None) -> Tensor:
    """True (positive) where ``A_t > threshold``, and always for expert corrections (``expert_in_control``)."""
    pos = torch.as_tensor(advantages, dtype=torch.float32) > threshold
    if corrections is not None:
        pos = pos | torch.as_tensor(corrections, dtype=torch.bool)
    return pos


def advantage_prompt(instruction: str, positive: bool | None) -> str:
    """The instruction with the advantage after it; ``None`` leaves it out (the dropped, unconditioned case)."""
    if positive is None:
        return instruction
    return f"{instruction} {POSITIVE if positive else NEGATIVE}"


def condition_on_advantage(dropout: float = 0.3):
    """A training-source transform: each row's ``task`` gets its ``advantage_positive`` label written after it,
    except a random ``dropout`` of the rows, which keep the bare instruction (pi*0.6 drops it 30% of the time).
    ``instruction`` keeps the bare instruction for the instruction keypoints: written into their query, the
    advantage words diluted it and the keypoints lost the named cube (notebook 08, "a bug the question found")."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    def transform(batch: dict, generator=None) -> dict:
        pos = torch.as_tensor(batch["advantage_positive"], dtype=torch.bool)
        drop = torch.rand(len(pos), generator=generator) < dropout
        batch["instruction"] = list(batch["task"])  # what the instruction keypoints read (models/vlm.py)
        batch["task"] = [advantage_prompt(t, None if d else bool(p))
                         for t, p, d in zip(batch["task"], pos.tolist(), drop.tolist())]
        return batch
    return transform


def asks_for_positive(metadata: dict) -> bool:
    """Whether a checkpoint, by its ``metadata.json``, is an advantage-conditioned RECAP policy, to be asked for
    ``POSITIVE`` at inference (the recipe's variant ``"recap"``). Its vocabulary cannot tell: ``pi0_base``'s
    already holds "advantage:", "positive" and "negative", so every fine-tune of it has them."""
    return metadata.get("config", {}).get("variant") == "recap"
