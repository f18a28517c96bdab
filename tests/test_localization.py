"""Localisation labels (where the named cube is in each camera) and pi0's localisation loss."""

import numpy as np
import pytest
import torch

from vla_course.constants import COLORS
from vla_course.data import record_dataset
from vla_course.data.chunks import load_chunks
from vla_course.data.localization import target_pixels
from vla_course.models.synthetic import random_pi0_batch, stats_from_batch, tiny_pi0
from vla_course.sim import make_env


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("loc") / "so100"
    record_dataset(root, episodes=2, seed=7, image_size=64, progress=False)
    data = load_chunks(root, progress=False)
    xy, valid = target_pixels(data, {0: 7, 1: 8}, image_size=64)
    return data, xy, valid


def _nearest_colour(px):
    palette = {c: np.array(rgba[:3]) / np.linalg.norm(rgba[:3]) for c, rgba in COLORS.items()}
    return max(palette, key=lambda c: palette[c] @ (px / np.linalg.norm(px)))


def test_labels_point_at_the_named_cube_until_the_jaws_close(labelled):
    data, xy, valid = labelled
    assert xy.shape == (len(data), 2, 2) and valid.shape == (len(data), 2)
    for ep, seed in ((0, 7), (1, 8)):
        env = make_env(seed=seed, cameras=())
        env.reset(seed=seed)
        target = env.layout.targets[0]
        env.close()
        idx = torch.nonzero(data.episode_index == ep).flatten()
        assert valid[idx[0], 0], "the front camera sees the named cube at the start"
        for i in idx[valid[idx, 0]][::10].tolist():  # front camera: the labelled pixel shows the named cube
            u, v = ((xy[i, 0] + 1) / 2 * 63).round().long().tolist()
            assert _nearest_colour(data.images["front"][i, v, u].float().numpy()) == target
        closed = idx[data.state[idx, -1] < 30]
        assert len(closed) and not valid[closed[0]:idx[-1] + 1].any(), "no labels once the cube may move"
    assert (xy.abs() <= 1).all()


def test_missing_layout_seed_raises(labelled):
    data, _, _ = labelled
    with pytest.raises(KeyError, match="layout seed"):
        target_pixels(data, {0: 7})


def test_localization_loss_trains_the_instruction_keypoints():
    model = tiny_pi0(chunk_size=4)
    model.config.localization_weight = 1.0
    model.vlm.add_keypoints(2, layer=1)
    model.vlm.add_instruction_keypoints(2, temperature=0.1)
    batch = random_pi0_batch(3, 4, seed=1)
    model.set_normalization_stats(stats_from_batch(batch))
    batch["target_xy"] = torch.tensor([[[0.5, -0.5], [0.0, 0.2]]] * 3)
    batch["target_valid"] = torch.tensor([[True, False]] * 3)
    noise, t = torch.randn(3, 4, 6), torch.full((3,), 0.5)
    out = model.compute_loss(batch, noise=noise, time=t)
    with_loc, loc = out["loss"], model.localization_loss(batch)
    torch.testing.assert_close(out["localization"], loc)
    pred = model.vlm.vision.instruction_xy[:, 0, 0]  # only the front labels are valid
    torch.testing.assert_close(loc, (pred - batch["target_xy"][:, 0]).pow(2).sum(-1).mean())
    model.config.localization_weight = 0.0
    without = model.compute_loss(batch, noise=noise, time=t)
    assert "localization" not in without
    torch.testing.assert_close(without["loss"], with_loc - loc, atol=1e-5, rtol=1e-5)
    model.config.localization_weight = 1.0
    with_loc.backward()
    assert model.vlm.vision.kq_filters.weight.grad.abs().max() > 0
