"""``vla-course``: the command line of the course.

    vla-course demo [--policy pi0|expert] [--instruction "put the blue cube in the bin"] [--out outputs/so100_demo.mp4]
    vla-course demo --robot so100 --port /dev/ttyACM0 --front-camera /dev/video0 --wrist-camera /dev/video2 \\
        --policy pi0 --instruction "put the red cube in the bin"
    vla-course record --episodes 10 --seed 0 --root data/my_dataset   (--overwrite replaces, --resume continues)
    vla-course eval --policy expert --episodes 50 --seed 1000 [--json]
    vla-course eval --policy pi0 [--checkpoint pi0_finetune] --episodes 50 --seed 10000
    vla-course eval --policy recap [--guidance 1.5] --episodes 50 --seed 10000 --json
    vla-course train pi0_base [--quick] [--root DIR] [--overwrite]

Bad input (unknown task or policy, a bad number, unwritable root, missing checkpoint, robot not
found) prints one line, ``error: ...``, that names the problem and the fix, and exits with code 2
before anything is written. Ctrl-C (or SIGTERM, SIGHUP) exits with 128 + the signal number (130
for Ctrl-C) and keeps what is finished: a recording's episodes, a demo's video so far, an
evaluation's report so far.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from vla_course.constants import CAMERAS, COLORS, IMAGE_SIZE, VIDEO_SIZE
from vla_course.data.durable import StopSignals, short  # short: a 10,000-character argument is not echoed in full

EXIT_USAGE = 2
DEFAULT_POLICY, DEFAULT_TASK = "expert", "pick_place"
# The demo shows the learned VLA acting from language, on a held-out layout (seeds 10000.. are never recorded).
DEMO_POLICY, DEMO_SEED = "pi0", 10_001
DEFAULT_DEMO_OUT = "outputs/so100_demo.mp4"
DEMO_HOLD_SECONDS = 1.0  # the last frame, with the outcome written on it, stays this long
QUICK_ROOT = Path("outputs") / "quick_checkpoints"  # `train --quick` without --root: never data/checkpoints
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")


class CliError(Exception):
    """An error the user can fix; printed as one line."""


# --- checking arguments ------------------------------------------------------------------------------
def _number(kind, low=None, high=None, example=None, above=False):
    """An argparse type: ``kind`` (int or float), finite, in range; its error names the range and an example."""
    want = f"{'an integer' if kind is int else 'a number'}"
    if low is not None and high is not None:
        want += f" in {low}..{high}"
    elif low is not None:
        want += f" {'>' if above else '>='} {low}"
    want += f" (e.g. {example})" if example is not None else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (value is None or not math.isfinite(value) or (low is not None and (value <= low if above else value < low))
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"must be {want}, got {short(text)}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _policy_class(name: str):
    from vla_course.policies import POLICIES

    if name not in POLICIES:
        raise CliError(f"unknown policy {short(name)}; available: {', '.join(sorted(POLICIES))}")
    return POLICIES[name]


def _policy_cameras(policy: str) -> tuple[str, ...]:
    return tuple(getattr(_policy_class(policy), "cameras", CAMERAS))


def _policy_kwargs(args, policy: str) -> dict:
    """Options that only some policies take (``--checkpoint`` is for learned policies)."""
    out = {}
    guidance = getattr(args, "guidance", None)
    if guidance is not None:
        if policy != "recap":
            raise CliError(f"--guidance is classifier-free guidance of --policy recap (beta, e.g. 1.5); "
                           f"drop it for --policy {short(policy)}")
        out["guidance"] = guidance
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is None:
        return out
    if policy == "expert":
        raise CliError("--checkpoint is for learned policies (e.g. --policy pi0); the expert has no weights")
    return {**out, "checkpoint": checkpoint}


def _task(task: str | None, instruction: str | None) -> tuple[str, dict]:
    """The task (and its kwargs) from ``--task`` and ``--instruction``; they must agree if both are given."""
    from vla_course.sim.tasks import TASKS, task_from_instruction

    if task is not None and task not in TASKS:
        raise CliError(f"unknown task {short(task)}; available: {', '.join(TASKS)}")
    if instruction is None:
        return task or DEFAULT_TASK, {}
    if not instruction.strip():
        raise CliError('--instruction is empty; give one, e.g. --instruction "put the red cube in the bin", '
                       "or leave it out")
    try:
        found, kwargs = task_from_instruction(instruction)
    except ValueError:
        raise CliError(f"cannot understand the instruction {short(instruction)}; use \"put the <colour> cube in the "
                       "bin\" or \"put the <colour> cube then the <colour> cube in the bin\" (two different colours), "
                       f"colours: {', '.join(COLORS)}") from None
    if task is not None and task != found:
        raise CliError(f"--instruction {short(instruction)} is a {found} task but --task is {task}; drop --task "
                       "(the instruction picks the task)")
    return found, kwargs


def _video_path(out: str) -> Path:
    """Check ``--out`` before the episode runs: a video file name in a folder we can write to."""
    path = Path(out).expanduser()
    if not out.strip() or path.is_dir():
        raise CliError(f"--out {short(out)} is a folder; name a video file, e.g. --out {path / 'demo.mp4'}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        what = f"is not a video file ({path.suffix})" if path.suffix else "has no file extension"
        raise CliError(f"--out {short(out)} {what}; name an .mp4 file, e.g. --out {path.with_suffix('.mp4')}")
    folder = path.resolve().parent
    while not folder.exists():  # write_video makes missing folders; check the first one that exists
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(20, "not a folder")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CliError(f"cannot write {short(out)}: {folder} is not writable ({e.strerror}); "
                       "choose an --out in a writable folder") from None
    return path


def _stopped(stop: KeyboardInterrupt, message: str) -> int:
    """Print the one-line message of an interrupted command; exit code 128 + signal (130: Ctrl-C)."""
    print(f"interrupted: {message}", file=sys.stderr)
    return 128 + int(getattr(stop, "signum", 2))


# --- demo --------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    policy = args.policy or DEMO_POLICY
    _policy_cameras(policy)
    policy_kwargs = _policy_kwargs(args, policy)
    if args.robot == "so100":
        return _demo_real(args, policy, policy_kwargs)
    real = [opt for opt, value in (("--port", args.port), ("--front-camera", args.front_camera),
                                   ("--wrist-camera", args.wrist_camera)) if value is not None]
    if real:
        raise CliError(f"{', '.join(real)}: options of a real arm; add --robot so100 (the sim renders its own cameras)")
    return _demo_sim(args, policy, policy_kwargs)


def _policy_label(policy: str, pol) -> str:
    """How the demo names what is acting: ``pi0 (checkpoint pi0_base)`` or ``expert (scripted)``."""
    checkpoint = getattr(pol, "checkpoint", None)
    return f"{policy} (checkpoint {checkpoint})" if checkpoint else f"{policy} (scripted, privileged sim state)"


def _demo_sim(args, policy: str, policy_kwargs: dict) -> int:
    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import make_robot
    from vla_course.viz.video import demo_frame, write_gif, write_video

    task, task_kwargs = _task(args.task, args.instruction)
    out = _video_path(args.out or DEFAULT_DEMO_OUT)
    if args.gif is not None and not args.gif.lower().endswith(".gif"):
        raise CliError(f"--gif {short(args.gif)} must name a .gif file, e.g. --gif docs/demo.gif")
    size = args.video_size or VIDEO_SIZE
    seed = DEMO_SEED if args.seed is None else args.seed
    robot = make_robot("sim", task=task, seed=seed, image_size=IMAGE_SIZE, cameras=CAMERAS,
                       max_relative_target=args.max_relative_target, **task_kwargs)
    with robot:
        pol = make_policy(policy, robot=robot, **policy_kwargs)
        env = robot.env
        instruction, label = robot.instruction, _policy_label(policy, pol)
        frames = []

        def render(outcome=None):
            status = f"t = {len(frames) / env.fps:4.1f} s"
            if getattr(pol, "hierarchical", False) and pol.subtask:  # pi0.5: what it thinks it is doing
                status += f'  thinks: "{pol.subtask}"'
            return demo_frame(env.render("front", size), env.render("wrist", size // 2), instruction, label,
                              status, outcome)

        def record():
            frames.append(render())
            return frames[-1]

        try:
            result = run_episode(robot, pol, render=record, max_steps=args.max_steps)
        except KeyboardInterrupt as stop:
            if not frames:
                return _stopped(stop, "before the first frame; no video written")
            write_video(out, frames, fps=env.fps)
            return _stopped(stop, f"after {len(frames) - 1} steps; the video so far -> {out}")
        verdict = "success" if result.success else "failure"
        last = render(verdict)
    frames = result.frames + [last] * round(DEMO_HOLD_SECONDS * env.fps)
    out = write_video(out, frames, fps=env.fps)
    gif = f", {write_gif(args.gif, frames, fps=env.fps)}" if args.gif else ""
    print(f'{label}, layout seed {seed}: "{instruction}": {verdict} in {result.steps} steps '
          f'({result.seconds:.1f} s) -> {out}{gif}')
    return 0 if result.success or not args.strict else 1


def _demo_real(args, policy: str, policy_kwargs: dict) -> int:
    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import make_robot

    sim_only = [opt for opt, value in (("--task", args.task), ("--seed", args.seed), ("--out", args.out),
                                       ("--video-size", args.video_size)) if value is not None]
    if sim_only:
        raise CliError(f"{', '.join(sim_only)}: options of the simulator demo (a real arm takes --instruction and "
                       "writes no video); drop them")
    if args.instruction is None:
        raise CliError('--robot so100 needs --instruction, what to tell the policy, e.g. '
                       '--instruction "put the red cube in the bin"')
    _task(None, args.instruction)  # one the policy was trained on
    instruction = " ".join(args.instruction.split())
    if policy == "expert":
        raise CliError("the scripted expert reads the simulator's state, so it cannot drive a real arm; "
                       "use a learned policy, e.g. --policy pi0")
    robot = make_robot("so100", port=args.port, front_camera=args.front_camera, wrist_camera=args.wrist_camera,
                       max_relative_target=args.max_relative_target)
    with robot:
        pol = make_policy(policy, robot=robot, **policy_kwargs)
        try:
            result = run_episode(robot, pol, task=instruction, max_steps=args.max_steps, realtime=True)
        except KeyboardInterrupt as stop:
            return _stopped(stop, "the arm was stopped (torque off)")
    print(f'"{instruction}": {policy} ran {result.steps} steps ({result.seconds:.1f} s) on the SO-100 at {args.port}')
    return 0


# --- record ------------------------------------------------------------------------------------------
def cmd_record(args) -> int:
    from vla_course.data.recording import record_dataset

    if not args.root.strip():
        raise CliError("--root is empty; name a new folder for the dataset, e.g. --root data/my_dataset")
    if args.resume and args.overwrite:
        raise CliError("--resume continues the recording in --root and --overwrite replaces it; pick one")
    if args.resume:
        return _record_resume(args)
    if args.episodes is None:
        raise CliError("--episodes is required: how many episodes to record, e.g. --episodes 10")
    policy, task = args.policy or DEFAULT_POLICY, _task(args.task, None)[0]
    _policy_cameras(policy)
    kwargs = _record_policy_kwargs(args, policy)
    try:
        result = record_dataset(args.root, episodes=args.episodes, seed=args.seed or 0, task=task, policy=policy,
                                policy_kwargs=kwargs, overwrite=args.overwrite)
    except KeyboardInterrupt as stop:
        return _record_stopped(stop, args.root)
    print(f"recorded {result.episodes} episodes ({result.frames} frames, success rate "
          f"{result.success_rate:.2f}) to {result.root}")
    return 0


def _record_policy_kwargs(args, policy: str) -> dict:
    expert_only = [opt for opt, value in (("--noise", args.noise), ("--mistake", args.mistake)) if value is not None]
    if expert_only and policy != "expert":
        raise CliError(f"{' and '.join(expert_only)}: options of the scripted expert (--policy expert); "
                       f"drop {'it' if len(expert_only) == 1 else 'them'} for --policy {policy}")
    kwargs = {}
    if args.noise:
        kwargs["noise_std"] = args.noise
    if args.mistake:
        kwargs["mistake"] = args.mistake
    kwargs.update(_policy_kwargs(args, policy))
    return kwargs


def _record_resume(args) -> int:
    from vla_course.data import durable
    from vla_course.data.recording import resume_recording

    plan = durable.plan_resume(args.root)
    s, done = plan.journal["settings"], plan.journal["attempted"]
    recorded = {"--policy": s["policy"], "--task": s["task"], "--seed": s["seed"],
                "--noise": s["policy_kwargs"].get("noise_std", 0.0), "--mistake": s["policy_kwargs"].get("mistake"),
                "--checkpoint": s["policy_kwargs"].get("checkpoint")}
    given = {"--policy": args.policy, "--task": args.task, "--seed": args.seed, "--noise": args.noise,
             "--mistake": args.mistake, "--checkpoint": args.checkpoint}
    clash = [f"{opt} {given[opt]} (it was {recorded[opt]})" for opt in given
             if given[opt] is not None and given[opt] != recorded[opt]]
    if clash:
        raise CliError(f"--resume continues {plan.workdir} with the settings it was recorded with, but got "
                       f"{', '.join(clash)}; drop them, or record into a new --root")
    if s["policy"] is None:
        raise CliError(f"{plan.workdir} was recorded from Python with a policy factory; resume it there: "
                       "vla_course.data.recording.resume_recording(root, policy=factory)")
    total = args.episodes or s["episodes"]
    if total < done:
        raise CliError(f"{plan.workdir} already has {done} episodes; --episodes is the total, so give more than {done}")
    if total == done and plan.journal["state"] == "complete" and plan.workdir == plan.target:
        print(f"nothing to do: {plan.workdir} already has all {done} episodes; record more with "
              f"--resume --episodes {done + 10}")
        return 0
    try:
        result = resume_recording(args.root, episodes=total)
    except KeyboardInterrupt as stop:
        return _record_stopped(stop, args.root)
    print(f"recorded {result.episodes} more episodes (seeds {s['seed'] + done}..{s['seed'] + total - 1}, success "
          f"rate {result.success_rate:.2f}) to {result.root}: {result.total_episodes} episodes in all")
    return 0


def _record_stopped(stop: KeyboardInterrupt, root: str) -> int:
    rec = getattr(stop, "recording", None)
    if rec is None or rec.total_episodes == 0:
        return _stopped(stop, "before the first episode finished; nothing was kept")
    where = f"{rec.root}"
    if rec.root.name.endswith(".partial"):
        where += f" (the old dataset in {root} is replaced only when the new one is complete)"
    kept = f"{rec.total_episodes} finished episode{'s' * (rec.total_episodes != 1)}"
    return _stopped(stop, f"kept {kept} ({rec.frames} frames this run) in {where}; "
                          f"`vla-course record --resume --root {root}` records the rest")


# --- eval --------------------------------------------------------------------------------------------
def evaluate(policy: str, episodes: int, seed: int, task: str = "pick_place", task_kwargs: dict | None = None,
             progress: bool = False, policy_kwargs: dict | None = None) -> dict:
    """Success rate of a policy over ``episodes`` seeds starting at ``seed``.

    On KeyboardInterrupt the report of the episodes finished so far is attached as ``.report``."""
    from tqdm import tqdm  # text bars: their final state survives in saved notebooks

    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import make_robot

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
    cameras = _policy_cameras(policy)
    successes, steps, completed = [], [], []
    robot = make_robot("sim", task=task, seed=seed, image_size=IMAGE_SIZE, cameras=cameras, **(task_kwargs or {}))
    with robot:
        pol = make_policy(policy, robot=robot, **(policy_kwargs or {}))

        def report(**extra) -> dict:
            n = max(len(successes), 1)
            out = {"policy": policy, "task": task, "episodes": len(successes), "seed": seed,
                   "success_rate": sum(successes) / n, "mean_steps": sum(steps) / n,
                   "subtasks_completed": sum(completed) / n,  # targets binned in the task's order, per episode
                   "successes": [bool(s) for s in successes], **extra}
            if getattr(pol, "checkpoint", None):
                out["checkpoint"] = pol.checkpoint
            return out

        try:
            for i in tqdm(range(episodes), desc=f"eval {policy}", disable=not progress):
                robot.reset(seed + i)
                result = run_episode(robot, pol)
                successes.append(result.success)
                steps.append(result.steps)
                completed.append(robot.env.task.progress(robot.env.scene_state()))
        except KeyboardInterrupt as stop:
            stop.report = report(interrupted=True, episodes_requested=episodes)
            raise
    return report()


def cmd_eval(args) -> int:
    policy, seed = args.policy or DEFAULT_POLICY, args.seed or 0
    task, task_kwargs = _task(args.task, args.instruction)
    try:
        report = evaluate(policy, args.episodes, seed, task, task_kwargs, progress=not args.json,
                          policy_kwargs=_policy_kwargs(args, policy))
    except KeyboardInterrupt as stop:
        report = getattr(stop, "report", None)
        done = report["episodes"] if report else 0
        if done:
            _print_report(report, args.json)
        return _stopped(stop, f"after {done} of {args.episodes} episodes" + ("; the report above covers them" if done else ""))
    _print_report(report, args.json)
    return 0


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    n, seed = report["episodes"], report["seed"]
    print(f"{report['policy']} on {report['task']}: success rate {report['success_rate']:.2f} over {n} "
          f"episodes (seeds {seed}..{seed + n - 1}), mean {report['mean_steps']:.0f} steps")


# --- train -------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    import time

    from vla_course.checkpoints import checkpoint_dir
    from vla_course.train import discover, run_recipe

    recipes = discover()
    if args.list or not args.recipe:
        for r in recipes.values():
            print(f"{r.name:<16} {r.description}")
        return 0
    if args.recipe not in recipes:
        raise CliError(f"unknown recipe {short(args.recipe)}; available: {', '.join(sorted(recipes)) or 'none'}")
    quick_default = args.quick and args.root is None
    root = QUICK_ROOT if quick_default else args.root  # None: data/checkpoints
    target = checkpoint_dir(args.recipe, root)
    if target.exists() and not target.is_dir():
        raise CliError(f"{target} is a file, not a checkpoint folder; move it away or choose another --root")
    if target.is_dir() and any(target.iterdir()) and not (args.overwrite or quick_default):
        raise CliError(f"{target} already holds a checkpoint; add --overwrite to replace it, or train into another "
                       f"folder with --root DIR (--quick without --root writes under {QUICK_ROOT}/)")
    start = time.perf_counter()
    out = run_recipe(args.recipe, seed=args.seed, root=root, quick=args.quick)
    print(f"trained {args.recipe} in {time.perf_counter() - start:.0f} s -> {out}")
    return 0


# --- the parser --------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (``error: ...``) like every other error here."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from vla_course.policies import POLICIES
    from vla_course.sim.tasks import TASKS

    policies, tasks = ", ".join(POLICIES), ", ".join(TASKS)
    parser = Parser(prog="vla-course", description=__doc__.split("\n")[0],
                    epilog=f"policies: {policies}. tasks: {tasks}. Each command has --help.")
    sub = parser.add_subparsers(dest="command", required=True)
    seed = _number(int, low=0, example=0)

    def common(p, policy=DEFAULT_POLICY, first_seed=0):
        p.add_argument("--policy", help=f"policy to run: {policies} (default: {policy})")
        p.add_argument("--task", help=f"task: {tasks} (default: {DEFAULT_TASK})")
        p.add_argument("--seed", type=seed, help=f"layout seed, >= 0 (default {first_seed}; episode i uses seed + i)")
        p.add_argument("--checkpoint", default=None,
                       help="checkpoint name in data/checkpoints for a learned policy (pi0: default pi0_base)")
        p.add_argument("--guidance", type=_number(float, 1, 5, 1.5), default=None,
                       help="--policy recap: classifier-free guidance, beta in 1..5 (pi*0.6: 1 = plain "
                            "'advantage: positive', 1.5..2.5 optional; higher moves more aggressively)")

    demo = sub.add_parser("demo", help="run one episode headless, write a video, print the result")
    common(demo, DEMO_POLICY, DEMO_SEED)
    demo.add_argument("--instruction", help='e.g. "put the blue cube in the bin" (picks the task and target cube)')
    demo.add_argument("--out", help=f"video path, .mp4 (default: {DEFAULT_DEMO_OUT})")
    demo.add_argument("--gif", help="also write a small looping GIF of the video here (the README's is made so)")
    demo.add_argument("--video-size", type=_number(int, 32, 1024, 384), help=f"pixels (default {VIDEO_SIZE})")
    demo.add_argument("--robot", default="sim", choices=["sim", "so100"], help="sim (default) or a real SO-100")
    demo.add_argument("--port", help="--robot so100: the arm's serial port, e.g. /dev/ttyACM0")
    demo.add_argument("--front-camera", help="--robot so100: the front camera, e.g. /dev/video0")
    demo.add_argument("--wrist-camera", help="--robot so100: the wrist camera, e.g. /dev/video2")
    demo.add_argument("--max-relative-target", type=_number(float, low=0, example=5, above=True),
                      help="bound on each step, degrees (real arm default: 10)")
    demo.add_argument("--max-steps", type=_number(int, low=1, example=300),
                      help="stop after this many control steps (real arm default: 10 s of control)")
    demo.add_argument("--strict", action="store_true", help="exit 1 if the episode fails")
    demo.set_defaults(func=cmd_demo)

    rec = sub.add_parser("record", help="record episodes into a LeRobotDataset")
    common(rec)
    rec.add_argument("--episodes", type=_number(int, low=1, example=10), help="how many (with --resume: the total)")
    rec.add_argument("--root", required=True, help="new folder for the dataset")
    rec.add_argument("--overwrite", action="store_true",
                     help="replace the dataset in --root (only once the new one is complete)")
    rec.add_argument("--resume", action="store_true",
                     help="continue an interrupted recording in --root with its own settings")
    rec.add_argument("--noise", type=_number(float, low=0, example=2), help="expert action noise (degrees)")
    rec.add_argument("--mistake", choices=["fumble", "drop"], help="make the expert err (and recover)")
    rec.set_defaults(func=cmd_record)

    ev = sub.add_parser("eval", help="success rate of a policy over several seeds")
    common(ev)
    ev.add_argument("--episodes", type=_number(int, low=1, example=20), default=20)
    ev.add_argument("--instruction", help="fix the instruction (and so the target) for every episode")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train", help="run a named training recipe; writes data/checkpoints/<recipe>")
    tr.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    tr.add_argument("--list", action="store_true", help="list the recipes")
    tr.add_argument("--seed", type=seed, default=0)
    tr.add_argument("--root", default=None, help="checkpoint folder (default: data/checkpoints; with --quick: "
                                                 f"{QUICK_ROOT})")
    tr.add_argument("--quick", action="store_true", help="a tiny budget, to check the recipe runs")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of that name")
    tr.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    from vla_course.errors import RobotError

    try:
        with StopSignals():  # SIGTERM and SIGHUP stop a command the way Ctrl-C does
            return args.func(args)
    except KeyboardInterrupt as stop:
        return _stopped(stop, f"{args.command} stopped")
    except (CliError, ValueError, OSError, RobotError) as e:  # OSError: FileNotFound, FileExists, Permission...
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
