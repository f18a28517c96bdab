"""``vla-course``: the command line of the course.

    vla-course demo [--policy expert] [--instruction "put the blue cube in the bin"] [--out outputs/so100_demo.mp4]
    vla-course record --episodes 10 --seed 0 --root data/my_dataset
    vla-course eval --policy expert --episodes 50 --seed 1000 [--json]
    vla-course eval --policy pi0 [--checkpoint pi0_finetune] --episodes 50 --seed 10000
    vla-course train pi0_base

Bad input (unknown task or policy, unwritable root, missing checkpoint, robot not found) prints
one line that names the fix and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vla_course.constants import CAMERAS, IMAGE_SIZE, VIDEO_SIZE

EXIT_USAGE = 2


class CliError(Exception):
    """An error the user can fix; printed as one line."""


def _parse_instruction(task: str, instruction: str | None) -> tuple[str, dict]:
    if not instruction:
        return task, {}
    from vla_course.sim.tasks import task_from_instruction

    return task_from_instruction(instruction)


def _policy_cameras(policy: str) -> tuple[str, ...]:
    from vla_course.policies import POLICIES

    if policy not in POLICIES:
        raise CliError(f"unknown policy {policy!r}; available: {', '.join(sorted(POLICIES))}")
    return tuple(getattr(POLICIES[policy], "cameras", CAMERAS))


def _policy_kwargs(args) -> dict:
    """Options that only some policies take (``--checkpoint`` is for learned policies)."""
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is None:
        return {}
    if args.policy == "expert":
        raise CliError("--checkpoint is for learned policies (e.g. --policy pi0); the expert has no weights")
    return {"checkpoint": checkpoint}


def cmd_demo(args) -> int:
    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import make_robot
    from vla_course.viz.video import annotate, side_by_side, write_video

    task, task_kwargs = _parse_instruction(args.task, args.instruction)
    if args.robot != "sim":
        raise CliError("the demo records a video from the simulator; drive a real arm from Python with "
                       "vla_course.control.run_episode(make_robot('so100', port=...), policy)")
    _policy_cameras(args.policy)
    policy_kwargs = _policy_kwargs(args)
    robot = make_robot("sim", task=task, seed=args.seed, image_size=IMAGE_SIZE, cameras=CAMERAS, **task_kwargs)
    with robot:
        policy = make_policy(args.policy, robot=robot, **policy_kwargs)
        env = robot.env
        instruction = robot.instruction
        step = [0]

        def render():
            front = env.render("front", args.video_size)
            wrist = env.render("wrist", args.video_size // 2)
            status = "success" if robot.last_info.get("success") else f"t = {step[0] / env.fps:4.1f} s"
            step[0] += 1
            return side_by_side(annotate(front, instruction, status), wrist)

        result = run_episode(robot, policy, render=render)
    out = write_video(args.out, result.frames, fps=robot.env.fps if robot.env else 30)
    verdict = "success" if result.success else "failure"
    print(f'"{instruction}": {verdict} in {result.steps} steps ({result.seconds:.1f} s) -> {out}')
    return 0 if result.success or not args.strict else 1


def cmd_record(args) -> int:
    from vla_course.data.recording import check_root, record_dataset

    try:
        check_root(args.root, overwrite=args.overwrite)
    except (FileExistsError, PermissionError) as e:
        raise CliError(str(e)) from e
    _policy_cameras(args.policy)
    policy_kwargs = {}
    if args.noise:
        policy_kwargs["noise_std"] = args.noise
    if args.mistake:
        policy_kwargs["mistake"] = args.mistake
    policy_kwargs.update(_policy_kwargs(args))
    try:
        result = record_dataset(args.root, episodes=args.episodes, seed=args.seed, task=args.task,
                                policy=args.policy, policy_kwargs=policy_kwargs, overwrite=args.overwrite)
    except KeyboardInterrupt as e:
        rec = getattr(e, "recording", None)
        if rec is not None:
            print(f"interrupted: kept {rec.episodes} finished episodes ({rec.frames} frames) in {rec.root}")
        return 130
    print(f"recorded {result.episodes} episodes ({result.frames} frames, success rate "
          f"{result.success_rate:.2f}) to {result.root}")
    return 0


def evaluate(policy: str, episodes: int, seed: int, task: str = "pick_place", task_kwargs: dict | None = None,
             progress: bool = False, policy_kwargs: dict | None = None) -> dict:
    """Success rate of a policy over ``episodes`` seeds starting at ``seed``."""
    from tqdm import tqdm  # text bars: their final state survives in saved notebooks

    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import make_robot

    cameras = _policy_cameras(policy)
    successes, steps = [], []
    robot = make_robot("sim", task=task, seed=seed, image_size=IMAGE_SIZE, cameras=cameras, **(task_kwargs or {}))
    with robot:
        pol = make_policy(policy, robot=robot, **(policy_kwargs or {}))
        for i in tqdm(range(episodes), desc=f"eval {policy}", disable=not progress):
            robot.reset(seed + i)
            result = run_episode(robot, pol)
            successes.append(result.success)
            steps.append(result.steps)
    report = {"policy": policy, "task": task, "episodes": episodes, "seed": seed,
            "success_rate": sum(successes) / episodes, "mean_steps": sum(steps) / episodes,
            "successes": [bool(s) for s in successes]}
    if getattr(pol, "checkpoint", None):
        report["checkpoint"] = pol.checkpoint
    return report


def cmd_eval(args) -> int:
    task, task_kwargs = _parse_instruction(args.task, args.instruction)
    report = evaluate(args.policy, args.episodes, args.seed, task, task_kwargs, progress=not args.json,
                      policy_kwargs=_policy_kwargs(args))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.policy} on {task}: success rate {report['success_rate']:.2f} over {args.episodes} "
              f"episodes (seeds {args.seed}..{args.seed + args.episodes - 1}), mean {report['mean_steps']:.0f} steps")
    return 0


def cmd_train(args) -> int:
    import time

    from vla_course.train import discover, run_recipe

    recipes = discover()
    if args.list or not args.recipe:
        for r in recipes.values():
            print(f"{r.name:<16} {r.description}")
        return 0
    if args.recipe not in recipes:
        raise CliError(f"unknown recipe {args.recipe!r}; available: {', '.join(sorted(recipes)) or 'none'}")
    start = time.perf_counter()
    out = run_recipe(args.recipe, seed=args.seed, root=args.root, quick=args.quick)
    print(f"trained {args.recipe} in {time.perf_counter() - start:.0f} s -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--policy", default="expert", help="policy to run (default: expert)")
        p.add_argument("--task", default="pick_place", help="task name (default: pick_place)")
        p.add_argument("--seed", type=int, default=0, help="layout seed (episode i uses seed + i)")
        p.add_argument("--checkpoint", default=None,
                       help="checkpoint name in data/checkpoints for a learned policy (pi0: default pi0_base)")

    demo = sub.add_parser("demo", help="run one episode headless, write a video, print the result")
    common(demo)
    demo.add_argument("--instruction", help='e.g. "put the blue cube in the bin" (picks the target cube)')
    demo.add_argument("--out", default="outputs/so100_demo.mp4", help="video path (mp4)")
    demo.add_argument("--video-size", type=int, default=VIDEO_SIZE)
    demo.add_argument("--robot", default="sim", choices=["sim", "so100"])
    demo.add_argument("--strict", action="store_true", help="exit 1 if the episode fails")
    demo.set_defaults(func=cmd_demo)

    rec = sub.add_parser("record", help="record episodes into a LeRobotDataset")
    common(rec)
    rec.add_argument("--episodes", type=int, required=True)
    rec.add_argument("--root", required=True, help="new folder for the dataset")
    rec.add_argument("--overwrite", action="store_true", help="delete --root first if it exists")
    rec.add_argument("--noise", type=float, default=0.0, help="expert action noise (degrees)")
    rec.add_argument("--mistake", choices=["fumble", "drop"], help="make the expert err (and recover)")
    rec.set_defaults(func=cmd_record)

    ev = sub.add_parser("eval", help="success rate of a policy over several seeds")
    common(ev)
    ev.add_argument("--episodes", type=int, default=20)
    ev.add_argument("--instruction", help="fix the instruction (and so the target) for every episode")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train", help="run a named training recipe; writes data/checkpoints/<recipe>")
    tr.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    tr.add_argument("--list", action="store_true", help="list the recipes")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--root", default=None, help="checkpoint folder (default: data/checkpoints)")
    tr.add_argument("--quick", action="store_true", help="a tiny budget, to check the recipe runs")
    tr.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a robot that cannot be reached is a user problem, not a traceback
        from vla_course.robot import RobotError

        if isinstance(e, RobotError):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
