"""Synthetic visual question answering about SO-100 scenes: the tiny VLM's "pretraining" data.

PaliGemma learned to see and talk from billions of captioned web images. Our tiny VLM learns the
same two skills on the one world it will ever act in: scenes rendered by the simulator and
labelled from its privileged state, so every answer is true by construction.

Each scene is a ``pick_place`` layout (3 to 5 cubes), sometimes with one cube already in the bin,
with the arm in a random pose and the gripper open or closed. Questions (one-word answers, plus a
left-to-right caption):

    what colour is the cube in the bin?         -> red / ... / none
    how many cubes are on the table?            -> two / three / four / five
    is there a <c> cube?                        -> yes / no
    is the <c> cube in the bin?                 -> yes / no
    is the gripper open?                        -> yes / no
    is the <a> cube left or right of the <b> cube?   -> left / right   (as the front camera sees it)
    which cube is nearest the bin?              -> <colour>
    list the cubes from left to right           -> "red blue green" (a caption)

Scenes for training and for evaluation come from disjoint seed ranges (``split="train"`` /
``"heldout"``), so held-out accuracy measures generalisation to new layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vla_course.constants import CAMERAS, COLORS, IMAGE_SIZE

NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
HELDOUT_SEED_OFFSET = 1_000_000  # held-out scenes use seeds from here on
QUESTION_KINDS = ("bin_colour", "count", "exists", "in_bin", "gripper", "left_right", "nearest_bin", "caption")


@dataclass
class VQADataset:
    """Rendered scenes and question/answer pairs about them.

    ``images[cam]`` is (num_scenes, S, S, 3) uint8; each QA pair points at its scene.
    """

    images: dict[str, np.ndarray]
    scene: np.ndarray  # (num_qa,) scene index of each question
    questions: list[str]
    answers: list[str]
    kinds: list[str]
    states: list[dict] = field(default_factory=list, repr=False)  # the scene states (labels' ground truth)

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def num_scenes(self) -> int:
        return len(next(iter(self.images.values())))

    def batch(self, idx) -> dict:
        """A model batch (LeRobot keys) for the QA pairs ``idx``: images, prompts and answers."""
        idx = np.asarray(idx)
        out = {f"observation.images.{cam}": imgs[self.scene[idx]] for cam, imgs in self.images.items()}
        out["prompt"] = [self.questions[i] for i in idx]
        out["answer"] = [self.answers[i] for i in idx]
        return out

    def subset(self, idx) -> "VQADataset":
        """The QA pairs ``idx`` (images are shared, not copied)."""
        idx = np.asarray(idx, dtype=int)
        return VQADataset(images=self.images, scene=self.scene[idx], questions=[self.questions[i] for i in idx],
                          answers=[self.answers[i] for i in idx], kinds=[self.kinds[i] for i in idx],
                          states=self.states)

    def vocabulary(self) -> list[str]:
        words = set()
        for text in self.questions + self.answers:
            words.update(text.replace("?", " ?").split())
        return sorted(words)


def front_right_axis(env) -> np.ndarray:
    """The world direction that points to the right in the front camera's image."""
    import mujoco

    cam = env.model.camera("front").id
    mujoco.mj_forward(env.model, env.data)
    return env.data.cam_xmat[cam].reshape(3, 3)[:, 0].copy()  # camera x axis = image right


def questions_for(state: dict, right: np.ndarray, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(kind, question, answer) for one scene state; every answer is computed from the state."""
    on_table = {c: np.array(v["pos"]) for c, v in state["cubes"].items() if not v["in_bin"]}
    in_bin = [c for c, v in state["cubes"].items() if v["in_bin"]]
    present = set(state["cubes"])
    order = sorted(on_table, key=lambda c: float(on_table[c] @ right))  # left to right in the front image
    qa = [
        ("bin_colour", "what colour is the cube in the bin?", in_bin[0] if in_bin else "none"),
        ("count", "how many cubes are on the table?", NUMBERS[len(on_table)]),
        ("gripper", "is the gripper open?", "yes" if state["gripper_open"] else "no"),
        ("caption", "list the cubes from left to right", " ".join(order)),
    ]
    colour = str(rng.choice(list(COLORS)))
    qa.append(("exists", f"is there a {colour} cube?", "yes" if colour in present else "no"))
    colour = str(rng.choice(sorted(present)))
    qa.append(("in_bin", f"is the {colour} cube in the bin?", "yes" if colour in in_bin else "no"))
    a, b = (str(c) for c in rng.choice(order, size=2, replace=False))
    side = "left" if on_table[a] @ right < on_table[b] @ right else "right"
    qa.append(("left_right", f"is the {a} cube left or right of the {b} cube?", side))
    bin_xy = np.array(state["bin_pos"][:2])
    nearest = min(on_table, key=lambda c: float(np.linalg.norm(on_table[c][:2] - bin_xy)))
    qa.append(("nearest_bin", "which cube is nearest the bin?", nearest))
    return qa


def random_scene(env, rng: np.random.Generator, p_cube_in_bin: float = 0.4) -> dict:
    """Perturb a freshly reset scene: maybe a cube in the bin, a random arm pose and gripper."""
    import mujoco

    from vla_course.sim import scene
    from vla_course.sim.env import HOME_RAD

    colours = list(env.layout.cubes)
    if len(colours) > 2 and rng.random() < p_cube_in_bin:
        bx, by, bz = scene.BIN_POS
        c = colours[int(rng.integers(len(colours)))]
        jitter = rng.uniform(-0.02, 0.02, size=2)
        env.set_cube_pose(c, (bx + jitter[0], by + jitter[1], bz + scene.CUBE_HALF + 0.006), rng.uniform(-0.8, 0.8))
    q = HOME_RAD.copy()
    q[:5] += rng.uniform(-0.35, 0.35, size=5)
    q[5] = rng.choice([-0.1, 1.2])  # closed or open
    env.data.qpos[env.arm_qpos] = q
    env.data.ctrl[:] = q
    mujoco.mj_forward(env.model, env.data)
    return env.scene_state()


def generate_vqa(num_scenes: int, split: str = "train", seed: int = 0, image_size: int = IMAGE_SIZE,
                 cameras: tuple[str, ...] = CAMERAS, progress: bool = True) -> VQADataset:
    """Render ``num_scenes`` scenes and ask every question kind about each (8 QA pairs per scene)."""
    from tqdm import tqdm  # a text bar: saved notebooks show its final state, not a stale "0%" widget

    from vla_course.sim import make_env

    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'heldout'")
    base = seed + (HELDOUT_SEED_OFFSET if split == "heldout" else 0)
    env = make_env("pick_place", seed=base, image_size=image_size, cameras=cameras)
    right = front_right_axis(env)
    images = {cam: np.zeros((num_scenes, image_size, image_size, 3), np.uint8) for cam in cameras}
    scene_idx, questions, answers, kinds, states = [], [], [], [], []
    try:
        for i in tqdm(range(num_scenes), desc=f"rendering {split} scenes", disable=not progress):
            env.reset(seed=base + i)
            rng = np.random.default_rng([base + i, 7])
            state = random_scene(env, rng)
            for cam in cameras:
                images[cam][i] = env.render(cam, image_size)
            for kind, q, a in questions_for(state, right, rng):
                scene_idx.append(i)
                questions.append(q)
                answers.append(a)
                kinds.append(kind)
            states.append(state)
    finally:
        env.close()
    return VQADataset(images=images, scene=np.array(scene_idx), questions=questions, answers=answers,
                      kinds=kinds, states=states)
