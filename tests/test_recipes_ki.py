"""The Knowledge Insulation chapter's recipes: a quick pi0_ki run end to end, and the variants' switches."""

import json

import pytest
import torch

from vla_course.recipes.ki import VARIANTS, Pi0KIRecipe, freeze_pretrained, wrong_cube_rate
from vla_course.train import discover, run_recipe


@pytest.mark.slow
def test_quick_pi0_ki_writes_a_ki_checkpoint_with_its_fast_tokenizer_and_curves(tmp_path):
    from vla_course.checkpoints import load_pretrained

    out = run_recipe("pi0_ki", quick=True, root=tmp_path / "ck", cache=tmp_path / "cache")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"]["variant"] == "ki" and meta["quick"] is True
    m = meta["metrics"]
    assert [c["step"] for c in m["curve"]] == [3, 6]  # a snapshot along training, then the end
    assert all(0.0 <= c["vqa"] <= 1.0 and 0.0 <= c["success_rate"] <= 1.0 for c in m["curve"])
    assert m["vqa_retained"] == pytest.approx(m["vqa_heldout"]["overall"] / m["vqa_vlm_base"]["overall"], abs=1e-4)
    assert "robot.fast" in meta["training"]["terms_every_step"] and "vqa.text" in meta["training"]["terms_every_step"]
    model = load_pretrained("pi0_ki", kind="Pi0", root=tmp_path / "ck")
    assert model.config.layout == "knowledge_insulation" and model.config.knowledge_insulation
    assert model.config.discrete_state_bins == 32 and model.fast_tokenizer is not None
    assert (out / "fast_tokenizer.json").is_file()
    assert str(tmp_path / "cache") in meta["data"]["dataset"][0]


def test_each_variant_is_a_registered_recipe_with_its_own_config():
    recipes = discover()
    for name, variant in [("pi0_ki", "ki"), ("pi0_vqa", "vqa"), ("pi0_frozen", "frozen"),
                          ("pi0_ki_no_sg", "ki_no_sg")]:
        assert recipes[name].config().variant == variant
    assert set(VARIANTS) == {"ki", "vqa", "frozen", "ki_no_sg"}
    assert Pi0KIRecipe().fast and Pi0KIRecipe().vqa and not Pi0KIRecipe(variant="frozen").vqa
    assert not Pi0KIRecipe(variant="vqa").fast
    with pytest.raises(ValueError, match="unknown variant"):
        Pi0KIRecipe(variant="kI")
    with pytest.raises(ValueError, match="variant"):
        recipes["pi0_vqa"].fn(Pi0KIRecipe(variant="ki"), seed=0, out_dir=None)


def test_freeze_pretrained_freezes_exactly_the_pretrained_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    trainable = freeze_pretrained(net, {"0.weight", "0.bias"})
    assert trainable == 4 * 2 + 2
    assert [p.requires_grad for p in net.parameters()] == [False, False, True, True]


def test_wrong_cube_rate_counts_episodes_that_held_another_cube():
    ev = {"episodes_detail": [{"target": "red", "held": ["red"]}, {"target": "red", "held": ["blue", "red"]},
                              {"target": "blue", "held": []}, {"target": "blue", "held": ["green"]}]}
    assert wrong_cube_rate(ev) == 0.5
