"""RECAP's rewards and returns (pi*0.6), from the labels every recording carries.

The reward is -1 per step until the task is done, 0 at the success frame, and a large negative ``penalty``
when an episode ends in failure (a timeout or a give-up). The Monte-Carlo return of frame t is then

    success:  G_t = -(steps to go)                 (0 at the success frame)
    failure:  G_t = -(steps to go) - penalty

and it is normalised *per task* by the largest it can be, ``max_steps + penalty``, so that every return lies
in [-1, 0]: -1 is "as far from success as this task gets", 0 is "done". pi*0.6 normalises by the task's
maximum episode length the same way (its values live in (-1, 0)). The default penalty is one maximum episode
length: a failure is worth as much as the slowest possible success, and then that much again.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mc_returns(steps_to_go, episode_success, max_steps: int, penalty: float | None = None) -> Tensor:
    """Normalised Monte-Carlo returns (N,) in [-1, 0] from per-frame ``steps_to_go`` and ``episode_success``
    (``ChunkDataset.labels``). ``max_steps``: the task's maximum episode length; ``penalty``: the failure
    penalty in steps (default ``max_steps``)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    penalty = float(max_steps if penalty is None else penalty)
    if penalty < 0:
        raise ValueError(f"penalty must be >= 0 (a failure costs), got {penalty}")
    togo = torch.as_tensor(steps_to_go, dtype=torch.float32)
    ok = torch.as_tensor(episode_success, dtype=torch.bool)
    if togo.shape != ok.shape:
        raise ValueError(f"steps_to_go {tuple(togo.shape)} and episode_success {tuple(ok.shape)} differ in shape")
    if bool((togo < 0).any()) or bool((togo > max_steps).any()):
        raise ValueError(f"steps_to_go must lie in 0..max_steps={max_steps}; is max_steps the task's episode limit?")
    g = -togo - torch.where(ok, 0.0, penalty)
    return g / (max_steps + penalty)


def steps_to_go_from_value(value, max_steps: int, penalty: float | None = None) -> Tensor:
    """The inverse on a successful trajectory: how many steps a normalised value means (for plots)."""
    penalty = float(max_steps if penalty is None else penalty)
    return -torch.as_tensor(value, dtype=torch.float32) * (max_steps + penalty)
