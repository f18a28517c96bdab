"""Recording to a LeRobotDataset and reloading it through LeRobot's own class."""

import numpy as np
import pytest

from vla_course.constants import MOTOR_KEYS
from vla_course.data import load_dataset, record_dataset


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "so100"
    return record_dataset(root, episodes=2, seed=0, image_size=32, progress=False)


def test_round_trip_through_lerobot(recorded):
    ds = load_dataset(recorded.root)
    assert ds.num_episodes == 2
    assert ds.num_frames == recorded.frames
    assert ds.fps == 30
    item = ds[0]
    assert item["observation.state"].shape == (6,)
    assert item["action"].shape == (6,)
    assert item["observation.images.front"].shape == (3, 32, 32)  # LeRobot returns CHW float images
    assert item["task"].startswith("put the ") and item["task"].endswith(" cube in the bin")
    assert ds.meta.features["observation.state"]["names"] == list(MOTOR_KEYS)


def test_success_flag_on_last_frame(recorded):
    ds = load_dataset(recorded.root)
    flags = np.array([bool(np.asarray(ds.hf_dataset[i]["next.success"]).reshape(-1)[0]) for i in range(ds.num_frames)])
    ends = np.cumsum([ds.meta.episodes[i]["length"] for i in range(ds.num_episodes)]) - 1
    assert recorded.successes == [True, True]  # the expert succeeds on these seeds
    assert flags[ends].all() and flags.sum() == 2


def _column(ds, key) -> np.ndarray:
    return np.asarray(ds.hf_dataset[key]).reshape(-1)


def test_labels_per_frame(recorded):
    """The contract ``load_chunks`` reads: per-frame labels known only at the end of each episode."""
    ds = load_dataset(recorded.root)
    episode = _column(ds, "episode_index")
    steps_to_go, done = _column(ds, "steps_to_go"), _column(ds, "next.done")
    outcome, expert = _column(ds, "episode_success"), _column(ds, "expert_in_control")
    assert steps_to_go.dtype == np.int64 and done.dtype == bool and outcome.dtype == bool
    for e in range(ds.num_episodes):
        rows = episode == e
        n = int(rows.sum())
        assert list(steps_to_go[rows]) == list(range(n - 1, -1, -1))  # counts down to 0 on the last frame
        assert list(np.flatnonzero(done[rows])) == [n - 1]  # next.done only on the last frame
        assert (outcome[rows] == recorded.successes[e]).all()  # the outcome, constant per episode
    assert expert.all()  # the scripted expert drives every frame


@pytest.mark.skipif(not hasattr(__import__("vla_course.policies").policies.ExpertPolicy, "subtask"),
                    reason="needs ExpertPolicy.subtask")
def test_subtasks_json_names_what_the_expert_does(recorded):
    import json

    subtasks = json.loads((recorded.root / "meta" / "subtasks.json").read_text())
    ds = load_dataset(recorded.root)
    used = sorted(set(_column(ds, "subtask_index").tolist()))
    assert used and used[0] >= 0 and used[-1] < len(subtasks)  # every index points into the list
    texts = [subtasks[i] for i in used]
    assert all(isinstance(t, str) and t for t in texts), texts  # the expert always says what it does
    assert any(t.startswith("pick up the ") for t in texts) and "put it in the bin" in texts
    first = int(_column(ds, "subtask_index")[0])
    assert subtasks[first].startswith("pick up the ")  # an episode starts by picking up a cube


def test_interrupted_recording_keeps_finished_episodes(tmp_path, monkeypatch):
    from vla_course import policies

    calls = {"n": 0}
    original = policies.ExpertPolicy.act

    def act_then_interrupt(self, frame):
        calls["n"] += 1
        if calls["n"] == 200:  # well inside the second episode
            raise KeyboardInterrupt
        return original(self, frame)

    monkeypatch.setattr(policies.ExpertPolicy, "act", act_then_interrupt)
    root = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt) as info:
        record_dataset(root, episodes=3, seed=0, image_size=32, progress=False)
    assert info.value.recording.episodes == 1 and info.value.recording.interrupted
    with pytest.warns(UserWarning, match="1 of 3 episodes.*--resume"):
        ds = load_dataset(root)
    assert ds.num_episodes == 1
    assert len(ds) == info.value.recording.frames
    ds[len(ds) - 1]  # the last frame reads back


def test_existing_root_and_missing_dataset_errors(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        record_dataset(tmp_path / "taken", episodes=1)
    with pytest.raises(FileNotFoundError, match="vla-course record"):
        load_dataset(tmp_path / "nothing")


class SwingAway:
    """A bad learner: swings the shoulder pan 3 degrees further each step and closes the gripper."""

    cameras = ()

    def reset(self):
        pass

    def act(self, frame):
        action = np.array(frame["observation.state"], dtype=np.float32)
        action[0] += 3.0
        action[5] = 0.0
        return action


def test_interventions_record_only_the_expert_taking_over_from_the_learners_state(tmp_path):
    from vla_course.policies import InterventionPolicy

    takeover = 30
    made = []

    def factory(robot, seed):
        made.append(InterventionPolicy(robot, SwingAway(), takeover_step=takeover, seed=seed))
        return made[-1]

    rec = record_dataset(tmp_path / "interventions", episodes=1, seed=0, image_size=32, progress=False,
                         policy=factory, keep="expert")
    plain = record_dataset(tmp_path / "plain", episodes=1, seed=0, image_size=32, progress=False)
    ds, ref = load_dataset(rec.root), load_dataset(plain.root)
    assert made[0].expert_in_control and made[0].steps == takeover + rec.frames  # the learner's steps are not kept
    assert rec.successes == [True]  # the expert recovers from where the learner left the arm
    first = np.asarray(ds[0]["observation.state"])
    start = np.asarray(ref[0]["observation.state"])
    assert abs(first[0] - start[0]) > 20  # the recording starts in the learner's state, far from the usual start
    assert ds.num_frames == rec.frames
    assert _column(ds, "expert_in_control").all() and _column(ds, "steps_to_go")[0] == rec.frames - 1


def test_keep_all_labels_the_learners_frames_and_the_experts(tmp_path):
    from vla_course.policies import InterventionPolicy

    takeover = 30
    made = []

    def factory(robot, seed):
        made.append(InterventionPolicy(robot, SwingAway(), takeover_step=takeover, seed=seed))
        return made[-1]

    rec = record_dataset(tmp_path / "all", episodes=1, seed=0, image_size=32, progress=False, policy=factory)
    ds = load_dataset(rec.root)
    expert = _column(ds, "expert_in_control")
    assert rec.frames == made[0].steps == len(expert)  # every frame is kept, the learner's too
    assert not expert[:takeover].any() and expert[takeover:].all()  # the learner's False, the expert's True
    assert rec.successes == [True] and _column(ds, "episode_success").all()
    assert list(_column(ds, "steps_to_go")[[0, -1]]) == [rec.frames - 1, 0]
    with pytest.raises(ValueError, match="keep must be one of"):
        record_dataset(tmp_path / "bad", episodes=1, keep="learner")
    assert not (tmp_path / "bad").exists()


def test_an_intervention_that_never_happens_records_nothing(tmp_path):
    from vla_course.policies import ExpertPolicy, InterventionPolicy

    def factory(robot, seed):  # the "learner" (the expert itself) finishes before the takeover step
        return InterventionPolicy(robot, ExpertPolicy(robot, seed=seed), takeover_step=10_000)

    rec = record_dataset(tmp_path / "never", episodes=2, seed=0, image_size=32, progress=False, policy=factory,
                         keep="expert")
    assert rec.episodes == 0 and rec.skipped == 2 and rec.frames == 0
    with pytest.raises(ValueError, match="takeover_step"):
        InterventionPolicy(None, SwingAway(), takeover_step=-1)
