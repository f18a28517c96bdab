"""pi0 recipes, the in-memory chunk dataset, and the ``pi0`` policy behind the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vla_course.checkpoints import CHECKPOINT_DIR, load_pretrained
from vla_course.data.chunks import ChunkDataset, random_shift


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vla_course.cli", *args], capture_output=True, text=True,
                          timeout=300)


def tiny_chunks(lengths=(5, 3), chunk_size=4):
    n = sum(lengths)
    episode = torch.cat([torch.full((n_,), i) for i, n_ in enumerate(lengths)])
    frame = torch.cat([torch.arange(n_) for n_ in lengths])
    action = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 6)  # action value = global frame index
    images = {"front": torch.zeros(n, 96, 96, 3, dtype=torch.uint8), "wrist": torch.zeros(n, 96, 96, 3,
                                                                                           dtype=torch.uint8)}
    return ChunkDataset(images=images, state=action.clone(), action=action, episode_index=episode,
                        frame_index=frame, tasks=["put the red cube in the bin"] * n, chunk_size=chunk_size)


def test_chunks_pad_at_episode_end_and_never_cross_episodes():
    data = tiny_chunks()
    batch = data.batch([0, 3, 4, 5, 7])
    a, pad = batch["action"][..., 0], batch["action_is_pad"]
    assert a.shape == (5, 4) and pad.shape == (5, 4)
    assert a[0].tolist() == [0, 1, 2, 3] and not pad[0].any()
    assert a[1].tolist() == [3, 4, 4, 4] and pad[1].tolist() == [False, False, True, True]  # repeats the last
    assert a[2].tolist() == [4, 4, 4, 4] and pad[2].tolist() == [False, True, True, True]
    assert a[3].tolist() == [5, 6, 7, 7]  # second episode starts fresh: never sees episode 0
    assert a[4].tolist() == [7, 7, 7, 7] and pad[4].sum() == 3


def test_concatenated_recordings_keep_episodes_apart_and_pool_statistics():
    from vla_course.data.chunks import concat_chunks

    def with_stats(d, scale):
        d.state = d.state * scale
        d.stats = {"observation.state": {"mean": d.state.mean(0), "std": d.state.std(0, unbiased=False),
                                         "min": d.state.min(0).values, "max": d.state.max(0).values}}
        return d

    a, b = with_stats(tiny_chunks((5, 3)), 1.0), with_stats(tiny_chunks((4,)), -2.0)
    both = concat_chunks([a, b])
    assert len(both) == 12 and both.num_episodes == 3
    assert both.batch([7])["action_is_pad"][0].tolist() == [False, True, True, True]  # a's last frame: no b inside
    st, pooled = both.state, both.stats["observation.state"]
    torch.testing.assert_close(pooled["mean"], st.mean(0))
    torch.testing.assert_close(pooled["std"], st.std(0, unbiased=False))
    torch.testing.assert_close(pooled["min"], st.min(0).values)
    torch.testing.assert_close(pooled["max"], st.max(0).values)
    # localisation labels travel with their frames when every part has them, and are dropped otherwise
    for d, n in ((a, 8), (b, 4)):
        d.target_xy, d.target_valid = torch.full((n, 2, 2), float(n)), torch.ones(n, 2, dtype=torch.bool)
    both = concat_chunks([a, b])
    assert both.batch([0, 9])["target_xy"][:, 0, 0].tolist() == [8.0, 4.0]
    b.target_xy = b.target_valid = None
    assert concat_chunks([a, b]).target_xy is None


def test_random_shift_keeps_shape_and_moves_pixels():
    img = torch.zeros(2, 96, 96, 3, dtype=torch.uint8)
    img[:, 40:56, 40:56] = 255
    out = random_shift(img, 4, torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.dtype == torch.uint8
    assert int(out.sum()) == int(img.sum())  # a square well inside the frame is shifted, not cut
    assert random_shift(img, 0) is img


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    from vla_course.train import run_recipe

    root = tmp_path_factory.mktemp("ckpt")
    run_recipe("pi0_base", seed=0, root=root, quick=True)
    return root


def test_quick_recipe_writes_loadable_checkpoint(quick_root):
    meta = json.loads((quick_root / "pi0_base" / "metadata.json").read_text())
    assert meta["recipe"] == "pi0_base" and meta["command"].startswith("vla-course train pi0_base")
    assert meta["metrics"]["eval_episodes"] == 1 and 0.0 <= meta["metrics"]["success_rate"] <= 1.0
    # the instruction keypoints' accuracy is measured on the evaluation layouts, per camera
    acc = meta["metrics"]["instruction_keypoints"]
    assert set(acc) == {"front", "wrist"} and acc["front"]["frames"] == 1
    assert 0 <= acc["front"]["nearest_is_named"] <= 1 and acc["front"]["median_px"] >= 0
    assert meta["training"]["localization_weight"] > 0 and meta["training"]["instruction_keypoints"] == 2
    model = load_pretrained("pi0_base", kind="Pi0", root=quick_root)
    # The dataset's normalisation statistics travel inside the checkpoint.
    from vla_course.data.chunks import load_chunks

    dataset, interventions = meta["data"]["dataset"]  # quick: one demonstration part, one of interventions
    assert "interventions" in interventions and meta["data"]["parts"][-1]["driver"] == "round-0 policy"
    assert [r["round"] for r in meta["training"]["rounds"]] == [0, 1]
    # The statistics are the demonstrations' (round 0's): round 1 keeps them.
    data = load_chunks(dataset if dataset.startswith("/") else CHECKPOINT_DIR.parents[1] / dataset, progress=False)
    torch.testing.assert_close(model.state_normalizer.unnormalize(torch.zeros(1, 6))[0],
                               data.stats["observation.state"]["mean"])
    # Actions are trained as deltas on the arm joints (metadata says which); their statistics are the chunks'.
    from vla_course.recipes.pi0 import model_stats

    assert meta["delta_mask"] == [True] * 5 + [False]
    data.delta_mask = tuple(meta["delta_mask"])
    torch.testing.assert_close(model.action_normalizer.unnormalize(torch.zeros(1, 6))[0],
                               model_stats(data)["action"]["mean"])
    size = sum(p.stat().st_size for p in (quick_root / "pi0_base").iterdir())
    assert size < 5e6


def test_first_chunk_agreement_compares_with_the_expert(quick_root):
    from vla_course.recipes.pi0 import first_chunk_agreement

    model = load_pretrained("pi0_base", kind="Pi0", root=quick_root)
    out = first_chunk_agreement(model, seeds=[10_000, 10_001, 10_002], samples=2)
    assert list(out) == ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]
    assert all(np.isfinite(v["gain"]) and -1 <= v["corr"] <= 1 for v in out.values())
    assert out["shoulder_pan"]["expert_std_deg"] > 1.0  # the expert's first move depends on the scene


def test_pi0_policy_acts_in_the_sim(quick_root):
    from vla_course.control import run_episode
    from vla_course.policies import make_policy
    from vla_course.robot import joint_limits_deg, make_robot

    robot = make_robot("sim", seed=10_000)
    sent = []
    with robot:
        policy = make_policy("pi0", robot=robot, checkpoint="pi0_base", root=quick_root)
        assert policy.cameras == ("front", "wrist")
        frame_action = policy.act({"observation.state": np.zeros(6, np.float32), "task": robot.instruction,
                                   **{f"observation.images.{c}": np.zeros((96, 96, 3), np.uint8)
                                      for c in ("front", "wrist")}})
        assert frame_action.shape == (6,) and frame_action.dtype == np.float32 and np.isfinite(frame_action).all()
        result = run_episode(robot, policy, max_steps=20, on_step=lambda f, a: sent.append(a))
    lower, upper = joint_limits_deg()
    assert result.steps == 20 and len(sent) == 20
    assert all((a >= lower - 1e-3).all() and (a <= upper + 1e-3).all() for a in sent)


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


class _ZeroChunkModel:
    """Stands in for Pi0 where only the queue/delta logic is under test: it predicts an all-zero chunk."""

    class config:
        chunk_size, action_dim = 16, 6

    class vlm:
        class config:
            cameras = ("front", "wrist")

    calls = 0

    def eval(self):
        return self

    def sample_actions(self, batch, num_steps=10, noise=None):
        self.calls += 1
        return torch.zeros(1, 16, 6)


def test_actor_adds_the_planning_state_back_on_delta_joints():
    from vla_course.data.chunks import from_delta, to_delta
    from vla_course.recipes.pi0 import DELTA_MASK, Pi0Actor

    a, s = torch.randn(2, 16, 6), torch.randn(2, 6)
    torch.testing.assert_close(from_delta(to_delta(a, s, DELTA_MASK), s, DELTA_MASK), a)
    model = _ZeroChunkModel()
    actor = Pi0Actor(model, n_action_steps=4, delta_mask=DELTA_MASK)
    actor.reset()
    img = np.zeros((96, 96, 3), np.uint8)
    outs = []
    for k in range(6):
        state = np.full(6, 10.0 * (k + 1), np.float32)
        outs.append(actor.act({"observation.state": state, "task": "put the red cube in the bin",
                               "observation.images.front": img, "observation.images.wrist": img}))
    assert model.calls == 2  # re-planned after 4 steps
    # steps 0-3 come from the chunk planned at state 10, steps 4-5 from the one planned at state 50
    assert [o[0] for o in outs] == [10, 10, 10, 10, 50, 50]
    assert all(o[5] == 0 for o in outs)  # the gripper stays absolute
