"""Tasks: what to build on the table and what counts as done.

A *task* is a small object that, given a random generator, lays out an episode
(which cubes, where, which one is the target) and then judges success from the
privileged scene state. Tasks are kept in a registry, ``TASKS``, so that
``make_env(task="pick_place")`` can find them by name and later chapters can add
more (multi-step ones such as "put the red cube then the blue cube in the bin").

The one shipped with this chapter is :class:`PickPlace`: "put the <colour> cube
in the bin". :class:`PutInBin` is the general version (an ordered list of
target cubes); ``pick_place`` is ``PutInBin`` with one target, and
``pick_place_two`` shows how a two-step task is declared. :class:`HoldUp`
("hold the <colour> cube up") is the *new skill* of the fine-tuning chapter:
the same tables, a different ending (lift the cube high instead of binning it).

The multi-step tasks of the pi0.5 chapter (notebook 07), where one prompt means several
subtasks: :class:`ClearTable` ("clear the table": every cube, any order),
:class:`TwoInOrder` ("put the <a> cube in the bin, then the <b> cube": order checked)
and :class:`Refer` (one cube named by where it is: "put the leftmost cube in the bin",
"put the cube nearest the bin in the bin", the relations the VLM's VQA pretraining knows).

Success is defined on the *physical* outcome, never on what the robot intended:
every target cube lies inside the bin and the gripper is not holding it (or,
for ``hold_up``, the named cube is in the gripper, high above the table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from vla_course.constants import COLORS
from vla_course.sim import scene

# Where cubes may be put: a ring sector in front of the arm's pan axis, on the
# opposite side from the bin, all comfortably within a top-down reach.
REACH_MIN, REACH_MAX = 0.14, 0.26  # metres from the pan axis
ANGLE_MIN, ANGLE_MAX = np.radians(-30.0), np.radians(65.0)  # 0 = straight ahead (+x)
MIN_CUBE_SPACING = 0.065  # centre to centre: room for the open fingers
MIN_BIN_CLEARANCE = 0.10  # cube centre to bin centre


@dataclass
class Layout:
    """One episode's initial scene: cube colour -> (x, y, yaw), and the goal."""

    cubes: dict[str, tuple[float, float, float]]
    targets: list[str]  # cubes to put in the bin, in order
    instruction: str
    seed: int = 0
    extra: dict = field(default_factory=dict)


class PutInBin:
    """Put one or more named cubes in the bin, in the given order.

    Args:
        n_cubes: how many cubes are on the table (None: 3 to 5, by seed).
        targets: colours to put in the bin, in order (None: chosen by seed).
        n_targets: how many targets to draw when ``targets`` is None.
    """

    name = "put_in_bin"

    def __init__(self, n_cubes: int | None = None, targets: list[str] | tuple | None = None, n_targets: int = 1):
        self.n_targets = len(targets) if targets else n_targets
        if n_cubes is not None and not (self.n_targets <= n_cubes <= len(COLORS)):
            raise ValueError(
                f"n_cubes={n_cubes} is out of range; use {self.n_targets}..{len(COLORS)} (or None for 3..5 by seed)"
            )
        for colour in targets or ():
            if colour not in COLORS:
                raise ValueError(f"unknown cube colour {colour!r}; use one of: {', '.join(COLORS)}")
        if targets and len(set(targets)) != len(targets):
            raise ValueError(f"targets {targets} repeat a colour; each cube can go in the bin once")
        self.n_cubes = n_cubes
        self.targets = list(targets) if targets else None

    # -- layout -----------------------------------------------------------
    def instruction(self, targets: list[str]) -> str:
        """The language instruction for these targets."""
        if len(targets) == 1:
            return f"put the {targets[0]} cube in the bin"
        names = " then the ".join(f"{c} cube" for c in targets)
        return f"put the {names} in the bin"

    def sample(self, rng: np.random.Generator, seed: int = 0) -> Layout:
        """Draw an episode: how many cubes, which colours, where, which targets."""
        n = self.n_cubes if self.n_cubes is not None else int(rng.integers(max(3, self.n_targets), len(COLORS) + 1))
        palette = list(COLORS)
        if self.targets:
            others = [c for c in palette if c not in self.targets]
            colours = list(self.targets) + list(rng.choice(others, size=n - len(self.targets), replace=False))
            targets = list(self.targets)
        else:
            colours = list(rng.choice(palette, size=n, replace=False))
            targets = colours[: self.n_targets]
        colours = [str(c) for c in colours]
        positions = sample_positions(rng, len(colours))
        cubes = {c: (x, y, float(rng.uniform(-np.pi / 4, np.pi / 4))) for c, (x, y) in zip(colours, positions)}
        return Layout(cubes=cubes, targets=[str(t) for t in targets], instruction=self.instruction(targets), seed=seed)

    def drop_point(self, state: dict) -> np.ndarray:
        """Where (x, y) the scripted expert lets go of a cube over the bin: its centre."""
        return np.array(state["bin_pos"][:2])

    # -- judging ----------------------------------------------------------
    def current_target(self, state: dict) -> str | None:
        """The first target not yet in the bin (None when all are in)."""
        for colour in state["targets"]:
            if not state["cubes"][colour]["in_bin"]:
                return colour
        return None

    def progress(self, state: dict) -> int:
        """How many of the targets are done: binned in the right order (the subtasks completed so far)."""
        entered = [c for c in state.get("bin_order", []) if c in state["targets"] and state["cubes"][c]["in_bin"]]
        done = 0
        for want, got in zip(state["targets"], entered):
            if want != got:
                break
            done += 1
        return done

    def success(self, state: dict) -> bool:
        """Every target is in the bin, none is in the gripper, and they went in in order.

        (A cube teleported into the bin, as tests do, counts as "in order" too:
        only targets recorded in ``bin_order`` are checked for their order.)
        """
        targets = state["targets"]
        done = all(state["cubes"][c]["in_bin"] and state["held"] != c for c in targets)
        entered = [c for c in state.get("bin_order", []) if c in targets]
        return done and entered == targets[: len(entered)]


class PickPlace(PutInBin):
    """"put the <colour> cube in the bin": one target among 3-5 cubes."""

    name = "pick_place"

    def __init__(self, n_cubes: int | None = None, target: str | None = None):
        super().__init__(n_cubes=n_cubes, targets=[target] if target else None, n_targets=1)


class PickPlaceTwo(PutInBin):
    """"put the <a> cube then the <b> cube in the bin": a two-step task."""

    name = "pick_place_two"

    def __init__(self, n_cubes: int | None = None, targets: list[str] | tuple | None = None):
        if targets is not None and len(targets) != 2:
            raise ValueError(f"pick_place_two needs exactly 2 targets, got {targets}")
        super().__init__(n_cubes=n_cubes, targets=targets, n_targets=2)


class HoldUp(PutInBin):
    """"hold the <colour> cube up": grasp the named cube and lift it high above the table.

    A new *placement* for fine-tuning: the layouts are exactly ``pick_place``'s (the same seed gives the same
    table and the same named cube; only the instruction differs), so the new skill is only the ending: lift
    the cube to ``HOLD_Z`` instead of carrying it to the bin at ``expert.CARRY_Z``.

    Success is a pure function of the scene, like every task here: the named cube is in the gripper (both
    jaws touch it) with its centre at least ``HOLD_Z`` above the table. (``SO100Env`` calls ``success``
    several times per control step, so a task cannot count steps itself: holding is judged by the pose.)
    ``HOLD_Z`` is 5 cm above the highest the scripted pick-and-place carries a cube (its centre at ~9 cm),
    so the base skill does not pass it by accident.
    """

    name = "hold_up"
    HOLD_Z = 0.14  # metres: the cube's centre above the table

    def __init__(self, n_cubes: int | None = None, target: str | None = None):
        super().__init__(n_cubes=n_cubes, targets=[target] if target else None, n_targets=1)

    def instruction(self, targets: list[str]) -> str:
        return f"hold the {targets[0]} cube up"

    def current_target(self, state: dict) -> str | None:
        """The cube to hold: always the named one (nothing goes in the bin)."""
        return state["targets"][0]

    def progress(self, state: dict) -> int:
        return int(self.success(state))

    def success(self, state: dict) -> bool:
        """The named cube is in the gripper with its centre at least ``HOLD_Z`` above the table."""
        target = state["targets"][0]
        return state["held"] == target and state["cubes"][target]["pos"][2] >= self.HOLD_Z


class ClearTable(PutInBin):
    """"clear the table": every cube on the table into the bin, in any order (2 to 3 cubes).

    ``targets`` lists all the cubes, nearest the bin first (the order the scripted expert takes them); success
    does not check the order. The cube to take now (``current_target``) is the one in the gripper, else the
    one still on the table nearest the bin, so the expert's plan follows the table as it is.
    """

    name = "clear_table"

    def __init__(self, n_cubes: int | None = None):
        if n_cubes is not None and not 2 <= n_cubes <= 3:
            raise ValueError(f"n_cubes={n_cubes} is out of range for clear_table; use 2 or 3 (or None: 2..3 by seed)")
        self.n_cubes, self.targets = n_cubes, None
        self.n_targets = n_cubes or 3  # the episode length allows this many cubes

    def instruction(self, targets: list[str]) -> str:
        return "clear the table"

    def sample(self, rng: np.random.Generator, seed: int = 0) -> Layout:
        n = self.n_cubes or int(rng.integers(2, 4))
        colours = [str(c) for c in rng.choice(list(COLORS), size=n, replace=False)]
        positions = sample_positions(rng, n)
        cubes = {c: (x, y, float(rng.uniform(-np.pi / 4, np.pi / 4))) for c, (x, y) in zip(colours, positions)}
        targets = sorted(colours, key=lambda c: _bin_distance(cubes[c]))
        return Layout(cubes=cubes, targets=targets, instruction=self.instruction(targets), seed=seed)

    # Where the expert lets go of the 1st, 2nd, 3rd cube: three corners of the 90 mm bin, so that the third cube
    # does not land on top of the others (a stack rises above the walls and does not count as in the bin).
    SLOTS = ((-0.02, -0.02), (0.02, 0.02), (-0.02, 0.02))

    def drop_point(self, state: dict) -> np.ndarray:
        k = sum(state["cubes"][c]["in_bin"] for c in state["targets"])
        return np.array(state["bin_pos"][:2]) + self.SLOTS[min(k, len(self.SLOTS) - 1)]

    def current_target(self, state: dict) -> str | None:
        left = [c for c in state["targets"] if not state["cubes"][c]["in_bin"]]
        if state["held"] in left:
            return state["held"]
        return min(left, key=lambda c: _bin_distance(state["cubes"][c]["pos"])) if left else None

    def progress(self, state: dict) -> int:
        """Cubes in the bin, in any order."""
        return sum(state["cubes"][c]["in_bin"] and state["held"] != c for c in state["targets"])

    def success(self, state: dict) -> bool:
        """Every cube is in the bin and none is in the gripper (any order)."""
        return all(state["cubes"][c]["in_bin"] for c in state["targets"]) and state["held"] is None


class TwoInOrder(PickPlaceTwo):
    """"put the <a> cube in the bin, then the <b> cube": two named cubes, the order checked (pi0.5's phrasing
    of ``pick_place_two``: the second cube is named without repeating the destination)."""

    name = "two_in_order"

    def instruction(self, targets: list[str]) -> str:
        return f"put the {targets[0]} cube in the bin, then the {targets[1]} cube"


REFERENCES = ("leftmost", "rightmost", "nearest the bin")  # as the front camera sees left and right


class Refer(PutInBin):
    """One cube named by where it is, not by its colour: "put the leftmost cube in the bin", "put the rightmost
    cube in the bin", "put the cube nearest the bin in the bin" (3 to 5 cubes).

    Left and right are the front camera's (the VQA questions' convention, ``front_right_axis``); the
    referent is fixed when the table is laid out, and tables where it would be a close call (the runner-up
    within ``MARGIN``) are redrawn, so every instruction names exactly one cube.
    """

    name = "refer"
    MARGIN = 0.03  # metres between the referent and the runner-up

    def __init__(self, n_cubes: int | None = None, reference: str | None = None):
        if reference is not None and reference not in REFERENCES:
            raise ValueError(f"unknown reference {reference!r}; use one of: {', '.join(REFERENCES)}")
        if n_cubes is not None and n_cubes < 2:
            raise ValueError(f"refer needs at least 2 cubes to tell one from the others, got n_cubes={n_cubes}")
        super().__init__(n_cubes=n_cubes, n_targets=1)
        self.reference = reference

    @staticmethod
    def instruction_for(reference: str) -> str:
        if reference == "nearest the bin":
            return "put the cube nearest the bin in the bin"
        return f"put the {reference} cube in the bin"

    def sample(self, rng: np.random.Generator, seed: int = 0) -> Layout:
        reference = self.reference or str(rng.choice(REFERENCES))
        for _ in range(100):
            layout = super().sample(rng, seed)
            ranked = rank_by_reference(layout.cubes, reference)
            if ranked[1][1] - ranked[0][1] >= self.MARGIN:
                target = ranked[0][0]
                return Layout(cubes=layout.cubes, targets=[target], instruction=self.instruction_for(reference),
                              seed=seed, extra={"reference": reference})
        raise RuntimeError("could not draw a table with an unambiguous referent")


def front_right_axis() -> np.ndarray:
    """The world direction that points right in the front camera's image (it looks from
    ``scene.FRONT_CAMERA_POS`` at ``scene.FRONT_CAMERA_TARGET`` with +z up)."""
    back = np.subtract(scene.FRONT_CAMERA_POS, scene.FRONT_CAMERA_TARGET)
    right = np.cross([0.0, 0.0, 1.0], back)
    return right / np.linalg.norm(right)


def rank_by_reference(cubes: dict, reference: str) -> list[tuple[str, float]]:
    """Cubes ``{colour: (x, y, ...)}`` ranked for a reference, best first, with a score (smaller is better):
    the position along the image's left-to-right axis (``leftmost``; negated for ``rightmost``) or the
    distance to the bin."""
    right = front_right_axis()[:2]
    if reference == "nearest the bin":
        score = {c: _bin_distance(p) for c, p in cubes.items()}
    else:
        sign = 1.0 if reference == "leftmost" else -1.0
        score = {c: sign * float(np.dot(p[:2], right)) for c, p in cubes.items()}
    return sorted(score.items(), key=lambda kv: kv[1])


def _bin_distance(pos) -> float:
    return float(np.hypot(pos[0] - scene.BIN_POS[0], pos[1] - scene.BIN_POS[1]))


def sample_positions(rng: np.random.Generator, n: int, max_tries: int = 1000) -> list[tuple[float, float]]:
    """``n`` cube centres in the reachable sector, apart from each other and the bin.

    Rejection sampling: draw uniformly over the sector's area, keep a draw only
    if it is far enough from everything placed so far.
    """
    bin_xy = np.array(scene.BIN_POS[:2])
    placed: list[np.ndarray] = []
    for _ in range(max_tries):
        if len(placed) == n:
            break
        r = np.sqrt(rng.uniform(REACH_MIN**2, REACH_MAX**2))  # sqrt: uniform over area
        a = rng.uniform(ANGLE_MIN, ANGLE_MAX)
        p = np.array([r * np.cos(a), r * np.sin(a)])
        if np.linalg.norm(p - bin_xy) < MIN_BIN_CLEARANCE:
            continue
        if any(np.linalg.norm(p - q) < MIN_CUBE_SPACING for q in placed):
            continue
        placed.append(p)
    if len(placed) < n:
        raise RuntimeError(f"could not place {n} cubes without overlap; use fewer cubes")
    return [(float(p[0]), float(p[1])) for p in placed]


# The registry: task name -> class. make_env(task=name, **kwargs) calls TASKS[name](**kwargs).
TASKS: dict[str, type[PutInBin]] = {
    PickPlace.name: PickPlace,
    PickPlaceTwo.name: PickPlaceTwo,
    HoldUp.name: HoldUp,
    ClearTable.name: ClearTable,
    TwoInOrder.name: TwoInOrder,
    Refer.name: Refer,
}


def task_from_instruction(instruction: str) -> tuple[str, dict]:
    """Turn a typed instruction into ``(task name, task kwargs)`` for ``make_env``.

    "put the red cube in the bin" -> ("pick_place", {"target": "red"});
    "put the red cube then the blue cube in the bin" ->
    ("pick_place_two", {"targets": ["red", "blue"]}); "hold the red cube up" ->
    ("hold_up", {"target": "red"}); "clear the table" -> ("clear_table", {});
    "put the red cube in the bin, then the blue cube" -> ("two_in_order", {"targets": ["red", "blue"]});
    "put the leftmost cube in the bin" -> ("refer", {"reference": "leftmost"}). Case and a final "." do
    not matter.
    Anything else raises ValueError listing what is understood.
    """
    text = " ".join(str(instruction).lower().strip().rstrip(".!").split())
    colours = "|".join(COLORS)
    one = re.fullmatch(rf"put the ({colours}) cube in the bin", text)
    if one:
        return PickPlace.name, {"target": one.group(1)}
    two = re.fullmatch(rf"put the ({colours}) cube then the ({colours}) cube in the bin", text)
    if two and two.group(1) != two.group(2):
        return PickPlaceTwo.name, {"targets": [two.group(1), two.group(2)]}
    hold = re.fullmatch(rf"hold the ({colours}) cube up", text)
    if hold:
        return HoldUp.name, {"target": hold.group(1)}
    if text == "clear the table":
        return ClearTable.name, {}
    order = re.fullmatch(rf"put the ({colours}) cube in the bin, ?then the ({colours}) cube", text)
    if order and order.group(1) != order.group(2):
        return TwoInOrder.name, {"targets": [order.group(1), order.group(2)]}
    for reference in REFERENCES:
        if text == Refer.instruction_for(reference):
            return Refer.name, {"reference": reference}
    raise ValueError(
        f"cannot understand the instruction {instruction!r}; use 'put the <colour> cube in the bin', "
        f"'put the <colour> cube then the <colour> cube in the bin' (two different colours), "
        f"'put the <colour> cube in the bin, then the <colour> cube', 'hold the <colour> cube up', "
        f"'clear the table', 'put the leftmost|rightmost cube in the bin' or 'put the cube nearest the bin in "
        f"the bin', with a colour from: {', '.join(COLORS)}"
    )


def register_task(cls: type[PutInBin]) -> type[PutInBin]:
    """Add a task class to the registry (usable as a decorator)."""
    TASKS[cls.name] = cls
    return cls
