"""RECAP (notebook 08): returns from the recording's labels, the distributional value function, loading it."""

import numpy as np
import pytest
import torch

from vla_course.models import TinyVLM
from vla_course.models.synthetic import course_tokenizer, random_pi0_batch, stats_from_batch, tiny_vlm_config
from vla_course.models.value import ValueConfig, ValueFunction
from vla_course.recap import load_value_function, mc_returns, steps_to_go_from_value


def test_returns_count_steps_to_success_and_penalise_failure():
    togo = torch.tensor([3, 2, 1, 0, 2, 1, 0])
    ok = torch.tensor([True] * 4 + [False] * 3)
    g = mc_returns(togo, ok, max_steps=10)  # penalty = 10 steps
    torch.testing.assert_close(g, torch.tensor([-3, -2, -1, 0, -12, -11, -10]) / 20.0)
    assert float(g.min()) >= -1.0 and float(g.max()) == 0.0
    assert (g[4:] < g[:4].min()).all()  # any failure is worse than any success within the episode limit
    torch.testing.assert_close(steps_to_go_from_value(g[:4], 10), togo[:4].float())
    # the worst case is exactly -1: a failed episode's first frame at the episode limit
    assert float(mc_returns(torch.tensor([10]), torch.tensor([False]), 10)) == -1.0
    with pytest.raises(ValueError, match="max_steps"):
        mc_returns(torch.tensor([11]), torch.tensor([True]), 10)
    with pytest.raises(ValueError, match="penalty"):
        mc_returns(togo, ok, 10, penalty=-1)


def _value(bins=11, seed=0):
    torch.manual_seed(seed)
    model = ValueFunction(TinyVLM(course_tokenizer(), tiny_vlm_config()), ValueConfig(bins=bins, state_bins=8))
    batch = random_pi0_batch(6, 4, seed=1)
    model.set_normalization_stats(stats_from_batch(batch))
    return model, batch


def test_the_value_is_the_mean_of_a_distribution_over_return_bins():
    model, batch = _value()
    logits = model.logits(batch)
    assert logits.shape == (6, 11)
    v = model.values(batch)
    torch.testing.assert_close(v, (logits.softmax(-1) * torch.linspace(-1, 0, 11)).sum(-1))
    assert (v >= -1).all() and (v <= 0).all()
    torch.testing.assert_close(model.return_bins(torch.tensor([-1.0, -0.52, -0.04, 0.0, 0.3])),
                               torch.tensor([0, 5, 10, 10, 10]))  # nearest centre, out of range clamped


def test_the_value_function_learns_returns_that_depend_on_the_image_and_the_state():
    model, batch = _value()
    batch = dict(batch, **{"return": torch.tensor([-0.9, -0.7, -0.5, -0.3, -0.1, 0.0])})
    per_row = model.compute_loss(batch, reduction="none")["value"]
    assert per_row.shape == (6,)
    torch.testing.assert_close(per_row.mean(), model.compute_loss(batch)["loss"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        opt.zero_grad()
        model.compute_loss(batch)["loss"].backward()
        opt.step()
    model.eval()
    torch.testing.assert_close(model.values(batch), batch["return"], atol=0.06, rtol=0)
    with pytest.raises(KeyError, match="return"):
        model.compute_loss({k: v for k, v in batch.items() if k != "return"})


def test_load_value_function_predicts_one_value_per_env_frame(tmp_path):
    from vla_course.robot import observation_to_frame
    from vla_course.sim import make_env

    model, _ = _value()
    model.save_pretrained(tmp_path / "value_so100")
    vf = load_value_function(root=tmp_path)
    e = make_env(seed=0, cameras=tuple(model.vlm.config.cameras))
    try:
        obs, _ = e.reset(seed=0)
        frames = [obs]
        for _ in range(2):
            obs, *_ = e.step(obs["observation.state"])
            frames.append(obs)
    finally:
        e.close()
    values = vf.predict(frames)
    assert values.shape == (3,) and values.dtype == np.float32 and ((values >= -1) & (values <= 0)).all()
    direct = model.eval().values(vf.batch(frames)).detach().numpy()
    np.testing.assert_allclose(values, direct, atol=1e-6)
    assert vf.predict(frames[0]).shape == (1,)
    with pytest.raises(ValueError, match="observation.images"):
        vf.predict([{k: v for k, v in frames[0].items() if "wrist" not in k}])
    with pytest.raises(FileNotFoundError, match="vla-course train nothing"):
        load_value_function("nothing", root=tmp_path)


def test_n_step_advantages_bootstrap_from_the_value_within_each_episode():
    from vla_course.recap.advantage import n_step_advantages, normalised_rewards

    togo = torch.tensor([3, 2, 1, 0, 2, 1, 0])
    ok = torch.tensor([True] * 4 + [False] * 3)
    r = normalised_rewards(togo, ok, max_steps=10)
    g = mc_returns(togo, ok, max_steps=10)
    # the rewards sum to the Monte-Carlo return of every frame
    for t, (s, e) in zip(range(7), [(0, 4)] * 4 + [(4, 7)] * 3):
        torch.testing.assert_close(r[t:e].sum(), g[t])
    v = torch.tensor([-0.2, -0.1, -0.05, 0.0, -0.5, -0.55, -0.5])
    a2 = n_step_advantages(r, v, togo, n=2)
    # frame 0: r0 + r1 + V(o2) - V(o0); frame 2: r2 + r3 + 0 (past the end) - V(o2); never across episodes
    torch.testing.assert_close(a2[0], r[0] + r[1] + v[2] - v[0])
    torch.testing.assert_close(a2[2], r[2] + r[3] - v[2])
    torch.testing.assert_close(a2[5], r[5] + r[6] - v[5])
    # n=None is the full return minus V; a perfect V makes it zero everywhere
    torch.testing.assert_close(n_step_advantages(r, v, togo, None), g - v)
    torch.testing.assert_close(n_step_advantages(r, g, togo, 3), torch.zeros(7), atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="whole episodes"):
        n_step_advantages(r[:-1], v[:-1], togo[:-1], 2)


def test_labels_threshold_at_a_percentile_corrections_always_positive_and_the_prompt_drops_out():
    from vla_course.recap.advantage import (advantage_labels, advantage_prompt, advantage_threshold,
                                            condition_on_advantage)

    adv = torch.linspace(-1, 1, 1000)
    thr = advantage_threshold(adv, 0.3)
    pos = advantage_labels(adv, thr)
    assert abs(float(pos.float().mean()) - 0.3) < 0.01
    corrections = torch.zeros(1000, dtype=torch.bool)
    corrections[:10] = True  # the worst advantages, but the expert was driving
    assert advantage_labels(adv, thr, corrections)[:10].all()
    assert advantage_prompt("put the red cube in the bin", True) == "put the red cube in the bin advantage: positive"
    assert advantage_prompt("x", False).endswith("advantage: negative") and advantage_prompt("x", None) == "x"
    batch = {"task": ["put the red cube in the bin"] * 2000, "advantage_positive": torch.arange(2000) % 2 == 0}
    conditioned = condition_on_advantage(0.3)(dict(batch), torch.Generator().manual_seed(0))
    out = conditioned["task"]
    assert conditioned["instruction"] == batch["task"]  # the bare instruction, for the instruction keypoints
    bare = np.mean([t == "put the red cube in the bin" for t in out])
    assert 0.27 < bare < 0.33
    assert all(t.endswith("positive") for t, p in zip(out, batch["advantage_positive"]) if p and t != batch["task"][0])
    with pytest.raises(ValueError, match="positive_fraction"):
        advantage_threshold(adv, 1.0)


class _Still:
    """A learner that never moves: every rule of CorrectionPolicy can then be provoked by hand."""

    cameras = ()

    def __init__(self, robot):
        self.robot = robot

    def reset(self):
        pass

    def act(self, frame):
        return np.asarray(frame["observation.state"], dtype=np.float32)


def _episode(pol, robot, steps):
    from vla_course.robot import action_array_to_dict, observation_to_frame

    for _ in range(steps):
        frame = observation_to_frame(robot.get_observation(), robot.instruction)
        robot.send_action(action_array_to_dict(pol.act(frame)))
        if robot.last_info.get("terminated"):
            break


def test_corrections_take_over_by_rule_and_finish_the_task():
    from vla_course.policies import CorrectionPolicy
    from vla_course.robot import make_robot

    with make_robot("sim", seed=3, cameras=()) as robot:
        robot.reset(3)
        pol = CorrectionPolicy(robot, _Still(robot), no_grasp_by=20)
        _episode(pol, robot, 19)
        assert not pol.expert_in_control  # 19 steps without a grasp: still the learner's
        _episode(pol, robot, 400)
        assert pol.reason == "no grasp by step" and pol.takeover_step == 20 and robot.last_info["success"]
        # the wrong cube in the gripper: the expert takes over at once
        robot.reset(4)
        pol.reset()
        state = robot.env.scene_state()
        other = next(c for c in state["cubes"] if c != state["target"])
        pol.env.held_cube = lambda: other  # as if the learner had grasped it
        try:
            _episode(pol, robot, 1)
        finally:
            del pol.env.held_cube
        assert pol.reason == "wrong cube held" and pol.takeover_step == 0
    with pytest.raises(ValueError, match="no_grasp_by"):
        CorrectionPolicy(robot, _Still(robot), no_grasp_by=0)


def test_a_learner_that_places_the_cube_is_never_corrected_and_a_drop_is():
    from vla_course.policies import CorrectionPolicy, ExpertPolicy
    from vla_course.robot import make_robot

    with make_robot("sim", seed=0, cameras=()) as robot:
        for seed in (0, 1, 2):  # the expert as the learner: it releases above the bin, which is no drop
            robot.reset(seed)
            pol = CorrectionPolicy(robot, ExpertPolicy(robot), no_grasp_by=200)
            _episode(pol, robot, 400)
            assert robot.last_info["success"] and pol.reason is None and not pol.expert_in_control, seed
        robot.reset(0)
        pol = CorrectionPolicy(robot, ExpertPolicy(robot, mistake="drop", recover=False), no_grasp_by=200)
        _episode(pol, robot, 400)
        assert pol.reason == "cube dropped" and robot.last_info["success"]  # the expert picked it up again


def test_views_index_without_copying():
    from vla_course.data.views import Subset, WithColumns

    class Rows:
        def __len__(self):
            return 5

        def batch(self, idx):
            return {"i": torch.as_tensor(idx) * 10}

    sub = Subset(Rows(), [4, 1])
    assert len(sub) == 2 and sub.batch([1, 0])["i"].tolist() == [10, 40]
    cols = WithColumns(Rows(), ret=torch.arange(5) * -1.0)
    assert cols.batch([3])["ret"].tolist() == [-3.0] and cols.batch([3])["i"].tolist() == [30]
    with pytest.raises(ValueError, match="rows"):
        WithColumns(Rows(), ret=torch.zeros(4))
    with pytest.raises(IndexError):
        Subset(Rows(), [5])


@pytest.mark.slow
def test_quick_recap_recipes_value_then_policy_and_a_baseline(tmp_path):
    import json

    from vla_course.train import run_recipe

    import shutil

    from vla_course.checkpoints import CHECKPOINT_DIR

    shutil.copytree(CHECKPOINT_DIR / "pi0_base", tmp_path / "pi0_base")  # the base policy, beside the output
    cache = tmp_path / "cache"
    out = run_recipe("value_so100", seed=0, root=tmp_path, quick=True, cache=cache)
    meta = json.loads((out / "metadata.json").read_text())
    sizes = meta["data_sizes"]
    assert sizes["rollouts"]["episodes"] == 1 and sizes["corrections"]["episodes"] == 1
    assert sizes["demos"]["episodes"] == 2  # one replayed demonstration, one drop without recovery
    assert -1 <= meta["metrics"]["mean_abs_error_heldout"] <= 1
    vf = load_value_function(root=tmp_path)
    assert vf.model.config.bins == 11
    for name in ("recap", "recap_filtered"):
        out = run_recipe(name, seed=0, root=tmp_path, quick=True, cache=cache)
        m = json.loads((out / "metadata.json").read_text())["metrics"]
        assert 0 <= m["success_rate"] <= 1 and m["throughput_per_hour"] >= 0
        assert sum(m["failure_modes"].values()) == m["episodes"] - m["successes"]
        if name == "recap":
            assert 0 < m["advantage"]["positive_fraction"] <= 1 and m["advantage"]["n_step"] == 30
            # pi*0.6: the SFT data (the clean demonstration) and the corrections' expert frames always positive
            clean = json.loads((cache / "datasets" / "pick_place_expert_s0_n1" / "meta" / "info.json").read_text())
            a = m["advantage"]
            assert a["sft_positive"] and a["forced_positive_frames"] == a["correction_frames"] + clean["total_frames"]
        # pi0_base trained with its localization loss (the named cube's pixels): the fine-tunes keep it
        terms = json.loads((out / "metadata.json").read_text())["terms_every_step"]
        assert {t.rsplit(".", 1)[-1] for t in terms} >= {"flow", "localization"}
    assert all(str(cache) in p for parts in meta["data"]["parts"].values() for p in parts)


def test_recap_labels_force_only_the_corrections_positive_and_threshold_the_rest():
    from vla_course.recipes.recap import RecapRecipe, recap_labels

    # three 10-frame episodes: a clean demonstration, a demonstration of a mistake (it fails), a correction
    togo = torch.tensor(list(range(9, -1, -1)) * 3)
    success = torch.tensor([True] * 10 + [False] * 10 + [True] * 10)
    cfg = RecapRecipe(n_step=3, positive_fraction=0.3)
    g = mc_returns(togo, success, cfg.max_steps)
    ramp = 0.3 * (1 - torch.arange(10) / 9)
    # V under-rates the clean demonstration (it goes better than expected: A > 0) and over-rates the mistake
    values = torch.cat([g[:10] - ramp, g[10:20] + ramp, torch.full((10,), -0.5)])
    corr = torch.zeros(30, dtype=torch.bool)
    corr[25:] = True  # the expert took over for the correction's last five frames
    pos, thr = recap_labels({"steps_to_go": togo, "episode_success": success}, values, corr, cfg)
    assert pos[25:].all()                                       # corrections: positive by rule
    assert not pos[10:20].any()                                 # the mistake's frames are negative ...
    assert pos[:7].all()                                        # ... the clean demonstration's positive
    share = pos[~corr].float().mean().item()
    assert abs(share - 0.3) <= 0.05                             # 30% of the labelled frames
    assert isinstance(thr, float)


def test_filtered_bc_keeps_successful_demonstrations_and_rollouts_and_the_corrections_expert_frames():
    from vla_course.recipes.recap import filtered_rows

    # rows 0-3 demos (0-1 a success, 2-3 a give-up), 4-7 rollouts (4-5 fail, 6-7 succeed), 8-11 corrections
    success = torch.tensor([1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=torch.bool)
    corr = torch.zeros(12, dtype=torch.bool)
    corr[10:] = True
    keep = filtered_rows(success, [0, 4, 8, 12], corr)
    assert keep["demos"].tolist() == [0, 1] and keep["successes"].tolist() == [6, 7]
    assert keep["corrections"].tolist() == [10, 11]


def test_value_curve_scores_every_frame_of_a_live_episode_and_finds_the_drop(tmp_path):
    from vla_course.policies import ExpertPolicy
    from vla_course.training.value_curves import value_curve

    model, _ = _value()
    model.save_pretrained(tmp_path / "value_so100")
    vf = load_value_function(root=tmp_path)
    c = value_curve(vf, lambda robot: ExpertPolicy(robot, mistake="drop", recover=False, seed=0), 45_100, 360,
                    keep_frames=True)
    T = c["steps"]
    assert not c["success"] and len(c["value"]) == len(c["return"]) == len(c["held"]) == len(c["frames"]) == T
    np.testing.assert_allclose(c["value"], vf.predict(c["frames"]), atol=1e-6)
    assert c["return"][-1] == pytest.approx(-0.5) and c["return"][0] == pytest.approx(-(T - 1 + 360) / 720)
    at = c["mistake_at"]
    assert at is not None and c["held"][at - 1] is not None  # it opened the gripper while holding the cube
    assert all(h is None for h in c["held"][at + 10:])        # gave up: never held again
    clean = value_curve(vf, lambda robot: ExpertPolicy(robot, seed=0), 45_100, 360)
    assert clean["success"] and clean["mistake_at"] is None and "frames" not in clean
    assert clean["return"][-1] == 0.0


def test_falls_after_and_spearman():
    from vla_course.recap import spearman
    from vla_course.training.value_curves import falls_after

    v = np.array([-0.5, -0.4, -0.3, -0.6, -0.55, -0.2])
    assert falls_after(v, 2, window=2) == (True, pytest.approx(-0.25))
    assert falls_after(v, 3, window=2) == (False, pytest.approx(0.4))
    assert falls_after(v, 5)[0] is False  # nothing after the last step
    with pytest.raises(ValueError, match="not in the episode"):
        falls_after(v, 6)
    x = np.arange(10.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equal lengths"):
        spearman(x, x[:3])


def test_only_recap_checkpoints_are_asked_for_positive_and_the_vocabulary_cannot_tell():
    from vla_course.checkpoints import load_pretrained, read_metadata
    from vla_course.models.tokenizer import split_words
    from vla_course.recap.advantage import POSITIVE, asks_for_positive

    assert asks_for_positive(read_metadata("recap"))
    assert not asks_for_positive(read_metadata("recap_bc_all")) and not asks_for_positive(read_metadata("pi0_base"))
    # the words are in pi0_base's vocabulary too (spelt "advantage:"), so a vocabulary test picks nothing out
    tok = load_pretrained("pi0_base", kind="Pi0").vlm.tokenizer
    assert all(w in tok for w in split_words(POSITIVE)) and "advantage" not in tok
