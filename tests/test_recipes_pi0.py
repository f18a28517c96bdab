"""pi0 recipes, the in-memory chunk dataset, and the ``pi0`` policy behind the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vla_course.checkpoints import CHECKPOINT_DIR, load_pretrained


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vla_course.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    from vla_course.train import run_recipe

    root = tmp_path_factory.mktemp("ckpt")
    run_recipe("pi0_base", seed=0, root=root, quick=True, cache=root / "cache")  # recordings under tmp, too
    return root


@pytest.mark.slow
def test_quick_recipe_writes_loadable_checkpoint(quick_root):
    meta = json.loads((quick_root / "pi0_base" / "metadata.json").read_text())
    assert meta["recipe"] == "pi0_base" and meta["command"].startswith("vla-course train pi0_base")
    assert meta["quick"] is True and meta["config"]["steps"] == 4 and meta["config"]["batch_size"] == 8
    assert meta["metrics"]["eval_episodes"] == 1 and 0.0 <= meta["metrics"]["success_rate"] <= 1.0
    # the instruction keypoints' accuracy is measured on the evaluation layouts, per camera
    acc = meta["metrics"]["instruction_keypoints"]
    assert set(acc) == {"front", "wrist"} and acc["front"]["frames"] == 1
    assert 0 <= acc["front"]["nearest_is_named"] <= 1 and acc["front"]["median_px"] >= 0
    assert meta["training"]["localization_weight"] > 0 and meta["training"]["instruction_keypoints"] == 2
    model = load_pretrained("pi0_base", kind="Pi0", root=quick_root)
    from vla_course.data.chunks import load_chunks
    from vla_course.recipes.pi0 import DELTA_MASK, model_stats

    dataset, interventions = meta["data"]["dataset"]  # quick: one demonstration part, one of interventions
    assert str(quick_root / "cache") in dataset  # the recordings went to the cache given, not the checkout
    assert "interventions" in interventions and meta["data"]["parts"][-1]["driver"] == "round-0 policy"
    assert [r["round"] for r in meta["training"]["rounds"]] == [0, 1]
    # How the model acts travels in its config: relative actions and the re-planning horizon
    assert model.config.delta_mask == DELTA_MASK and model.config.n_action_steps == meta["n_action_steps"]
    # The statistics are the demonstrations' (round 0's; round 1 keeps them): the state's from the dataset,
    # the action chunk's over relative chunks.
    data = load_chunks(dataset, progress=False)
    torch.testing.assert_close(model.state_normalizer.unnormalize(torch.zeros(1, 6))[0],
                               data.stats["observation.state"]["mean"])
    torch.testing.assert_close(model.action_normalizer.unnormalize(torch.zeros(1, 6))[0],
                               model_stats(data, DELTA_MASK)["action"]["mean"])
    assert not torch.allclose(model_stats(data, DELTA_MASK)["action"]["mean"], model_stats(data)["action"]["mean"])
    size = sum(p.stat().st_size for p in (quick_root / "pi0_base").iterdir())
    assert size < 5e6


def test_move_agreement_measures_the_gain_of_the_policys_moves():
    from vla_course.training.evaluate import move_agreement

    rng = np.random.default_rng(0)
    expert = rng.normal(0, 10, size=(40, 6))
    half = move_agreement(expert, 0.5 * expert + 3.0)  # the right direction, half the amount (plus an offset)
    same = move_agreement(expert, np.tile(expert[:1], (40, 1)) + rng.normal(0, 1e-3, (40, 6)))  # one move always
    for j in half:
        assert half[j]["gain"] == pytest.approx(0.5) and half[j]["corr"] == pytest.approx(1.0)
        assert abs(same[j]["gain"]) < 1e-3
        assert half[j]["expert_std_deg"] == pytest.approx(expert[:, list(half).index(j)].std())


@pytest.mark.slow
def test_first_chunk_agreement_compares_with_the_expert(quick_root):
    from vla_course.training.evaluate import first_chunk_agreement

    model = load_pretrained("pi0_base", kind="Pi0", root=quick_root)
    out = first_chunk_agreement(model, seeds=[10_000, 10_001, 10_002], samples=2)
    assert list(out) == ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]
    assert all(np.isfinite(v["gain"]) and -1 <= v["corr"] <= 1 for v in out.values())
    assert out["shoulder_pan"]["expert_std_deg"] > 1.0  # the expert's first move depends on the scene


@pytest.mark.skipif(not (CHECKPOINT_DIR / "pi0_base" / "config.json").exists(), reason="pi0_base not shipped")
def test_the_shipped_pi0_acts_in_absolute_joint_targets():
    """``Pi0Policy(model).act(frame)`` gives targets near the arm's own pose (shoulder_lift about -144 degrees at
    the start), not the relative chunk the model predicts internally (about +10)."""
    from vla_course.models import Pi0Policy
    from vla_course.robot import make_robot, observation_to_frame

    model = load_pretrained("pi0_base", kind="Pi0")
    with make_robot("sim", seed=10_000) as robot:
        frame = observation_to_frame(robot.get_observation(), robot.instruction)
    action = Pi0Policy(model, seed=0).act(frame)
    state = frame["observation.state"]
    assert state[1] < -100  # shoulder_lift starts folded back
    assert np.abs(action[:5] - state[:5]).max() < 30, (action, state)


@pytest.mark.slow
def test_pi0_policy_acts_in_the_sim(quick_root):
    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import joint_limits_deg, make_robot

    robot = make_robot("sim", seed=10_000)
    sent, states = [], []
    with robot:
        policy = make_policy("pi0", robot=robot, checkpoint="pi0_base", root=quick_root)
        assert policy.cameras == ("front", "wrist")
        result = run_episode(robot, policy, max_steps=20,
                             on_step=lambda f, a: (sent.append(a), states.append(f["observation.state"])))
    lower, upper = joint_limits_deg()
    assert result.steps == 20 and len(sent) == 20
    assert all((a >= lower - 1e-3).all() and (a <= upper + 1e-3).all() for a in sent)
    # absolute targets near the arm's pose (a policy sending zeros, or raw relative chunks, would be ~140 deg off)
    assert max(np.abs(a[:5] - s[:5]).max() for a, s in zip(sent, states)) < 60
    assert np.abs(states[-1] - states[0]).max() > 0.5  # and the arm moved


def test_missing_checkpoint_is_one_line_exit_2():
    proc = run_cli("eval", "--policy", "pi0", "--checkpoint", "no_such_ckpt", "--episodes", "1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint 'no_such_ckpt' not found" in lines[0], proc.stderr


def test_checkpoint_option_is_refused_for_the_expert():
    proc = run_cli("eval", "--policy", "expert", "--checkpoint", "pi0_base", "--episodes", "1")
    assert proc.returncode == 2 and "learned policies" in proc.stderr


@pytest.mark.skipif(not (CHECKPOINT_DIR / "vlm_base" / "config.json").exists(), reason="vlm_base not shipped")
def test_mismatched_checkpoint_kind_is_one_line_exit_2():
    proc = run_cli("eval", "--policy", "pi0", "--checkpoint", "vlm_base", "--episodes", "1")
    assert proc.returncode == 2
    assert "holds a TinyVLM, not a Pi0" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(not (CHECKPOINT_DIR / "pi0_base" / "metadata.json").exists(), reason="pi0_base not shipped")
def test_shipped_pi0_replays_its_recorded_rollouts():
    """The shipped checkpoint, run through the CLI's evaluate(), reproduces the episodes its recipe recorded in
    metadata.json (a success and a failure): checkpoint, normalisation, delta actions and the seeded sampler all
    load as trained. The full 50-seed number is measured by benchmarks/pi0_success.py."""
    from vla_course.cli import evaluate

    meta = json.loads((CHECKPOINT_DIR / "pi0_base" / "metadata.json").read_text())
    rows = meta["evaluation"]["episodes_detail"]
    picks = [r for r in rows if r["success"]][:1] + [r for r in rows if not r["success"]][:1]
    for r in picks:
        report = evaluate("pi0", episodes=1, seed=r["seed"], policy_kwargs={"checkpoint": "pi0_base"})
        assert report["checkpoint"] == "pi0_base"
        assert report["successes"] == [r["success"]], (r, report)
