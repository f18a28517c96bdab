"""Tokenizer, image encoder, normaliser, flow-matching primitives (against LeRobot's)."""

import math

import pytest
import torch
from lerobot.policies.common.flow_matching import euler_integrate as lerobot_euler
from lerobot.policies.common.flow_matching import sample_time_beta as lerobot_sample_time
from lerobot.policies.common.vla_utils import create_sinusoidal_pos_embedding
from scipy.stats import ks_2samp

from vla_course.models import (ImageEncoder, Normalizer, TinyVLM, WordTokenizer, euler_integrate, interpolate,
                               sample_time, sincos_time_embedding, velocity_target)
from vla_course.models.synthetic import course_tokenizer, random_images, tiny_vlm_config
from vla_course.models.vision import to_float_chw


# ---- tokenizer ------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_specials():
    tok = WordTokenizer(["pick", "up", "the", "red", "cube", "?"])
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    ids = tok.encode("Pick up the RED cube?", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "pick up the red cube ?"
    assert tok.encode("pick the banana")[-1] == tok.unk_id
    assert tok.decode(tok.encode("red") + [tok.eos_id] + tok.encode("cube")) == "red"  # stops at <eos>


def test_tokenizer_grows_without_moving_ids_and_serialises():
    tok = WordTokenizer(["red", "cube"])
    before = {w: tok.word_to_id[w] for w in ("red", "cube")}
    new = tok.add_words("advantage: positive red")
    assert tok.word_to_id["red"] == before["red"] and tok.word_to_id["cube"] == before["cube"]
    assert new[-1] == before["red"] and len(tok) == 4 + 4
    assert tok.decode(tok.encode("advantage: positive")) == "advantage: positive"
    tok2 = WordTokenizer.from_dict(tok.to_dict())
    assert tok2.id_to_word == tok.id_to_word
    with pytest.raises(ValueError):
        tok.add_words(["two words"])


def test_vlm_embedding_grows_with_the_tokenizer():
    tok = course_tokenizer()
    vlm = TinyVLM(tok, tiny_vlm_config())
    old = vlm.embed.weight.detach().clone()
    tok.add_words(["subtask:", "grasp"])
    with pytest.raises(RuntimeError, match="resize_token_embeddings"):
        vlm.tokenize(["grasp"], add_bos=True, add_eos=False)
    vlm.resize_token_embeddings()
    assert vlm.embed.num_embeddings == len(tok)
    assert torch.equal(vlm.embed.weight[: old.shape[0]], old)
    assert vlm.logits(torch.randn(2, vlm.config.width)).shape == (2, len(tok))


# ---- vision -----------------------------------------------------------------------------------
def test_image_encoder_shapes_and_input_formats():
    enc = ImageEncoder(width=24, num_cameras=2, image_size=96, grid=4, channels=(8, 16))
    imgs = random_images(3)
    u8 = [imgs["observation.images.front"], imgs["observation.images.wrist"]]
    tokens = enc(u8)
    assert tokens.shape == (3, 2 * 16, 24)
    chw = [x.permute(0, 3, 1, 2).float() / 255.0 for x in u8]  # LeRobotDataset format
    torch.testing.assert_close(enc(chw), tokens)
    assert enc([x.float() / 255.0 for x in u8]).shape == tokens.shape  # float channels-last


def test_set_grid_keeps_conv_weights_and_resizes_cell_embeddings():
    enc = ImageEncoder(width=24, num_cameras=2, image_size=96, grid=4, channels=(8, 16))
    imgs = random_images(2)
    u8 = [imgs["observation.images.front"], imgs["observation.images.wrist"]]
    old_pos = enc.pos_emb.detach().clone().reshape(4, 4, 24)
    stem = [p.detach().clone() for p in enc.stem.parameters()]
    enc.set_grid(6)
    assert enc.tokens_per_camera == 36 and enc(u8).shape == (2, 2 * 36, 24)
    new_pos = enc.pos_emb.detach().reshape(6, 6, 24)
    for (i, j), (k, m) in {(0, 0): (0, 0), (0, 3): (0, 5), (3, 0): (5, 0), (3, 3): (5, 5)}.items():
        torch.testing.assert_close(new_pos[k, m], old_pos[i, j])  # the corners stay where they were
    assert all(torch.equal(a, b) for a, b in zip(stem, enc.stem.parameters()))
    assert enc.pos_emb.requires_grad


def test_spatial_softmax_finds_where_a_map_peaks():
    enc = ImageEncoder(width=24, num_cameras=1, grid=4, channels=(8, 16), keypoints=2, keypoint_layer=2)
    feat = torch.zeros(1, 16, 12, 12)
    feat[0, 0, 2, 9] = 1.0  # row 2, column 9 of 12
    with torch.no_grad():
        enc.kp_maps.weight.zero_(); enc.kp_maps.bias.zero_()
        enc.kp_maps.weight[0, 0] = 50.0  # keypoint 0 reads channel 0, sharply
        enc.kp_maps.weight[1, 0] = -50.0  # keypoint 1 avoids it: the average over everything else
    xy = enc.spatial_softmax(feat)[0]
    torch.testing.assert_close(xy[0], torch.tensor([-1 + 2 * 9 / 11, -1 + 2 * 2 / 11]), atol=1e-3, rtol=0)
    assert xy[1].abs().max() < 0.05


def test_keypoint_tokens_are_added_after_the_grid_tokens_and_move_with_the_cube():
    torch.manual_seed(0)
    enc = ImageEncoder(width=24, num_cameras=2, grid=4, channels=(8, 16))
    imgs = random_images(2)
    u8 = [imgs["observation.images.front"], imgs["observation.images.wrist"]]
    before = enc(u8)
    enc.add_keypoints(3, layer=1)
    after = enc(u8)
    assert enc.tokens_per_camera == 19 and after.shape == (2, 2 * 19, 24)
    torch.testing.assert_close(after[:, :16], before[:, :16])  # grid tokens untouched (front camera)
    torch.testing.assert_close(after[:, 19:35], before[:, 16:32])  # ... and wrist camera
    # a bright square at two places in an otherwise black frame gives different keypoint tokens
    frames = torch.zeros(2, 96, 96, 3, dtype=torch.uint8)
    frames[0, 10:22, 10:22] = 255
    frames[1, 70:82, 60:72] = 255
    tok = enc([frames, frames])
    assert not torch.allclose(tok[0, 16:19], tok[1, 16:19])
    with pytest.raises(ValueError, match="keypoints"):
        enc.add_keypoints(0)


def test_a_low_starting_temperature_gives_peaked_maps():
    imgs = random_images(2)
    frames = [imgs["observation.images.front"], imgs["observation.images.wrist"]]
    peaks = {}
    for temp in (1.0, 0.05):
        torch.manual_seed(0)
        enc = ImageEncoder(width=24, num_cameras=2, grid=4, channels=(8, 16))
        enc.add_keypoints(4, layer=1, temperature=temp)
        x = torch.cat([to_float_chw(f, 96) for f in frames], 0)
        with torch.no_grad():
            logits = enc.kp_maps(enc.stem[:2](x)) * torch.exp(-enc.kp_log_temp)
        peaks[temp] = torch.softmax(logits.flatten(2), -1).max(-1).values.mean().item()
        assert torch.isclose(enc.kp_log_temp.exp(), torch.tensor(temp))
    assert peaks[0.05] > 5 * peaks[1.0]


def test_vlm_with_keypoints_round_trips_through_a_checkpoint(tmp_path):
    vlm = TinyVLM(course_tokenizer(), tiny_vlm_config())
    vlm.add_keypoints(4, layer=2)
    vlm.save_pretrained(tmp_path)
    back = TinyVLM.from_pretrained(tmp_path)
    assert back.config.keypoints == 4 and back.vision.tokens_per_camera == vlm.vision.tokens_per_camera
    batch = {**random_images(2), "prompt": ["what colour is the cube ?"] * 2}
    torch.testing.assert_close(back.embed_prefix(batch)[0], vlm.embed_prefix(batch)[0])


def test_instruction_keypoints_find_what_the_query_names():
    # Two feature channels peak at two different cells; a query that selects channel 0 must land on the
    # first peak, one that selects channel 1 on the second: the same image, two instructions, two places.
    enc = ImageEncoder(width=4, num_cameras=1, grid=4, channels=(8, 16), keypoint_layer=2, instruction_keypoints=1)
    feat = torch.zeros(2, 16, 12, 12)
    feat[:, 0, 2, 9] = 1.0
    feat[:, 1, 10, 3] = 1.0
    with torch.no_grad():
        enc.kq_filters.weight.zero_(); enc.kq_filters.bias.zero_()
        enc.kq_filters.weight[0, 0] = 50.0  # query feature 0 -> filter on channel 0
        enc.kq_filters.weight[1, 1] = 50.0  # query feature 1 -> filter on channel 1
    query = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    xy = enc.instruction_softmax(feat, query)[:, 0]
    cell = lambda r, c: torch.tensor([-1 + 2 * c / 11, -1 + 2 * r / 11])  # noqa: E731
    torch.testing.assert_close(xy[0], cell(2, 9), atol=1e-3, rtol=0)
    torch.testing.assert_close(xy[1], cell(10, 3), atol=1e-3, rtol=0)


def test_vlm_instruction_keypoints_depend_on_the_prompt_and_round_trip(tmp_path):
    torch.manual_seed(0)
    vlm = TinyVLM(course_tokenizer(), tiny_vlm_config())
    imgs = random_images(1)
    before = vlm.vision([imgs["observation.images.front"], imgs["observation.images.wrist"]])
    vlm.add_keypoints(3, layer=1)
    vlm.add_instruction_keypoints(2, temperature=0.05)
    g, n = vlm.vision.grid ** 2, vlm.vision.tokens_per_camera
    assert n == g + 3 + 2 and vlm.config.instruction_keypoints == 2
    red = vlm.embed_prefix({**imgs, "prompt": ["pick up the red cube"]})[0]
    blue = vlm.embed_prefix({**imgs, "prompt": ["pick up the blue cube"]})[0]
    torch.testing.assert_close(red[:, :g], before[:, :g])  # the grid tokens do not read the prompt
    torch.testing.assert_close(red[:, g:g + 3], blue[:, g:g + 3])  # nor do the plain keypoints
    for cam in (0, n):  # the instruction keypoints do, in each camera
        assert not torch.allclose(red[:, cam + g + 3:cam + n], blue[:, cam + g + 3:cam + n])
    cams = [imgs["observation.images.front"], imgs["observation.images.wrist"]]
    torch.testing.assert_close(vlm.vision(cams, query=vlm.instruction_query(["pick up the red cube"])), red[:, :2 * n])
    # a condition after the instruction (RECAP): the transformer reads it, the instruction keypoints read only
    # batch["instruction"]; without that key the condition's words dilute their query and the keypoints move
    cond = {**imgs, "prompt": ["pick up the red cube advantage: positive"]}
    told = vlm.embed_prefix({**cond, "instruction": ["pick up the red cube"]})[0]
    torch.testing.assert_close(told[:, :2 * n], red[:, :2 * n])
    assert told.shape[1] > red.shape[1]  # the condition's words are in the prefix
    diluted = vlm.embed_prefix(cond)[0]
    assert not torch.allclose(diluted[:, g + 3:n], red[:, g + 3:n])
    vlm.save_pretrained(tmp_path)
    back = TinyVLM.from_pretrained(tmp_path)
    torch.testing.assert_close(back.embed_prefix({**imgs, "prompt": ["pick up the red cube"]})[0], red)
    with pytest.raises(ValueError, match="query"):
        vlm.vision([imgs["observation.images.front"], imgs["observation.images.wrist"]])


def test_float_images_out_of_range_raise():
    enc = ImageEncoder(width=8, num_cameras=1, channels=(4, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        enc([torch.full((1, 96, 96, 3), 200.0)])


@pytest.mark.parametrize("shape", [(2, 64, 64, 3), (2, 96, 96), (2, 96, 96, 4), (96, 96, 3)])
def test_wrong_image_shape_raises_clear_error(shape):
    enc = ImageEncoder(width=8, num_cameras=1, channels=(4, 8))
    with pytest.raises(ValueError, match=r"\(B, 96, 96, 3\)"):
        enc([torch.zeros(shape, dtype=torch.uint8)])


# ---- normaliser ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mean_std", "quantile"])
def test_normaliser_round_trip_and_state_dict(mode):
    x = torch.randn(500, 6) * torch.tensor([30.0, 20, 20, 20, 90, 40]) + 10
    n = Normalizer(6, mode)
    with pytest.raises(RuntimeError, match="never set"):
        n.normalize(x)
    n.set_stats(Normalizer.compute_stats(x))
    y = n.normalize(x)
    if mode == "mean_std":
        torch.testing.assert_close(y.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
    else:
        assert (y.abs() <= 1.0 + 1e-5).float().mean() > 0.97
    torch.testing.assert_close(n.unnormalize(y), x, atol=1e-3, rtol=1e-5)
    m = Normalizer(6, mode)
    m.load_state_dict(n.state_dict())  # the stats travel with the checkpoint
    torch.testing.assert_close(m.normalize(x), y)


# ---- flow matching -----------------------------------------------------------------------------------
def test_beta_time_sampler_matches_lerobot():
    torch.manual_seed(0)
    n = 100_000
    ours = sample_time(n, generator=torch.Generator().manual_seed(1))
    ours_default = sample_time(n)
    ref = lerobot_sample_time(n, "cpu", alpha=1.5, beta=1.0, scale=0.999, offset=0.001)
    mean = 0.6 * 0.999 + 0.001  # Beta(1.5, 1): mean a/(a+b) = 0.6, var ab/((a+b)^2 (a+b+1)) = 0.0686
    var = 1.5 / (2.5**2 * 3.5) * 0.999**2
    for s in (ours, ours_default, ref):
        assert s.dtype == torch.float32 and s.min() >= 0.001 and s.max() <= 1.0
        assert abs(s.mean().item() - mean) < 0.004 and abs(s.var().item() - var) < 0.002
    assert ks_2samp(ours.numpy(), ref.numpy()).pvalue > 1e-3
    assert ks_2samp(ours_default.numpy(), ref.numpy()).pvalue > 1e-3
    # and a wrong distribution would be caught:
    assert ks_2samp(torch.rand(n).numpy(), ref.numpy()).pvalue < 1e-6


def test_time_sampler_with_a_generator_is_seeded_for_any_beta_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    a = sample_time(50_000, torch.Generator().manual_seed(4), alpha=2.0, beta=3.0)
    b = sample_time(50_000, torch.Generator().manual_seed(4), alpha=2.0, beta=3.0)
    assert torch.equal(torch.get_rng_state(), before)  # the general-Beta path forks a private RNG
    torch.testing.assert_close(a, b)
    ref = torch.distributions.Beta(torch.tensor(2.0), torch.tensor(3.0)).sample((50_000,)) * 0.999 + 0.001
    assert ks_2samp(a.numpy(), ref.numpy()).pvalue > 1e-3
    assert ks_2samp(a.numpy(), sample_time(50_000, torch.Generator().manual_seed(5)).numpy()).pvalue < 1e-6


def test_euler_loop_matches_lerobot():
    noise = torch.randn(3, 4, 6)

    def v(x, t):  # any smooth velocity that depends on x and t
        return torch.sin(x) * t.view(-1, 1, 1) - 0.5 * x + 0.1

    for steps in (1, 3, 10):
        torch.testing.assert_close(euler_integrate(lambda x, t, _c: v(x, t), noise, steps),
                                   lerobot_euler(v, noise, steps))


def test_interpolation_convention_t1_is_noise():
    a, z = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    x1, x0, u = interpolate(a, z, torch.ones(2)), interpolate(a, z, torch.zeros(2)), velocity_target(a, z)
    torch.testing.assert_close(x1, z)
    torch.testing.assert_close(x0, a)
    torch.testing.assert_close(u, z - a)
    # integrating the true velocity from t=1 recovers the data exactly
    torch.testing.assert_close(euler_integrate(lambda x, t, _c: u, z, 10), a, atol=1e-5, rtol=1e-5)


def test_time_embedding_matches_openpi_formula():
    t = torch.tensor([0.001, 0.3, 0.77, 1.0])
    ours = sincos_time_embedding(t, 32, 4e-3, 4.0)
    ref = create_sinusoidal_pos_embedding(t, 32, 4e-3, 4.0, device=torch.device("cpu")).float()
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=0)
    assert math.isclose(float(ours.pow(2).sum(1).mean()), 16.0, rel_tol=1e-5)


def test_one_home_per_flow_concept():
    """pi0 and the heads of chapters 02-03 use the very same functions (no second sample_time)."""
    import vla_course.heads.flow as heads_flow
    import vla_course.heads.nets as heads_nets
    import vla_course.models.pi0 as pi0

    assert pi0.sample_time is heads_flow.sample_time and pi0.interpolate is heads_flow.interpolate
    assert pi0.sincos_time_embedding is heads_nets.sincos_time_embedding
