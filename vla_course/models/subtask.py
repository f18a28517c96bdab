r"""pi0.5's two stages as two sequences of one model: think in words, then act on the words.

pi0.5 factorises the policy, pi(a | o, prompt) = pi(a | o, subtask) pi(subtask | o, prompt). The paper runs both
stages in one sequence: the action expert attends to the prefix (images, high-level prompt) *and* the decoded
subtask (the ``"subtask"`` layout of :mod:`vla_course.models.masks`). This course's pi0.5
(``Pi0Config.subtask_as_prompt=True``) splits them into two sequences of the same weights:

* **high level** = the VLM answering a question, the prefix-LM layout of chapter 01. The high-level prompt is
  the question and the subtask is the answer, decoded word by word::

    >>> from vla_course.models.masks import ascii_mask, prefix_lm_layout
    >>> print(ascii_mask(prefix_lm_layout(prefix_len=3, answer_len=2)))   # [images, "clear the table" | subtask]
         pre pre pre ans ans
    pre [  #   #   #   .   . ]
    pre [  #   #   #   .   . ]
    pre [  #   #   #   .   . ]
    ans [  #   #   #   #   . ]
    ans [  #   #   #   #   # ]

* **low level** = pi0's layout with the subtask *as its instruction*:
  ``[images, "put the red cube in the bin" | state | actions]``. That is exactly the input ``pi0_base`` was
  trained on. The vision's instruction keypoints are also computed from the words, so they look for the cube
  the subtask names, not for "the table".

Why two sequences: the one-sequence layout (the paper's) was the first thing this course measured. With its
phase labels ("pick up the red cube" / "put it in the bin"), it cleared 0 of 50 tables
(``data/results/pi05_first_run.json``). Both variants train the same way: the high level with cross-entropy on
the labels (:func:`high_level_batch`), the low level with the flow loss on the same frames
(:func:`low_level_batch`).
"""

from __future__ import annotations

import numpy as np

from vla_course.constants import IMAGE_KEY_PREFIX


def _subtasks(batch: dict) -> list[str]:
    if "subtask" in batch:
        return list(batch["subtask"])
    if "answer" in batch:
        return list(batch["answer"])
    raise ValueError("the batch has no subtask text: give it 'subtask' (recorded labels) or 'answer' (decoded)")


def high_level_batch(batch: dict) -> dict:
    """A batch of the high level, pi(subtask | o, prompt): the cameras, the high-level prompt (``"task"``) as the
    question, the subtask as the answer. It has no action, so ``Pi0.compute_loss`` gives the text loss alone."""
    out = {k: v for k, v in batch.items() if k.startswith(IMAGE_KEY_PREFIX)}
    out["prompt"], out["answer"] = list(batch["task"]), _subtasks(batch)
    return out


def low_level_batch(batch: dict) -> dict:
    """A batch of the low level, pi(a | o, subtask): the same frame with the subtask as its instruction (state,
    actions, and padding unchanged; no answer block)."""
    subtasks = _subtasks(batch)
    out = {k: v for k, v in batch.items() if k not in ("answer", "answer_ids", "answer_pad", "subtask", "prompt")}
    out["task"] = subtasks
    return out



def segment_positions(labels: list[str], episode_index) -> np.ndarray:
    """For each frame, how many frames into its subtask segment it is (0 at an episode's first frame and at each
    change of label).

    >>> segment_positions(["a", "a", "b", "b", "b", "b"], [0, 0, 0, 0, 1, 1]).tolist()
    [0, 1, 0, 1, 0, 1]
    """
    ep = np.asarray(episode_index)
    out = np.zeros(len(labels), dtype=int)
    for i in range(1, len(labels)):
        out[i] = out[i - 1] + 1 if labels[i] == labels[i - 1] and ep[i] == ep[i - 1] else 0
    return out


def decision_frames(labels: list[str], episode_index, window: int) -> np.ndarray:
    """The frames where the high level has to *decide*: the first ``window`` frames of every subtask segment (an
    episode's start, or just after a cube was let go). There the arm is at rest or leaving the bin, so only the
    table says which cube is next; underway, the arm's heading gives the answer away, and a high level trained
    on every frame alike learns to read the heading (causal confusion). ``pi05`` draws extra high-level rows
    from these frames (``Pi05Recipe.decision_batch_size``).

    >>> decision_frames(["a", "a", "a", "b", "b", "b"], [0, 0, 0, 0, 0, 0], window=2).tolist()
    [0, 1, 3, 4]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    return np.flatnonzero(segment_positions(labels, episode_index) < window)
