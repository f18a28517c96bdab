"""pi0.5 in miniature: the backbone thinks of the next subtask in words, the action expert acts on it (notebook 07).

pi0 is "System 1": it follows "put the red cube in the bin", not "clear the table". pi0.5 factorises the policy
into two stages of one model, pi(a | o, subtask) pi(subtask | o, prompt): the backbone first *decodes* the next
subtask as text from the images and the high-level prompt, then the action expert denoises a chunk that acts on
that text (:meth:`Pi0.decode_subtask`, :class:`~vla_course.models.Pi0Policy`). Two recipes at the same data,
initialisation, steps and action batches::

    vla-course train pi05        # hierarchical: cross-entropy on the subtask labels + flow on the actions
    vla-course train pi05_flat   # the baseline: the same model and data, trained on the high-level prompts

Both start from ``pi0_base`` (the pick-and-place skill and its vocabulary). They train on the scripted expert's
demonstrations of the multi-step tasks (``clear_table``, ``two_in_order``, ``refer``; every frame labelled with
the subtask the expert was doing), mixed with a replay of pi0_base's own pick_place demonstrations (so the base
skill stays) and VQA questions (so the backbone keeps what it knew: the high level needs left, right and
nearest-the-bin). Choices this recipe states:

* the subtask is written in the words of a one-cube instruction, "put the red cube in the bin", then "done"
  (``subtask_words="instruction"``; :func:`~vla_course.sim.expert.instruction_subtasks` maps the recorded
  phase labels). Those are words pi0_base already follows;
* the action expert reads the subtask *as its instruction*, in a second sequence (``subtask_as_prompt``,
  :mod:`vla_course.models.subtask`). The high level is trained on text rows (prompt -> subtask, 20 per step), and
  the low level on action rows whose instruction is the subtask. pi0.5 itself puts both in one sequence. This
  course's first run did that, with the phase labels ("pick up the red cube" / "put it in the bin") and lr 3e-4,
  and cleared 0 of 50 tables (``data/results/pi05_first_run.json``). ``subtask_words="phase"``,
  ``subtask_as_prompt=False`` is that run;
* the state is *not* written as words in the prefix (pi0.5 writes "State: ..."; pi0_base's prefix has no
  state words, and the high level reads progress from the images: which cube is in the gripper, in the bin);
* no adaRMS time injection: the expert keeps pi0's concat + MLP time embedding;
* the flow loss reaches the backbone (plain pi0's recipe, ``pi0_base``'s own), with VQA co-training beside it.
  Knowledge Insulation cost grasping success in notebook 06, so it is not used here;
* the high level thinks again before every chunk by default (``think_every``; notebook 07 measures others);
* optionally, the high level draws extra rows from the *decision* frames, the first ``decision_window`` frames
  of each subtask segment (``decision_batch_size``; :func:`~vla_course.models.subtask.decision_frames`). The
  shipped pi05 trains without them (0) and reads the arm's heading instead of the table: right underway, wrong
  where it has to choose the next cube (``benchmarks/pi05_decision_points.py``). A full run with them is not
  measured yet.

Evaluation: held-out layout seeds 10000.. of every multi-step task and of pick_place, each rollout with its own
noise (policy seed = layout seed). It reports success and subtasks completed per episode (targets binned in the
task's order), and for ``pi05`` the accuracy of every decoded subtask against the one the scene called for at
that moment (``oracle_subtask``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from vla_course.data.cache import relative_to_repo
from vla_course.data.views import Subset
from vla_course.models.subtask import decision_frames, high_level_batch, low_level_batch
from vla_course.recipes.finetune import grow_vocabulary, recording, robot_chunks_of
from vla_course.sim.expert import instruction_subtasks
from vla_course.train import recipe
from vla_course.training import Source, TrainConfig, train
from vla_course.training.evaluate import evaluate_pi0

MULTI_STEP_TASKS = ("clear_table", "two_in_order", "refer")
EVAL_TASKS = (*MULTI_STEP_TASKS, "pick_place")


@dataclass(frozen=True)
class Pi05Recipe:
    """Everything ``pi05`` and ``pi05_flat`` decide (they differ only in ``hierarchical``). Layout seeds: the
    multi-step recordings 30000.., the pick_place replay pi0_base's own 0.. and 1000.., held-out 10000..."""

    hierarchical: bool = True
    # (task, first layout seed, episodes): the scripted expert with its subtask labels
    recordings: tuple = (("clear_table", 30_000, 150), ("two_in_order", 31_000, 150), ("refer", 32_000, 200))
    base_recordings: tuple = ((0, 200, 0.0), (1000, 60, 0.08))  # pick_place replay: (seed, episodes, detour)
    init: str = "pi0_base"
    steps: int = 3000
    batch_size: int = 32  # multi-step rows per step ...
    base_batch_size: int = 16  # ... pick_place replay rows ...
    vqa_batch_size: int = 8  # ... and VQA questions (co-training; both recipes)
    high_batch_size: int = 16  # pi05 only: high-level text rows (prompt -> subtask) of the multi-step frames ...
    base_high_batch_size: int = 4  # ... and of the pick_place replay
    # pi05 only: extra high-level rows from the decision frames, the first `decision_window` frames of each
    # subtask segment (models/subtask.decision_frames). The shipped pi05 has none (0) and is right underway,
    # wrong at the decisions: it reads the arm's heading (data/results/pi05_decision_points.json). A full run
    # with e.g. 16 is the next experiment; not run yet
    decision_batch_size: int = 0
    decision_window: int = 8
    vqa_scenes: int = 2000
    lr: float = 1e-4
    # pi05 only: the subtask in the words of a one-cube instruction ("put the red cube in the bin"), read by the
    # action expert as its instruction (models/subtask.py); "phase" + False is the first run's one-sequence pi0.5
    subtask_words: str = "instruction"
    subtask_as_prompt: bool = True
    warmup: int = 100
    text_weight: float = 1.0  # the subtask cross-entropy beside the flow loss (pi05 only)
    think_every: int | None = None  # None: think before every chunk
    eval_seed: int = 10_000
    eval_episodes: int = 50
    eval_tasks: tuple = EVAL_TASKS
    progress: bool = True

    def quick(self) -> Pi05Recipe:
        """Seconds: one episode per task, four steps, one evaluation episode per task."""
        return replace(self, recordings=(("clear_table", 30_000, 1), ("refer", 32_000, 1)),
                       base_recordings=((0, 1, 0.0),), steps=4, batch_size=8, base_batch_size=4, vqa_batch_size=4,
                       high_batch_size=4, base_high_batch_size=2, decision_batch_size=2, vqa_scenes=4, warmup=2, eval_episodes=1, eval_tasks=("refer",), progress=False)


def subtask_answer(batch: dict, generator=None) -> dict:
    """A source transform: the frame's subtask label becomes the backbone's answer block (pi0.5's target)."""
    batch["answer"] = list(batch["subtask"])
    return batch


def high_level_rows(batch: dict, generator=None) -> dict:
    """A source transform: the frame as a high-level row, prompt -> subtask (text only; models/subtask.py)."""
    return high_level_batch(batch)


def low_level_rows(batch: dict, generator=None) -> dict:
    """A source transform: the frame as a low-level row, the subtask as its instruction -> the action chunk."""
    return low_level_batch(batch)


def decode_counts(row: dict) -> dict:
    """An evaluation row with its thoughts summarised (the whole list of every decode is megabytes): how many
    decodes, and how many said what the scene called for."""
    row = dict(row)
    if "thoughts" in row:
        thoughts = row.pop("thoughts")
        row["decodes"] = len(thoughts)
        row["decodes_as_the_scene_called_for"] = sum(said == want for _, said, want in thoughts)
    return row


def instruction_words() -> list[str]:
    """Every instruction and subtask text the recipe's tasks can say (to grow the vocabulary once)."""
    from vla_course.constants import COLORS
    from vla_course.sim.expert import DONE_SUBTASK, INSTRUCTION_SUBTASK, PICK_SUBTASK, PLACE_SUBTASK
    from vla_course.sim.tasks import REFERENCES, ClearTable, Refer, TwoInOrder

    texts = [ClearTable().instruction([]), *(Refer.instruction_for(r) for r in REFERENCES),
             *(TwoInOrder().instruction([a, b]) for a in COLORS for b in COLORS if a != b),
             *(PICK_SUBTASK.format(c) for c in COLORS), PLACE_SUBTASK, DONE_SUBTASK,
             *(INSTRUCTION_SUBTASK.format(c) for c in COLORS)]
    return texts


def _run(cfg: Pi05Recipe, *, seed: int, out_dir: Path, cache=None) -> dict:
    from vla_course.data.vqa import generate_vqa
    from vla_course.checkpoints import load_pretrained
    from vla_course.recipes.pi0 import base_recording

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    roots = [recording(task, s0, n, cache=cache, progress=cfg.progress) for task, s0, n in cfg.recordings]
    multi = robot_chunks_of([(r, task, s0, {}) for r, (task, s0, _) in zip(roots, cfg.recordings)], cfg.progress)
    base_roots = [base_recording(*part, cache=cache, progress=cfg.progress) for part in cfg.base_recordings]
    base = robot_chunks_of([(r, "pick_place", part[0], {}) for r, part in zip(base_roots, cfg.base_recordings)],
                           cfg.progress)
    if multi.subtasks is None or base.subtasks is None:
        raise ValueError("the recordings carry no subtask labels; re-record them (vla-course record labels every "
                         "frame with the expert's subtask)")
    if cfg.hierarchical and cfg.subtask_words == "instruction":  # the recorded phase labels, in instruction words
        for part in (multi, base):
            part.subtasks = instruction_subtasks(part.subtasks, part.episode_index.tolist())
    vqa = generate_vqa(cfg.vqa_scenes, split="train", seed=seed, progress=cfg.progress)
    data_seconds = time.perf_counter() - t0

    # pi0_base's weights, normalisation and relative actions (from the checkpoint folder beside the output)
    model = load_pretrained(cfg.init, kind="Pi0", root=out_dir.parent)
    added = grow_vocabulary(model.vlm, instruction_words())
    if cfg.hierarchical:
        model.config.layout = "subtask"
        model.config.text_weight = cfg.text_weight
        model.config.subtask_words, model.config.subtask_as_prompt = cfg.subtask_words, cfg.subtask_as_prompt
    n_decisions = 0
    if cfg.hierarchical and cfg.subtask_as_prompt:  # two sequences: text rows for the high level, action rows
        sources = [Source("multi_step", multi, cfg.batch_size, transform=low_level_rows),
                   Source("pick_place", base, cfg.base_batch_size, transform=low_level_rows),
                   Source("high_level", multi, cfg.high_batch_size, transform=high_level_rows),
                   Source("pick_place_high", base, cfg.base_high_batch_size, transform=high_level_rows),
                   Source("vqa", vqa, cfg.vqa_batch_size)]
        if cfg.decision_batch_size:
            decisions = decision_frames(multi.subtasks, multi.episode_index.numpy(), cfg.decision_window)
            n_decisions = len(decisions)
            sources.append(Source("high_level_decisions", Subset(multi, torch.as_tensor(decisions)),
                                  cfg.decision_batch_size, transform=high_level_rows))
    else:
        transform = subtask_answer if cfg.hierarchical else None
        sources = [Source("multi_step", multi, cfg.batch_size, transform=transform),
                   Source("pick_place", base, cfg.base_batch_size, transform=transform),
                   Source("vqa", vqa, cfg.vqa_batch_size)]
    cpu0 = time.process_time()
    log = train(model, sources, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup, seed=seed),
                progress=cfg.progress, desc="pi05 (subtasks)" if cfg.hierarchical else "pi05_flat")
    train_cpu_seconds = time.process_time() - cpu0
    model.eval()

    t1 = time.perf_counter()
    evaluation = {}
    for task in cfg.eval_tasks:
        ev = evaluate_pi0(model, cfg.eval_seed, cfg.eval_episodes, task=task, progress=cfg.progress,
                          think_every=cfg.think_every, noise_offset=0)  # each rollout its own noise
        evaluation[task] = ev
    eval_seconds = time.perf_counter() - t1
    model.save_pretrained(out_dir)
    metrics = {task: {k: ev[k] for k in ("success_rate", "successes", "episodes", "subtasks_completed",
                                         "subtask_accuracy") if k in ev}
               for task, ev in evaluation.items()}
    return {
        "data": {"dataset": [relative_to_repo(r) for r in roots], "tasks": [t for t, _, _ in cfg.recordings],
                 "episodes": multi.num_episodes, "frames": len(multi),
                 "parts": [{"task": t, "layout_seeds": f"{s0}..{s0 + n - 1}"} for t, s0, n in cfg.recordings],
                 "base_mix": {"dataset": [relative_to_repo(r) for r in base_roots], "episodes": base.num_episodes,
                              "frames": len(base)},
                 "vqa_cotraining": {"scenes": cfg.vqa_scenes, "batch_size": cfg.vqa_batch_size, "seed": seed},
                 "record_and_load_seconds": data_seconds, "init": cfg.init},
        "metrics": {"hierarchical": cfg.hierarchical, "per_task": metrics,
                    "eval_seeds": f"{cfg.eval_seed}..{cfg.eval_seed + cfg.eval_episodes - 1}",
                    "think_every": cfg.think_every, "final_loss": log.final(),
                    "eval_noise": "policy seed = layout seed (evaluate_policy noise_offset=0)"},
        "train_seconds": log.seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "eval_seconds": eval_seconds,
        "training": {"steps": cfg.steps, "batch_sizes": {s.name: s.batch_size for s in sources}, "lr": cfg.lr,
                     "subtask_words": model.config.subtask_words, "subtask_as_prompt": model.config.subtask_as_prompt,
                     "warmup": cfg.warmup, "words_added": added, "layout": model.config.layout,
                     "decision_frames": {"window": cfg.decision_window, "frames": n_decisions},
                     "loss_every_step": log.loss[::10],
                     "terms_every_step": {k: v[::10] for k, v in log.losses.items()}},
        "n_action_steps": model.config.n_action_steps,
        "evaluation": {task: {**{k: v for k, v in ev.items() if k not in ("videos", "episodes_detail")},
                              "episodes_detail": [decode_counts(r) for r in ev["episodes_detail"]]}
                       for task, ev in evaluation.items()},
    }


def _register(name: str, hierarchical: bool, what: str):
    @recipe(name, what, config=partial(Pi05Recipe, hierarchical=hierarchical))
    def fn(cfg: Pi05Recipe, *, seed: int, out_dir: Path, cache=None) -> dict:
        if cfg.hierarchical != hierarchical:
            raise ValueError(f"recipe {name!r} has hierarchical={hierarchical}, got a config with "
                             f"hierarchical={cfg.hierarchical}")
        return _run(cfg, seed=seed, out_dir=out_dir, cache=cache)
    return fn


pi05 = _register("pi05", True, "pi0.5: pi0_base + subtask decoding in words (clear_table, two_in_order, refer + "
                               "pick_place replay + VQA); the expert acts on the decoded subtask")
pi05_flat = _register("pi05_flat", False, "the flat baseline of pi05: the same data, start and compute, trained "
                                         "on the high-level prompts (a pi0 checkpoint)")
