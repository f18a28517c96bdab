"""The one training loop: a weighted mixture of sources, per-term logs, seeded, resumable to the bit."""

import pytest
import torch

from vla_course.models.synthetic import random_pi0_batch, random_vqa_batch, stats_from_batch, tiny_pi0
from vla_course.training import Source, TrainConfig, train
from vla_course.training.loop import STATE_FILE


class Batches:
    """A fixed set of rows served like a ChunkDataset / VQADataset: ``len`` and ``batch(idx)``."""

    def __init__(self, batch: dict):
        self.rows = batch
        self.n = len(batch["task"] if "task" in batch else batch["prompt"])
        self.seen: list[list[int]] = []

    def __len__(self):
        return self.n

    def batch(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        self.seen.append(idx.tolist())
        return {k: (v[idx] if torch.is_tensor(v) else [v[i] for i in idx.tolist()]) for k, v in self.rows.items()}


def _setup(seed=0):
    model = tiny_pi0(chunk_size=4, seed=seed)
    robot = random_pi0_batch(12, 4, seed=1)
    model.set_normalization_stats(stats_from_batch(robot))
    return model, Batches(robot), Batches(random_vqa_batch(8, seed=2))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_mixture_logs_every_term_of_every_source_and_weights_them():
    model, robot, vqa = _setup()
    seen = []
    log = train(model, [Source("robot", robot, 4), Source("vqa", vqa, 3, weight=0.5)], TrainConfig(steps=3, warmup=1),
                progress=False, callback=lambda step, losses: seen.append(losses))
    assert set(log.losses) == {"loss", "robot.loss", "robot.flow", "vqa.loss", "vqa.text"}
    assert all(len(v) == 3 for v in log.losses.values()) and log.steps == 3 and log.seconds > 0
    for s in seen:
        assert s["loss"] == pytest.approx(s["robot.loss"] + 0.5 * s["vqa.loss"], rel=1e-5)
    assert [len(i) for i in robot.seen] == [4] * 3 and [len(i) for i in vqa.seen] == [3] * 3
    assert not model.training


def test_one_source_logs_its_own_terms_and_the_seed_decides_everything():
    runs = []
    for seed in (0, 0, 1):
        model, robot, _ = _setup()
        log = train(model, Source("robot", robot, 4), TrainConfig(steps=3, warmup=1, seed=seed), progress=False)
        assert set(log.losses) == {"loss", "flow"}
        runs.append((_weights(model), robot.seen))
    assert runs[0][1] == runs[1][1] and runs[0][1] != runs[2][1]
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert any(not torch.equal(runs[0][0][k], runs[2][0][k]) for k in runs[0][0])


def test_an_interrupted_run_resumes_to_exactly_what_an_uninterrupted_run_computes(tmp_path):
    cfg = TrainConfig(steps=6, warmup=2, checkpoint_every=2, seed=3)
    model, robot, vqa = _setup()
    straight = train(model, [Source("robot", robot, 4), Source("vqa", vqa, 2, index_rng="numpy")], cfg,
                     progress=False)
    expected = _weights(model)

    model, robot, vqa = _setup()

    def stop(step, _losses):
        if step == 2:  # after step 3 of 6; steps 1-2 were saved, step 3 is lost with the interrupt
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, [Source("robot", robot, 4), Source("vqa", vqa, 2, index_rng="numpy")], cfg, out_dir=tmp_path,
              progress=False, callback=stop)
    assert (tmp_path / STATE_FILE).exists()
    model, robot, vqa = _setup(seed=9)  # other starting weights: the saved state must replace them all
    resumed = train(model, [Source("robot", robot, 4), Source("vqa", vqa, 2, index_rng="numpy")], cfg,
                    out_dir=tmp_path, progress=False)
    assert len(robot.seen) == 4  # it ran steps 3..6 only
    for k, v in expected.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert resumed.losses["loss"] == pytest.approx(straight.losses["loss"], rel=0, abs=0)
    # resume=False starts over
    model, robot, vqa = _setup()
    train(model, [Source("robot", robot, 4), Source("vqa", vqa, 2, index_rng="numpy")], cfg, out_dir=tmp_path,
          resume=False, progress=False)
    assert len(robot.seen) == 6


def test_a_transform_sees_every_batch_and_bad_sources_are_refused():
    model, robot, _ = _setup()
    calls = []
    train(model, Source("robot", robot, 2, transform=lambda b, g: calls.append(len(b["task"])) or b),
          TrainConfig(steps=2, warmup=1), progress=False)
    assert calls == [2, 2]
    with pytest.raises(ValueError, match="unique"):
        train(model, [Source("a", robot, 2), Source("a", robot, 2)], TrainConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        Source("a", robot, 0)
    with pytest.raises(ValueError, match="index_rng"):
        Source("a", robot, 2, index_rng="python")


def test_frozen_parameters_stay_frozen():
    model, robot, _ = _setup()
    for p in model.vlm.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.vlm.state_dict().items()}
    after_expert = model.action_expert.layers[0].qkv.weight.detach().clone()
    train(model, Source("robot", robot, 4), TrainConfig(steps=2, warmup=1), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.vlm.state_dict().items())
    assert not torch.equal(after_expert, model.action_expert.layers[0].qkv.weight)


def test_evaluation_gives_every_layout_its_own_noise_seed_only_when_asked():
    import numpy as np

    from vla_course.training.evaluate import evaluate_policy

    class StillPolicy:  # records the noise seed it was reset with; never moves
        cameras = ()

        def __init__(self):
            self.seed, self.seen = 7, []

        def reset(self):
            self.seen.append(self.seed)

        def act(self, frame):
            return np.asarray(frame["observation.state"], dtype=np.float32)

    pol = StillPolicy()
    ev = evaluate_policy(pol, 100, 2, progress=False, noise_offset=5)
    assert pol.seen == [105, 106] and [r["policy_seed"] for r in ev["episodes_detail"]] == [105, 106]
    pol = StillPolicy()
    ev = evaluate_policy(pol, 100, 2, progress=False)
    assert pol.seen == [7, 7] and "policy_seed" not in ev["episodes_detail"][0]


def test_checkpoint_policies_pass_the_evaluation_seed_to_the_noise():
    """The CLI's checkpoint wrappers forward ``seed``: evaluate_policy(noise_offset=) reaches the policy inside."""
    from vla_course.policies import Pi0CheckpointPolicy

    pol = Pi0CheckpointPolicy(checkpoint="pi0_base", seed=0)
    pol.seed = 123
    assert pol.policy.seed == 123 and pol.seed == 123
    pol.reset()
    first = torch.randn(3, generator=pol.policy.generator)
    torch.testing.assert_close(first, torch.randn(3, generator=torch.Generator().manual_seed(123)))
