"""Compounding errors: the drift from the expert's states, its onset, and the cost's growth with the horizon."""

import numpy as np
import pytest

from vla_course.training.compounding import drift, drift_onset, expert_path, rollout_drift, running_mean_drift


def test_drift_is_the_distance_to_the_nearest_reference_point():
    ref = np.array([[0, 0, 0], [10, 0, 0]], np.float32)
    points = np.array([[0, 0, 0], [9, 0, 0], [5, 3, 4]], np.float32)
    np.testing.assert_allclose(drift(points, ref), [0.0, 1.0, np.sqrt(25 + 9 + 16)], atol=1e-6)
    with pytest.raises(ValueError, match="reference"):
        drift(points, ref[:0])


def test_drift_onset_is_where_the_drift_leaves_for_good():
    assert drift_onset(np.array([0, 12, 3, 11, 15, 20.0])) == 3
    assert drift_onset(np.array([0, 12, 30, 1.0])) is None   # back on the path at the end
    assert drift_onset(np.array([11, 12.0])) == 0
    assert drift_onset(np.array([1.0, 2.0]), threshold=1.5) == 1
    assert drift_onset(np.array([1.0, 2.0]), threshold=2.0) is None


def _rows(drifts):
    return [{"drift": np.asarray(d, float), "steps": len(d)} for d in drifts]


def test_running_mean_drift_averages_only_the_episodes_still_running():
    rate = running_mean_drift(_rows([[1, 1, 1], [3, 5]]), horizon=4)
    np.testing.assert_allclose(rate[:3], [2, 3, 1])
    assert np.isnan(rate[3])


def test_the_expert_replayed_on_its_own_layout_never_drifts():
    from vla_course.policies import ExpertPolicy

    ref = expert_path(10_000)
    assert ref.shape[1] == 3 and len(ref) > 30 and 5 < np.abs(ref).max() < 60  # cm, within the arm's reach
    rows = rollout_drift(ExpertPolicy, 10_000, episodes=1, progress=False)  # a factory: the expert of that robot
    (row,) = rows
    assert row["success"] and row["steps"] == len(ref)
    assert float(row["drift"].max()) < 1e-4 and row["onset"] is None
    assert row["grasps"] and row["grasps"][0] > 0            # it picked the cube up on the way
    high = drift(ref + np.array([0, 0, 20.0]), ref)  # the same path 20 cm higher: off it by up to 20 cm
    assert high.max() <= 20.0 + 1e-6 and high.max() > 5.0


def test_the_few_demonstration_recipes_share_round_0_and_differ_by_the_interventions():
    from vla_course.train import discover

    bc, dagger = discover()["pi0_bc50"].config(), discover()["pi0_dagger50"].config()
    assert bc.recordings == dagger.recordings == ((0, 50, 0.0),)
    assert bc.name == dagger.name != "pi0_base"               # one cached round 0, not pi0_base's
    assert bc.steps == dagger.steps and bc.batch_size == dagger.batch_size
    assert bc.intervention_rounds == () and dagger.intervention_rounds == ((2000, 50),)


@pytest.mark.slow
def test_quick_dagger_recipe_records_its_interventions_under_its_own_name(tmp_path):
    import json

    from vla_course.train import run_recipe

    run_recipe("pi0_dagger50", seed=0, root=tmp_path, quick=True, cache=tmp_path / "cache")
    meta = json.loads((tmp_path / "pi0_dagger50" / "metadata.json").read_text())
    assert len(meta["training"]["rounds"]) == 2
    names = sorted(p.name for p in (tmp_path / "cache" / "datasets").iterdir())
    assert any(n.startswith("pick_place_interventions_pi0_bc50_quick") for n in names), names
    assert sorted(p.name for p in (tmp_path / "cache" / "checkpoints").iterdir()) == [
        "pi0_bc50_quick_round0_seed0", "pi0_bc50_quick_round1_seed0"]
