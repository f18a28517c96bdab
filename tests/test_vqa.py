"""Synthetic VQA: answers follow from the scene state, splits are disjoint, batches are model-ready."""

import numpy as np
import pytest

from vla_course.data.vqa import QUESTION_KINDS, generate_vqa, questions_for


@pytest.fixture(scope="module")
def small():
    return generate_vqa(12, split="train", image_size=48, progress=False)


def test_every_kind_for_every_scene(small):
    assert len(small) == 12 * len(QUESTION_KINDS)
    assert small.images["front"].shape == (12, 48, 48, 3) and small.images["front"].dtype == np.uint8
    for s in range(12):
        assert sorted(k for k, i in zip(small.kinds, small.scene) if i == s) == sorted(QUESTION_KINDS)


def test_answers_match_state(small):
    for q, a, k, s in zip(small.questions, small.answers, small.kinds, small.scene):
        state = small.states[s]
        table = [c for c, v in state["cubes"].items() if not v["in_bin"]]
        if k == "caption":
            assert sorted(a.split()) == sorted(table)
        if k == "bin_colour":
            in_bin = [c for c, v in state["cubes"].items() if v["in_bin"]]
            assert a == (in_bin[0] if in_bin else "none")
        if k == "gripper":
            assert a == ("yes" if state["gripper_open"] else "no")


def test_left_right_is_consistent_with_caption():
    state = {"cubes": {"red": {"pos": (0.2, -0.1, 0.01), "in_bin": False},
                       "blue": {"pos": (0.2, 0.1, 0.01), "in_bin": False},
                       "green": {"pos": (0.1, 0.0, 0.01), "in_bin": False}},
             "gripper_open": True, "bin_pos": (0.1, -0.18, 0.0)}
    right = np.array([0.0, 1.0, 0.0])
    qa = {k: (q, a) for k, q, a in questions_for(state, right, np.random.default_rng(0))}
    assert qa["caption"][1] == "red green blue"
    assert qa["nearest_bin"][1] == "red"
    assert qa["count"][1] == "three" and qa["bin_colour"][1] == "none"


def test_heldout_scenes_differ_and_batch_keys(small):
    held = generate_vqa(3, split="heldout", image_size=48, progress=False)
    assert not np.array_equal(held.images["front"][0], small.images["front"][0])
    batch = small.batch([0, 9])
    assert batch["observation.images.front"].shape == (2, 48, 48, 3)
    assert len(batch["prompt"]) == 2 and len(batch["answer"]) == 2
    with pytest.raises(ValueError, match="split"):
        generate_vqa(1, split="test")


def test_subset_keeps_scenes_and_labels(small):
    sub = small.subset([3, 17, 40])
    assert len(sub) == 3 and sub.num_scenes == small.num_scenes
    assert sub.questions == [small.questions[i] for i in (3, 17, 40)]
    assert sub.kinds == [small.kinds[i] for i in (3, 17, 40)]
    np.testing.assert_array_equal(sub.batch([1])["observation.images.front"],
                                  small.batch([17])["observation.images.front"])
