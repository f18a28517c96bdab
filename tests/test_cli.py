"""The command line: results on good input, one-line errors with exit code 2 on bad input."""

import json
import subprocess
import sys

import pytest

from vla_course.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vla_course.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_eval_expert_json(capsys):
    assert main(["eval", "--policy", "expert", "--episodes", "3", "--seed", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 3 and 0.0 <= report["success_rate"] <= 1.0
    assert report["success_rate"] == 1.0
    assert report["mean_steps"] > 10


@pytest.mark.parametrize("args, message", [
    (["eval", "--policy", "telepathy"], "unknown policy 'telepathy'; available: expert"),
    (["eval", "--task", "juggle"], "unknown task 'juggle'"),
    (["demo", "--instruction", "make me a sandwich"], "instruction"),
    (["record", "--episodes", "1", "--root", "/proc/forbidden/ds"], "writable"),
    (["eval", "--policy", "pi0", "--guidance", "1.5", "--episodes", "1"], "--guidance is classifier-free guidance of --policy recap"),
    (["eval", "--policy", "recap", "--guidance", "0.5", "--episodes", "1"], "must be a number in 1..5"),
])
def test_bad_input_one_line_exit_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_record_refuses_existing_root(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    assert main(["record", "--episodes", "1", "--root", str(tmp_path / "ds")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_demo_runs_the_learned_vla_by_default_and_holds_the_outcome(tmp_path, capsys):
    import imageio.v3 as iio

    from vla_course.cli import DEMO_HOLD_SECONDS

    out, gif = tmp_path / "demo.mp4", tmp_path / "demo.gif"
    code = main(["demo", "--out", str(out), "--gif", str(gif), "--video-size", "128"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("pi0 (checkpoint pi0_base), layout seed 10001: ") and str(out) in line, line
    import re

    steps = int(re.search(r": (?:success|failure) in (\d+) steps", line).group(1))
    frames = iio.imread(out)
    # every step's frame, the first one, and the last one held for about a second with the outcome on it
    assert frames.shape[0] == steps + 1 + round(DEMO_HOLD_SECONDS * 30)
    assert frames.shape[2] == 2 * 128 and frames.shape[1] > 128  # two labelled panels side by side, bands above, below
    assert float(abs(frames[-1].astype(int) - frames[-2].astype(int)).mean()) < 2.0  # held (video codec noise)
    assert float(abs(frames[-1].astype(int) - frames[steps].astype(int)).mean()) > 2.0  # ... with the outcome drawn
    assert gif.stat().st_size > 1000 and iio.imread(gif).shape[0] > 5
    assert code == 0 or "failure" in line


def test_demo_with_the_expert(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--policy", "expert", "--instruction", "put the blue cube in the bin", "--out", str(out),
                 "--video-size", "128"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith('expert (scripted, privileged sim state), layout seed 10001: "put the blue cube in the bin": '
                           'success') and str(out) in line
    assert out.stat().st_size > 10_000


def test_eval_reports_subtasks_completed_on_multi_step_tasks(capsys):
    assert main(["eval", "--policy", "expert", "--task", "two_in_order", "--episodes", "2", "--seed", "0",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "two_in_order" and report["success_rate"] == 1.0 and report["subtasks_completed"] == 2.0


@pytest.mark.parametrize("args, message", [
    (["eval", "--policy", "pi05", "--checkpoint", "no_such_pi05", "--episodes", "1"], "vla-course train no_such_pi05"),
    (["eval", "--policy", "pi05", "--checkpoint", "pi0_base", "--episodes", "1"], "flat pi0"),
])
def test_pi05_policy_refuses_what_it_cannot_run(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_eval_and_demo_run_the_shipped_recap_policy_with_and_without_guidance(tmp_path, capsys):
    assert main(["eval", "--policy", "recap", "--episodes", "1", "--seed", "10000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 1 and 0.0 <= report["success_rate"] <= 1.0 and report["mean_steps"] >= 1
    out = tmp_path / "recap.mp4"
    code = main(["demo", "--policy", "recap", "--guidance", "2", "--out", str(out), "--video-size", "64",
                 "--max-steps", "40"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("recap (checkpoint recap)") and out.stat().st_size > 1000 and code in (0, 1)


def test_eval_and_demo_run_the_shipped_pi05_and_its_flat_baseline(tmp_path, capsys):
    assert main(["eval", "--policy", "pi05", "--task", "refer", "--episodes", "1", "--seed", "10000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "refer" and 0.0 <= report["success_rate"] <= 1.0 and 0 <= report["subtasks_completed"] <= 1
    assert main(["eval", "--policy", "pi0", "--checkpoint", "pi05_flat", "--task", "refer", "--episodes", "1",
                 "--seed", "10000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    out = tmp_path / "pi05.mp4"
    code = main(["demo", "--policy", "pi05", "--instruction", "clear the table", "--out", str(out), "--video-size", "64",
                 "--max-steps", "40"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("pi05 (checkpoint pi05)") and '"clear the table"' in line, line
    assert out.stat().st_size > 1000 and code in (0, 1)
