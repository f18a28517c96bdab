"""The in-memory chunk dataset: chunks that never cross episodes, pooled statistics, and the per-frame labels
every recording carries (success, done, outcome, steps to go, who was in control, the subtask)."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from vla_course.data.chunks import LABELS, ChunkDataset, _frame_labels, concat_chunks, load_chunks, random_shift


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


def test_labels_derived_for_recordings_made_before_they_existed():
    """An old recording has only ``next.success``: done, steps to go and the outcome follow from the episodes."""
    table = pa.table({"next.success": [[False], [True], [False], [False], [False]]})
    episode = torch.tensor([0, 0, 1, 1, 1])
    out = _frame_labels(table, torch.arange(5), episode)
    assert out["next.done"].tolist() == [False, True, False, False, True]
    assert out["steps_to_go"].tolist() == [1, 0, 2, 1, 0]
    assert out["episode_success"].tolist() == [True, True, False, False, False]
    assert "expert_in_control" not in out  # not derivable: left out, not guessed
    # frames stored out of order are put in episode order by ``order``
    shuffled = pa.table({"next.success": [[False], [False], [True], [False], [False]]})
    assert _frame_labels(shuffled, torch.tensor([1, 2, 0, 3, 4]), episode)["episode_success"].tolist()[:2] == [True] * 2


def test_concat_keeps_a_label_only_when_every_part_has_it():
    a, b = tiny_chunks((5, 3)), tiny_chunks((4,))
    for d in (a, b):
        d.stats = {"observation.state": {"mean": d.state.mean(0), "std": d.state.std(0), "min": d.state.min(0).values,
                                         "max": d.state.max(0).values}}
        d.labels = {"steps_to_go": torch.arange(len(d))}
        d.subtasks = [f"s{i}" for i in range(len(d))]
    a.labels["expert_in_control"] = torch.ones(len(a), dtype=torch.bool)
    both = concat_chunks([a, b])
    assert set(both.labels) == {"steps_to_go"} and both.subtasks[8] == "s0"
    batch = both.batch([0, 9])
    assert batch["steps_to_go"].tolist() == [0, 1] and batch["subtask"] == ["s0", "s1"]
    b.subtasks = None
    assert concat_chunks([a, b]).subtasks is None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from vla_course.data import record_dataset

    root = tmp_path_factory.mktemp("rec") / "ds"
    record_dataset(root, episodes=2, seed=0, progress=False)
    return root, load_chunks(root, progress=False)


def test_recordings_carry_their_labels_into_the_chunks(recorded):
    root, data = recorded
    assert set(data.labels) == set(LABELS)
    batch = data.batch(torch.arange(len(data)))
    for name, dtype in LABELS.items():
        assert batch[name].dtype == dtype and batch[name].shape == (len(data),)
    ends = torch.nonzero(batch["next.done"]).flatten()
    assert len(ends) == 2 and int(ends[-1]) == len(data) - 1
    assert batch["steps_to_go"][ends].tolist() == [0, 0] and batch["steps_to_go"][0] == ends[0]
    assert batch["expert_in_control"].all()  # the scripted expert recorded every frame
    # the expert's subtasks, in order: first "pick up the <c> cube", then "put it in the bin"
    first = data.subtasks[: int(ends[0]) + 1]
    target = data.tasks[0].split()[2]
    assert first[0] == f"pick up the {target} cube" and "put it in the bin" in first
    assert first.index("put it in the bin") > first.index(f"pick up the {target} cube")
    success = batch["episode_success"][ends]
    assert batch["next.success"][ends].tolist() == success.tolist()
    assert json.loads((root / "meta" / "subtasks.json").read_text())  # the subtask vocabulary is saved
