"""The static diagrams of notebooks 01 and 04 (vla_course.viz.diagrams): they draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vla_course.viz import diagrams  # noqa: E402


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def test_vlm_to_vla_writes_the_numbers_it_is_given():
    fig = diagrams.vlm_to_vla(vlm_params=402_976, expert_params=118_902, n_words=96, chunk=(16, 6), flow_steps=10)
    text = _texts(fig)
    assert "402,976" in text and "118,902" in text
    assert "96 words = 16 x 6 numbers" in text and "10 passes of the expert" in text
    plt.close(fig)


def test_two_experts_one_attention_shows_the_sizes():
    fig = diagrams.two_experts_one_attention(n_prefix=60, n_suffix=17, backbone_width=96, expert_width=48,
                                             num_heads=4, head_dim=24, depth=3, backbone_mlp=256, expert_mlp=128,
                                             knowledge_insulation=True)
    text = _texts(fig)
    assert "60 x 96" in text and "17 x 48" in text and "60 + 17 = 77 tokens" in text
    assert "x 3 layers" in text and "(4 x 24)" in text and "stop-gradient" in text
    assert "96 -> 48" in text  # the expert's output projection reads the shared heads x head_dim
    plt.close(fig)


def test_draw_attention_mask_counts_what_the_query_row_sees():
    mask = np.tril(np.ones((5, 5), dtype=bool))
    fig, ax = plt.subplots()
    seen = diagrams.draw_attention_mask(ax, mask, [("prefix", 2), ("actions", 3)], query=3, query_label="a1",
                                        title="causal")
    assert seen == 4
    assert "query 'a1': sees 4 of 5 tokens" in ax.get_title() and ax.get_title().startswith("causal")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["prefix", "actions"]
    assert diagrams.draw_attention_mask(ax, mask, [("all", 5)]) is None
    with pytest.raises(ValueError, match="sum to 4"):
        diagrams.draw_attention_mask(ax, mask, [("prefix", 1), ("actions", 3)])
    with pytest.raises(ValueError, match="square"):
        diagrams.draw_attention_mask(ax, mask[:4], [("all", 4)])
    plt.close(fig)
