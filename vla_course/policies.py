"""Policies behind one interface: ``policy.reset()`` then ``policy.act(frame) -> 6 joint targets``.

``frame`` uses LeRobot's keys (``observation.state``, ``observation.images.front``, ...,
``task``). Policies that predict action chunks keep their own queue of actions, so the control
loop never needs to know. ``make_policy(name, robot=...)`` is what ``vla-course --policy`` calls.
"""

from __future__ import annotations

import numpy as np


class ExpertPolicy:
    """The scripted IK expert. It is privileged: it reads the simulator's state, not the cameras."""

    cameras: tuple[str, ...] = ()  # needs no images, so evaluation can skip rendering

    def __init__(self, robot, noise_std: float = 0.0, mistake: str | None = None, recover: bool = True,
                 seed: int = 0):
        env = getattr(robot, "env", None)
        if env is None:
            raise ValueError("the scripted expert needs the simulator's privileged state: use the sim robot "
                             "(make_robot('sim')) and connect it first")
        from vla_course.sim.expert import ScriptedExpert

        self.expert = ScriptedExpert(env, noise_std=noise_std, mistake=mistake, recover=recover, seed=seed)

    def reset(self) -> None:
        self.expert.reset()

    def act(self, frame: dict) -> np.ndarray:
        return np.asarray(self.expert.act(frame), dtype=np.float32)


POLICIES = {"expert": ExpertPolicy}


def make_policy(name: str, robot=None, **kwargs):
    """Build a policy by name (``vla-course --policy NAME``)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](robot, **kwargs)
