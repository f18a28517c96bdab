"""Policies behind one interface: ``policy.reset()`` then ``policy.act(frame) -> 6 joint targets``.

``frame`` uses LeRobot's keys (``observation.state``, ``observation.images.front``, ...,
``task``). Policies that predict action chunks keep their own queue of actions, so the control
loop never needs to know. ``make_policy(name, robot=...)`` is what ``vla-course --policy`` calls.
"""

from __future__ import annotations

import numpy as np


class ExpertPolicy:
    """The scripted IK expert. It is privileged: it reads the simulator's state, not the cameras.

    ``subtask`` says, in words, what it is doing now ("pick up the red cube", "put it in the bin"): the
    recorder labels every frame with it (pi0.5's subtask labels)."""

    cameras: tuple[str, ...] = ()  # needs no images, so evaluation can skip rendering
    expert_in_control = True  # (a recording label: who chose this action)

    def __init__(self, robot, noise_std: float = 0.0, mistake: str | None = None, recover: bool = True,
                 seed: int = 0, detour: float = 0.0):
        env = getattr(robot, "env", None)
        if env is None:
            raise ValueError("the scripted expert needs the simulator's privileged state: use the sim robot "
                             "(make_robot('sim')) and connect it first")
        from vla_course.sim.expert import ScriptedExpert

        self.expert = ScriptedExpert(env, noise_std=noise_std, mistake=mistake, recover=recover, seed=seed,
                                     detour=detour)

    def reset(self) -> None:
        self.expert.reset()

    @property
    def subtask(self) -> str:
        return self.expert.subtask

    def act(self, frame: dict) -> np.ndarray:
        return np.asarray(self.expert.act(frame), dtype=np.float32)


class InterventionPolicy:
    """A learner drives until ``takeover_step``, then the scripted expert takes over: an *expert intervention*.

    pi*0.6's RECAP data holds such corrections (an operator takes over when the policy goes wrong), and so
    does HG-DAgger. The expert re-plans from wherever the learner left the arm, so the actions it records
    show how to get back on track *from the learner's own mistakes*, states that clean demonstrations never
    visit. ``expert_in_control`` tells a recorder whose action the last one was (it keeps only the expert's).
    """

    def __init__(self, robot, learner, takeover_step: int, seed: int = 0, **expert_kwargs):
        if takeover_step < 0:
            raise ValueError(f"takeover_step must be >= 0 (control steps the learner drives), got {takeover_step}")
        self.learner = learner
        self.expert = ExpertPolicy(robot, seed=seed, **expert_kwargs)
        self.takeover_step = int(takeover_step)
        self.cameras = getattr(learner, "cameras", ("front", "wrist"))
        self.steps, self.expert_in_control = 0, False

    def reset(self) -> None:
        self.learner.reset()
        self.steps, self.expert_in_control = 0, False

    @property
    def subtask(self) -> str:
        """The expert's subtask once it has taken over; the learner's, if it says one, before."""
        return self.expert.subtask if self.expert_in_control else str(getattr(self.learner, "subtask", "") or "")

    def act(self, frame: dict) -> np.ndarray:
        if not self.expert_in_control and self.steps >= self.takeover_step:
            self.expert.reset()  # plans from the arm's current pose, not from the episode's start
            self.expert_in_control = True
        self.steps += 1
        return np.asarray((self.expert if self.expert_in_control else self.learner).act(frame), dtype=np.float32)


class CorrectionPolicy:
    """A learner drives; the scripted expert takes over when a stated rule says it has strayed (RECAP's
    corrections, a stand-in for a person at the teleoperation controls). The rules, checked every step on the
    sim's state before the learner acts:

    * ``no_grasp_by``: the named cube is not in the gripper by this control step (reaching too long, regrasp loops);
    * the wrong cube is in the gripper;
    * the named cube was held and has been let go of away from the bin (dropped; a cube let go of above the
      bin, as the expert does, is not).

    Once the expert has taken over it keeps control to the end of the episode (``expert_in_control``; the
    recording labels each frame with it). ``reason`` says which rule fired (None if none did).
    """

    RULES = ("no grasp by step", "wrong cube held", "cube dropped")

    def __init__(self, robot, learner, no_grasp_by: int = 120, seed: int = 0, **expert_kwargs):
        if no_grasp_by < 1:
            raise ValueError(f"no_grasp_by must be >= 1 (control steps), got {no_grasp_by}")
        self.env = getattr(robot, "env", None)
        if self.env is None:
            raise ValueError("corrections need the simulator's state to judge the learner: use make_robot('sim')")
        self.learner, self.no_grasp_by = learner, int(no_grasp_by)
        self.expert = ExpertPolicy(robot, seed=seed, **expert_kwargs)
        self.cameras = getattr(learner, "cameras", ("front", "wrist"))
        self.reset()

    def reset(self) -> None:
        self.learner.reset()
        self.steps, self.expert_in_control, self.reason, self.takeover_step = 0, False, None, None
        self._had_target = False

    @property
    def subtask(self) -> str:
        return self.expert.subtask if self.expert_in_control else str(getattr(self.learner, "subtask", "") or "")

    def strayed(self) -> str | None:
        """The first rule the current scene breaks, or None."""
        state = self.env.scene_state()
        target, held = state["target"], state["held"]
        if target is None:
            return None
        if held is not None and held != target:
            return "wrong cube held"
        if held == target:
            self._had_target = True
        elif self._had_target and not self._over_bin(state["cubes"][target]["pos"]):
            return "cube dropped"  # let go of away from the bin (a cube released above the bin falls into it)
        if not self._had_target and self.steps >= self.no_grasp_by:
            return "no grasp by step"
        return None

    @staticmethod
    def _over_bin(pos) -> bool:
        from vla_course.sim.scene import BIN_INNER_HALF, BIN_POS

        return abs(pos[0] - BIN_POS[0]) < BIN_INNER_HALF and abs(pos[1] - BIN_POS[1]) < BIN_INNER_HALF

    def act(self, frame: dict) -> np.ndarray:
        if not self.expert_in_control:
            reason = self.strayed()
            if reason:
                self.expert.reset()  # plans from where the learner left the arm
                self.expert_in_control, self.reason, self.takeover_step = True, reason, self.steps
        self.steps += 1
        return np.asarray((self.expert if self.expert_in_control else self.learner).act(frame), dtype=np.float32)


DEFAULT_PI0_CHECKPOINT = "pi0_base"


def available_pi0_checkpoints(root=None) -> list[str]:
    """Names of the checkpoints in ``data/checkpoints`` (or ``root``) that hold a Pi0."""
    import json

    from vla_course.checkpoints import checkpoint_dir

    base = checkpoint_dir("", root)
    if not base.is_dir():
        return []
    out = []
    for cfg in sorted(base.glob("*/config.json")):
        try:
            if json.loads(cfg.read_text()).get("kind") == "Pi0":
                out.append(cfg.parent.name)
        except (OSError, ValueError):
            continue
    return out


class Pi0CheckpointPolicy:
    """pi0 in miniature, loaded from ``data/checkpoints/<checkpoint>`` (made by ``vla-course train``).

    It sees what a real arm gives: both cameras, the joint state and the instruction, and returns absolute
    joint targets (:class:`~vla_course.models.Pi0Policy`). ``n_action_steps`` (how many actions of each
    16-step chunk run before it re-plans) defaults to the model's own ``config.n_action_steps``, the value
    its recipe measured.
    """

    cameras: tuple[str, ...] = ("front", "wrist")
    expert_in_control = False

    def __init__(self, robot=None, checkpoint: str | None = None, n_action_steps: int | None = None,
                 num_steps: int = 10, seed: int = 0, root=None):
        import torch

        from vla_course.checkpoints import checkpoint_dir, load_pretrained
        from vla_course.models import Pi0Policy

        name = checkpoint or DEFAULT_PI0_CHECKPOINT
        try:
            model = load_pretrained(name, kind="Pi0", root=root)
        except FileNotFoundError as e:
            found = available_pi0_checkpoints(root)
            hint = f"available: {', '.join(found)}" if found else "none is available yet"
            raise FileNotFoundError(f"checkpoint {name!r} not found at {checkpoint_dir(name, root)}; make it with "
                                    f"`vla-course train {name}` (pi0: pi0_base, then pi0_finetune; pi0.5: pi05) "
                                    f"or pick another --checkpoint ({hint})") from e
        if tuple(model.vlm.config.cameras) != self.cameras:
            raise ValueError(f"checkpoint {name!r} expects cameras {tuple(model.vlm.config.cameras)}, "
                             f"this policy feeds {self.cameras}")
        torch.set_num_threads(1)  # batch-1 inference: one thread is fastest (and leaves a core to the sim)
        self.checkpoint = name
        self.model = model
        self.policy = Pi0Policy(model, n_action_steps=n_action_steps, num_steps=num_steps, seed=seed)

    def reset(self) -> None:
        self.policy.reset()

    def act(self, frame: dict) -> np.ndarray:
        return np.asarray(self.policy.act(frame), dtype=np.float32)

    # a pi0.5 checkpoint (layout "subtask") thinks in words before it acts: what it said, and when
    @property
    def hierarchical(self) -> bool:
        return self.policy.hierarchical

    @property
    def subtask(self) -> str | None:
        return self.policy.subtask

    @property
    def thoughts(self) -> list[tuple[int, str]]:
        return self.policy.thoughts

    @property
    def subtask_words(self) -> str:
        return self.policy.subtask_words

    @property
    def seed(self) -> int | None:  # evaluate_policy(noise_offset=) sets it per episode: it reaches the noise
        return self.policy.seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        self.policy.seed = value


class Pi05CheckpointPolicy(Pi0CheckpointPolicy):
    """pi0.5 in miniature (``vla-course train pi05``): before every chunk the backbone writes the next subtask in
    words from the cameras and the high-level prompt ("clear the table"), then the expert acts on those words.
    ``think_every``: think every N control steps instead (a changed text replaces the queued chunk)."""

    def __init__(self, robot=None, checkpoint: str | None = None, n_action_steps: int | None = None,
                 num_steps: int = 10, seed: int = 0, root=None, think_every: int | None = None):
        super().__init__(robot, checkpoint or "pi05", n_action_steps, num_steps, seed, root)
        if not self.policy.hierarchical:
            raise ValueError(f"checkpoint {self.checkpoint!r} is a flat pi0 (layout {self.model.config.layout!r}); "
                             f"run it with --policy pi0, or give --policy pi05 a pi0.5 checkpoint (e.g. pi05)")
        if think_every is not None:
            from vla_course.models import Pi0Policy

            self.policy = Pi0Policy(self.model, n_action_steps=n_action_steps, num_steps=num_steps, seed=seed,
                                    think_every=think_every)


class RecapCheckpointPolicy(Pi0CheckpointPolicy):
    """RECAP (pi*0.6) in miniature (``vla-course train recap``): a pi0 trained with "advantage: positive" or
    "advantage: negative" after its instruction, always asked for "positive" here. ``guidance`` (beta, pi*0.6
    uses 1..2.5): classifier-free guidance against the bare instruction, two rows per chunk."""

    def __init__(self, robot=None, checkpoint: str | None = None, n_action_steps: int | None = None,
                 num_steps: int = 10, seed: int = 0, root=None, guidance: float | None = None):
        from vla_course.models import Pi0Policy
        from vla_course.recap.advantage import POSITIVE

        super().__init__(robot, checkpoint or "recap", n_action_steps, num_steps, seed, root)
        self.policy = Pi0Policy(self.model, n_action_steps=n_action_steps, num_steps=num_steps, seed=seed,
                                condition=POSITIVE, guidance=guidance)


POLICIES = {"expert": ExpertPolicy, "pi0": Pi0CheckpointPolicy, "pi05": Pi05CheckpointPolicy,
            "recap": RecapCheckpointPolicy}


def make_policy(name: str, robot=None, **kwargs):
    """Build a policy by name (``vla-course --policy NAME``)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](robot, **kwargs)
