"""Durable recordings: finished episodes survive signals, crashes and SIGKILL; --resume completes the set;
--overwrite never loses the old dataset; a failed start leaves nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from vla_course.data import durable
from vla_course.data.recording import load_dataset, record_dataset, resume_recording

# A recording in a child process (32-pixel images: fast). ``die_at`` SIGKILLs it at a chosen moment.
DRIVER = """
import os, signal, sys
from vla_course import policies
from vla_course.data import durable
from vla_course.data.recording import record_dataset

root, episodes, die_at = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if die_at == "mid-save":  # LeRobot has written episode 2 in full, the journal does not say so yet
    commit = durable.commit
    def commit_then_die(where, journal, **changes):
        if changes.get("saved") == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        commit(where, journal, **changes)
    durable.commit = commit_then_die
if die_at == "mid-episode":  # well inside episode 2: its frames so far are on disk as images
    act, calls = policies.ExpertPolicy.act, [0]
    def act_then_die(self, frame):
        calls[0] += 1
        if calls[0] == 150:
            os.kill(os.getpid(), signal.SIGKILL)
        return act(self, frame)
    policies.ExpertPolicy.act = act_then_die
try:
    record_dataset(root, episodes=episodes, seed=0, image_size=32, progress=False)
except KeyboardInterrupt as stop:
    print("kept", stop.recording.total_episodes, flush=True)
    sys.exit(128 + stop.signum)
"""


def start_driver(tmp_path, root, episodes, die_at="never"):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(script), str(root), str(episodes), die_at],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_saved(proc, root, n=1, timeout=180):
    """Poll the journal until ``n`` episodes are saved (the child must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        journal = durable.read_journal(root)
        if journal and journal["saved"] >= n:
            return journal
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no episode saved in {timeout} s")


def seeds_and_tasks(root):
    """Each episode's layout seed (journal) and instruction (dataset), checked against fresh layouts."""
    from vla_course.sim import make_env

    journal = durable.read_journal(root)
    ds = load_dataset(root)
    tasks = [ds.meta.episodes[e]["tasks"][0] for e in range(ds.num_episodes)]
    for seed, task in zip(journal["episode_seeds"], tasks):
        env = make_env(seed=seed, cameras=())
        env.reset(seed=seed)
        assert env.instruction == task  # episode i was recorded on layout seed seed + i
        env.close()
    return journal["episode_seeds"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_signal_keeps_the_finished_episodes_and_resume_completes_them(tmp_path, sig):
    root = tmp_path / "ds"
    proc = start_driver(tmp_path, root, episodes=4)
    wait_until_saved(proc, root)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err  # handled like Ctrl-C, not killed
    kept = int(out.split()[-1])
    journal = durable.read_journal(root)
    assert 1 <= kept == journal["saved"] < 4 and journal["state"] == "interrupted"
    with pytest.warns(UserWarning, match=f"{kept} of 4 episodes.*--resume"):
        ds = load_dataset(root)
    assert ds.num_episodes == kept
    ds[len(ds) - 1]  # the last kept frame reads back

    rec = resume_recording(root, progress=False)
    assert rec.episodes == 4 - kept and rec.total_episodes == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete now: no warning
        assert load_dataset(root).num_episodes == 4
    assert seeds_and_tasks(root) == [0, 1, 2, 3]
    assert not (root / "meta" / "recording.lock").exists()


def test_sigkill_mid_save_is_recognised_then_repaired_by_resume(tmp_path, capsys):
    from vla_course.cli import main

    root = tmp_path / "ds"
    proc = start_driver(tmp_path, root, episodes=3, die_at="mid-save")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == 2  # LeRobot's view
    assert durable.read_journal(root)["saved"] == 1  # the journal's: episode 2 never committed
    with pytest.raises(durable.IncompleteRecording, match=r"1 of 3 episodes saved.*record --resume --root"):
        load_dataset(root)
    assert main(["record", "--episodes", "3", "--root", str(root)]) == 2  # a plain re-run refuses...
    assert "--resume" in capsys.readouterr().err  # ...and says what to do

    assert main(["record", "--resume", "--root", str(root)]) == 0
    assert "recorded 2 more episodes (seeds 1..2" in capsys.readouterr().out
    ds = load_dataset(root)
    assert ds.num_episodes == 3 and len(ds) == ds.meta.total_frames
    assert seeds_and_tasks(root) == [0, 1, 2]
    assert len(list((root / "data").glob("*/*.parquet"))) == 3  # the half-committed files were replaced


def test_sigkill_mid_episode_keeps_the_finished_one_readable(tmp_path):
    root = tmp_path / "ds"
    proc = start_driver(tmp_path, root, episodes=3, die_at="mid-episode")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not [p for p in root.rglob("*.png")]  # the cut-off episode was only in memory
    with pytest.warns(UserWarning, match="1 of 3 episodes"):
        ds = load_dataset(root)  # what was finished is readable
    assert ds.num_episodes == 1 and np.asarray(ds[len(ds) - 1]["next.done"]).item()

    rec = resume_recording(root, episodes=2, progress=False)  # --episodes is the total
    assert rec.episodes == 1 and rec.total_episodes == 2 and not (root / "images").exists()  # tidied away
    assert seeds_and_tasks(root) == [0, 1]
    with pytest.raises(ValueError, match="already has 2 episodes"):
        resume_recording(root, episodes=1)


def test_overwrite_replaces_the_old_dataset_only_when_the_new_one_is_complete(tmp_path, monkeypatch):
    from vla_course import policies

    root = tmp_path / "ds"
    record_dataset(root, episodes=1, seed=0, image_size=32, progress=False)
    old_frames = load_dataset(root).num_frames

    def broken(robot, seed):
        raise RuntimeError("policy broke")

    with pytest.raises(RuntimeError, match="policy broke"):
        record_dataset(root, episodes=2, seed=5, image_size=32, progress=False, overwrite=True, policy=broken)
    assert load_dataset(root).num_frames == old_frames and not durable.partial_dir(root).exists()

    act, calls = policies.ExpertPolicy.act, [0]

    def act_then_interrupt(self, frame):
        calls[0] += 1
        if calls[0] == 150:  # inside the second new episode
            raise KeyboardInterrupt
        return act(self, frame)

    monkeypatch.setattr(policies.ExpertPolicy, "act", act_then_interrupt)
    with pytest.raises(KeyboardInterrupt) as info:
        record_dataset(root, episodes=2, seed=5, image_size=32, progress=False, overwrite=True)
    monkeypatch.setattr(policies.ExpertPolicy, "act", act)
    partial = durable.partial_dir(root)
    assert info.value.recording.root == partial and info.value.recording.total_episodes == 1
    with pytest.warns(UserWarning, match=r"unfinished --overwrite .* is still the old dataset .*--resume"):
        assert load_dataset(root).num_frames == old_frames  # the old dataset is still there, whole
    with pytest.raises(FileExistsError, match="already exists"):
        record_dataset(root, episodes=2, seed=5, image_size=32, progress=False)

    rec = resume_recording(root, progress=False)  # finishes the overwrite, then swaps it in
    assert rec.root == root and rec.total_episodes == 2 and not partial.exists()
    assert seeds_and_tasks(root) == [5, 6]


@pytest.mark.parametrize("what", ["file", "folder", "cwd", "empty"])
def test_overwrite_refuses_what_is_not_a_dataset(tmp_path, monkeypatch, what):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("keep me")
    root = {"file": "notes.txt", "folder": "thesis", "cwd": ".", "empty": ""}[what]
    with pytest.raises((FileExistsError, ValueError), match="choose|name a new folder"):
        record_dataset(root, episodes=1, image_size=32, progress=False, overwrite=True)
    assert (tmp_path / "thesis" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "thesis"]


@pytest.mark.parametrize("kwargs, error", [
    ({"policy": "pi0", "policy_kwargs": {"checkpoint": "nope"}}, FileNotFoundError),
    ({"policy_kwargs": {"noise_std": -1.0}}, ValueError),
    ({"task": "juggle"}, ValueError),
    ({"policy": lambda robot, seed: None}, AttributeError),  # fails in the first episode, after the folder exists
])
def test_a_failed_start_leaves_nothing_behind(tmp_path, kwargs, error):
    with pytest.raises(error):
        record_dataset(tmp_path / "new" / "folders" / "ds", episodes=2, image_size=32, progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []  # not even the parent folders


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        resume_recording(tmp_path / "nothing")
    root = tmp_path / "ds"
    record_dataset(root, episodes=1, image_size=32, progress=False)
    with pytest.raises(ValueError, match="recorded with policy 'expert'"):
        resume_recording(root, episodes=2, policy="pi0")
    handle = durable.acquire(root)  # another recording holds the folder
    try:
        with pytest.raises(durable.RecordingBusy, match="another process is recording"):
            resume_recording(root, episodes=2)
    finally:
        durable.release(handle, root)
    (root / durable.JOURNAL).unlink()  # a dataset made by another tool
    with pytest.raises(ValueError, match="cannot be resumed"):
        resume_recording(root, episodes=2)


def test_a_dataset_cut_off_without_a_journal_names_the_fix(tmp_path):
    """A legacy recording killed before LeRobot finalised it: one line, not a misleading Hub error."""
    root = tmp_path / "ds"
    record_dataset(root, episodes=1, image_size=32, progress=False)
    (root / durable.JOURNAL).unlink()
    data = next((root / "data").glob("*/*.parquet"))
    data.write_bytes(data.read_bytes()[:-100])  # no parquet footer
    with pytest.raises(durable.IncompleteRecording, match="record it again.*--overwrite"):
        load_dataset(root)


def test_every_saved_episode_is_complete_on_disk_at_once(tmp_path, monkeypatch):
    """After each save, the files hold exactly the saved episodes, each in a closed parquet file."""
    import pyarrow.parquet as pq

    seen = []
    commit = durable.commit

    def commit_and_look(root, journal, **changes):
        commit(root, journal, **changes)
        if "saved" in changes:
            files = sorted((root / "data").glob("*/*.parquet"))
            rows = [pq.read_metadata(f).num_rows for f in files]  # raises on a file without its footer
            seen.append((changes["saved"], len(files), sum(rows), json.loads((root / "meta/info.json").read_text())))

    monkeypatch.setattr(durable, "commit", commit_and_look)
    rec = record_dataset(tmp_path / "ds", episodes=2, image_size=32, progress=False)
    assert [(saved, files) for saved, files, *_ in seen] == [(1, 1), (2, 2)]
    assert seen[-1][2] == rec.frames == seen[-1][3]["total_frames"]
