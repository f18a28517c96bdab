"""CLI edges: every bad input is one line, ``error: ...``, exit 2, with nothing written or lost;
Ctrl-C exits 130 keeping the partial result; SIGTERM stops ``record`` the way Ctrl-C does."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vla_course.cli import main
from vla_course.data import durable
from vla_course.data.recording import load_dataset, record_dataset


def cli(capsys, *args):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small finished recording, to check that bad commands leave it intact."""
    root = tmp_path_factory.mktemp("cli") / "ds"
    record_dataset(root, episodes=1, seed=0, image_size=32, progress=False)
    return root


@pytest.mark.parametrize("args, message", [
    (["eval", "--episodes", "0"], "argument --episodes: must be an integer >= 1"),
    (["eval", "--episodes", "-3"], "argument --episodes: must be an integer >= 1"),
    (["eval", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["record", "--episodes", "1", "--root", "R", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["demo", "--video-size", "0"], "argument --video-size: must be an integer in 32..1024"),
    (["record", "--episodes", "1", "--root", "R", "--noise", "nan"], "argument --noise: must be a number >= 0"),
    (["record", "--episodes", "1", "--root", "R", "--policy", "pi0", "--noise", "2"],
     "--noise: options of the scripted expert"),
    (["record", "--episodes", "1", "--root", "R", "--policy", "pi0", "--mistake", "drop"],
     "--mistake: options of the scripted expert"),
    (["record", "--root", "R"], "--episodes is required"),
    (["record", "--episodes", "1", "--root", ""], "--root is empty"),
    (["record", "--episodes", "1", "--root", "R", "--resume", "--overwrite"], "pick one"),
    (["demo", "--out", "/proc/x.mp4"], "/proc is not writable"),
    (["demo", "--out", "outputs/demo"], "has no file extension; name an .mp4 file, e.g. --out outputs/demo.mp4"),
    (["demo", "--instruction", ""], "--instruction is empty"),
    (["eval", "--instruction", "   "], "--instruction is empty"),
    (["demo", "--instruction", "put the red cube in the bin", "--task", "pick_place_two"],
     "is a pick_place task but --task is pick_place_two; drop --task"),
    (["demo", "--port", "/dev/ttyACM0"], "--port: options of a real arm; add --robot so100"),
    (["demo", "--robot", "so100", "--policy", "expert", "--port", "/dev/x", "--instruction",
      "put the red cube in the bin"], "the scripted expert reads the simulator's state"),
    (["demo", "--robot", "so100", "--policy", "pi0", "--port", "/dev/x"], "--robot so100 needs --instruction"),
    (["demo", "--robot", "so100", "--policy", "pi0", "--out", "x.mp4", "--instruction", "put the red cube in the bin"],
     "--out: options of the simulator demo"),
    (["train", "nope"], "unknown recipe 'nope'"),
])
def test_bad_input_is_one_line_naming_the_option_and_the_fix(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert message in one_error_line(err)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_long_instruction_is_cut_in_the_message(capsys):
    code, _, err = cli(capsys, "demo", "--instruction", "put " * 2500)
    line = one_error_line(err)
    assert code == 2 and len(line) < 400 and "(10000 characters)" in line


def test_help_lists_the_policies_and_tasks(capsys):
    from vla_course.policies import POLICIES
    from vla_course.sim.tasks import TASKS

    for args in (["--help"], ["record", "--help"], ["eval", "--help"], ["demo", "--help"]):
        code, out, _ = cli(capsys, *args)
        assert code == 0
        text = " ".join(out.split())
        assert all(name in text for name in [*POLICIES, *TASKS]), (args, text)


@pytest.mark.parametrize("args", [
    ["--policy", "pio"], ["--task", "pickplace"], ["--seed", "-1"], ["--policy", "pi0", "--checkpoint", "nope"],
    ["--noise", "-2"],
])
def test_a_typo_with_overwrite_keeps_the_old_dataset(capsys, dataset, args):
    frames = load_dataset(dataset).num_frames
    code, _, err = cli(capsys, "record", "--episodes", "2", "--root", dataset, "--overwrite", *args)
    assert code == 2
    one_error_line(err)
    assert load_dataset(dataset).num_frames == frames  # intact...
    assert not durable.partial_dir(dataset).exists()  # ...and no stub beside it


@pytest.mark.parametrize("root", ["", ".", "thesis", "notes.txt"])
def test_overwrite_never_deletes_what_is_not_a_dataset(capsys, tmp_path, monkeypatch, root):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("keep me")
    code, _, err = cli(capsys, "record", "--episodes", "1", "--root", root, "--overwrite")
    assert code == 2
    assert "choose" in one_error_line(err) or "name a new folder" in err
    assert (tmp_path / "thesis" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "thesis"]


def test_resume_with_other_settings_refuses(capsys, dataset):
    code, _, err = cli(capsys, "record", "--resume", "--root", dataset, "--seed", "5")
    assert code == 2 and "--seed 5 (it was 0)" in one_error_line(err)
    code, out, _ = cli(capsys, "record", "--resume", "--root", dataset)  # complete already
    assert code == 0 and out.startswith("nothing to do") and "--resume --episodes 11" in out


def test_demo_on_a_real_arm_without_hardware_is_one_line(capsys):
    code, _, err = cli(capsys, "demo", "--robot", "so100", "--port", "/dev/does-not-exist", "--front-camera",
                       "/dev/video0", "--wrist-camera", "/dev/video2", "--policy", "pi0",
                       "--instruction", "put the red cube in the bin", "--max-relative-target", "5", "--max-steps", "10")
    assert code == 2 and "robot port not found: /dev/does-not-exist" in one_error_line(err)


def test_demo_on_a_real_arm_runs_the_policy_in_real_time(capsys, monkeypatch):
    """The so100 path with a stand-in arm: make_robot's options, the policy, run_episode's, one result line."""
    import vla_course.control
    import vla_course.policies
    import vla_course.robot

    calls = {}

    class Arm:
        def __enter__(self):
            calls["connected"] = True
            return self

        def __exit__(self, *exc):
            calls["disconnected"] = True

    def make_robot(kind, **kwargs):
        calls["robot"] = (kind, kwargs)
        return Arm()

    def run_episode(robot, policy, **kwargs):
        calls["episode"] = kwargs
        return vla_course.control.EpisodeResult(success=False, steps=10, instruction=kwargs["task"], seconds=10 / 30)

    monkeypatch.setattr(vla_course.robot, "make_robot", make_robot)
    monkeypatch.setattr(vla_course.control, "run_episode", run_episode)
    monkeypatch.setattr(vla_course.policies, "make_policy", lambda name, robot=None, **kw: ("policy", name, kw))
    code, out, err = cli(capsys, "demo", "--robot", "so100", "--port", "/dev/ttyACM0", "--front-camera", "/dev/video0",
                         "--wrist-camera", "/dev/video2", "--policy", "pi0", "--checkpoint", "pi0_finetune",
                         "--instruction", "put the  red cube in the bin", "--max-relative-target", "5",
                         "--max-steps", "10")
    assert code == 0, err
    assert calls["robot"] == ("so100", {"port": "/dev/ttyACM0", "front_camera": "/dev/video0",
                                        "wrist_camera": "/dev/video2", "max_relative_target": 5.0})
    assert calls["episode"] == {"task": "put the red cube in the bin", "max_steps": 10, "realtime": True}
    assert calls["disconnected"]
    assert out.strip().splitlines() == ['"put the red cube in the bin": pi0 ran 10 steps (0.3 s) on the SO-100 at '
                                        '/dev/ttyACM0']


def test_ctrl_c_in_demo_keeps_the_video_so_far(capsys, tmp_path, monkeypatch):
    import vla_course.control

    def run_episode(robot, policy, render=None, **kwargs):
        for _ in range(12):
            render()
        raise KeyboardInterrupt

    monkeypatch.setattr(vla_course.control, "run_episode", run_episode)
    out = tmp_path / "demo.mp4"
    code, _, err = cli(capsys, "demo", "--out", out, "--video-size", "64")
    assert code == 130
    assert err.strip().splitlines() == [f"interrupted: after 11 steps; the video so far -> {out}"]
    import imageio.v3 as iio

    assert iio.imread(out).shape[0] == 12


def test_ctrl_c_in_eval_keeps_the_report_so_far(capsys, monkeypatch):
    import vla_course.control

    real, calls = vla_course.control.run_episode, [0]

    def run_episode(robot, policy, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(robot, policy, **kwargs)

    monkeypatch.setattr(vla_course.control, "run_episode", run_episode)
    code, out, err = cli(capsys, "eval", "--episodes", "5", "--json")
    assert code == 130
    report = json.loads(out)
    assert report["episodes"] == 2 and report["episodes_requested"] == 5 and report["interrupted"]
    assert report["success_rate"] == 1.0 and len(report["successes"]) == 2
    assert err.strip().splitlines()[-1] == "interrupted: after 2 of 5 episodes; the report above covers them"


# --- train: never silently replace a checkpoint ------------------------------------------------------
@pytest.fixture
def fake_training(monkeypatch):
    import vla_course.train

    runs = []

    def run_recipe(name, seed=0, root=None, quick=False):
        runs.append({"name": name, "seed": seed, "root": root, "quick": quick})
        return f"{root}/{name}"

    monkeypatch.setattr(vla_course.train, "run_recipe", run_recipe)
    return runs


def test_train_refuses_to_replace_a_checkpoint_before_training(capsys, tmp_path, fake_training):
    from vla_course.train import discover

    name = sorted(discover())[0]
    (tmp_path / name).mkdir()
    (tmp_path / name / "model.safetensors").write_bytes(b"shipped weights")
    code, _, err = cli(capsys, "train", name, "--root", tmp_path)
    assert code == 2 and "already holds a checkpoint; add --overwrite" in one_error_line(err)
    code, _, err = cli(capsys, "train", name, "--root", tmp_path, "--quick")  # --quick with --root too
    assert code == 2 and fake_training == []
    assert (tmp_path / name / "model.safetensors").read_bytes() == b"shipped weights"
    code, out, _ = cli(capsys, "train", name, "--root", tmp_path, "--overwrite", "--seed", "3")
    assert code == 0 and fake_training == [{"name": name, "seed": 3, "root": str(tmp_path), "quick": False}]


def test_train_refuses_the_shipped_checkpoints_folder_too(capsys, fake_training):
    from vla_course.checkpoints import CHECKPOINT_DIR

    shipped = sorted(p.name for p in CHECKPOINT_DIR.iterdir() if p.is_dir() and any(p.iterdir()))
    if not shipped:
        pytest.skip("no shipped checkpoint in data/checkpoints")
    code, _, err = cli(capsys, "train", shipped[0])
    if code == 2 and "unknown recipe" in err:
        pytest.skip(f"{shipped[0]} is not a recipe")
    assert code == 2 and str(CHECKPOINT_DIR / shipped[0]) in one_error_line(err) and fake_training == []


def test_train_quick_without_root_writes_under_outputs(capsys, tmp_path, monkeypatch, fake_training):
    from vla_course.train import discover

    monkeypatch.chdir(tmp_path)
    name = sorted(discover())[0]
    (tmp_path / "outputs" / "quick_checkpoints" / name).mkdir(parents=True)
    (tmp_path / "outputs" / "quick_checkpoints" / name / "model.safetensors").write_bytes(b"old quick run")
    code, out, _ = cli(capsys, "train", name, "--quick")  # a quick run replaces the previous quick run
    assert code == 0 and str(fake_training[0]["root"]) == "outputs/quick_checkpoints" and fake_training[0]["quick"]


# --- record: SIGTERM through the command line, then --resume ------------------------------------------
@pytest.mark.slow  # two CLI processes, 96-pixel images: ~30 s
def test_sigterm_during_record_keeps_finished_episodes_and_resume_finishes(tmp_path):
    root = tmp_path / "ds"
    cmd = [sys.executable, "-m", "vla_course.cli", "record", "--root", str(root)]
    proc = subprocess.Popen([*cmd, "--episodes", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not ((journal := durable.read_journal(root)) and journal["saved"] >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: kept ") and f"record --resume --root {root}" in last
    kept = durable.read_journal(root)["saved"]
    assert 1 <= kept < 3

    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"recorded {3 - kept} more episodes (seeds {kept}..2" in done.stdout
    ds = load_dataset(root)
    assert ds.num_episodes == 3 and durable.read_journal(root)["episode_seeds"] == [0, 1, 2]
    assert np.asarray(ds[len(ds) - 1]["next.done"]).item()


@pytest.mark.parametrize("damage", ["no_delta_mask", "typed", "garbage_weights", "empty_weights"])
def test_a_broken_checkpoint_is_one_line_exit_2(capsys, tmp_path, monkeypatch, damage):
    """Everything a checkpoint needs to act is in config.json + model.safetensors, read strictly: a missing
    relative-actions setting, a wrongly typed field or broken weights is one line naming the fix, not a traceback
    or a policy that acts wrongly."""
    import json
    import shutil

    import vla_course.checkpoints as checkpoints

    shipped = checkpoints.CHECKPOINT_DIR / "pi0_base"
    root = tmp_path / "checkpoints"
    shutil.copytree(shipped, root / "broken", ignore=shutil.ignore_patterns("metadata.json"))
    cfg = json.loads((root / "broken" / "config.json").read_text())
    if damage == "no_delta_mask":
        del cfg["pi0"]["delta_mask"]
    elif damage == "typed":
        cfg["pi0"]["chunk_size"] = "sixteen"
    (root / "broken" / "config.json").write_text(json.dumps(cfg))
    weights = root / "broken" / "model.safetensors"
    if damage == "garbage_weights":
        weights.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty_weights":
        weights.write_bytes(b"")
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", root)
    code = main(["eval", "--policy", "pi0", "--checkpoint", "broken", "--episodes", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: checkpoint 'broken'"), err
    assert {"no_delta_mask": "delta_mask", "typed": "chunk_size", "garbage_weights": "model.safetensors",
            "empty_weights": "model.safetensors"}[damage] in err


def test_a_checkpoint_without_metadata_acts_as_it_was_trained(tmp_path, monkeypatch):
    """metadata.json records how a checkpoint was made; nothing reads it to act: without it, pi0 acts the same."""
    import shutil

    import numpy as np

    import vla_course.checkpoints as checkpoints
    from vla_course.policies import make_policy
    from vla_course.robot import make_robot, observation_to_frame

    root = tmp_path / "checkpoints"
    shutil.copytree(checkpoints.CHECKPOINT_DIR / "pi0_base", root / "no_meta", ignore=shutil.ignore_patterns("metadata.json"))
    with make_robot("sim", seed=10_000) as robot:
        frame = observation_to_frame(robot.get_observation(), robot.instruction)
        with_meta = make_policy("pi0", robot=robot, checkpoint="pi0_base")
        monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", root)
        without = make_policy("pi0", robot=robot, checkpoint="no_meta")
    assert without.policy.n_action_steps == with_meta.policy.n_action_steps
    np.testing.assert_array_equal(with_meta.act(frame), without.act(frame))
