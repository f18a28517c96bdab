"""Tests of the simulated SO-100 world: scene, units, env API, success detection."""

import numpy as np
import pytest

from vla_course.constants import CAMERAS, COLORS, FPS, JOINT_NAMES
from vla_course.sim import TASKS, SO100Env, make_env, scene, units


@pytest.fixture(scope="module")
def env():
    e = make_env(task="pick_place", seed=0, image_size=64, cameras=("front", "wrist"))
    yield e
    e.close()


@pytest.fixture(scope="module")
def blind_env():
    e = make_env(task="pick_place", seed=0, cameras=())
    yield e
    e.close()


# -- scene -----------------------------------------------------------------
def test_scene_builds_with_arm_cubes_bin_and_cameras():
    model = scene.build_model()
    names = {model.camera(i).name for i in range(model.ncam)}
    assert set(CAMERAS) <= names
    assert model.nu == 6
    for colour in COLORS:
        assert model.body(f"cube_{colour}").id > 0
    assert model.body("bin").id > 0
    # The shipped frictionloss of 30 must be gone; the jaw is force-limited.
    assert np.all(model.dof_frictionloss < 1.0)
    assert model.actuator("Jaw").forcerange[1] == pytest.approx(2.0)
    # Physics steps divide a control step exactly.
    assert round(1.0 / (FPS * model.opt.timestep), 9) == 16


def test_visual_meshes_are_decimated_but_collision_meshes_are_not():
    full = scene.build_model(visual_mesh_keep=1.0)
    small = scene.build_model()

    def visual_faces(m):
        ids = [g for g in range(m.ngeom) if m.geom_type[g] == 7 and m.geom_contype[g] == 0]
        return sum(int(m.mesh_facenum[m.geom_dataid[g]]) for g in ids)

    def collision_faces(m):
        ids = [g for g in range(m.ngeom) if m.geom_type[g] == 7 and m.geom_contype[g] != 0]
        return sum(int(m.mesh_facenum[m.geom_dataid[g]]) for g in ids)

    assert visual_faces(small) < 0.4 * visual_faces(full)
    assert collision_faces(small) == collision_faces(full)


# -- units -----------------------------------------------------------------
def test_units_round_trip_and_gripper_range():
    rng = np.random.default_rng(0)
    q = rng.uniform(units.LIMITS_RAD[:, 0], units.LIMITS_RAD[:, 1], size=(50, 6))
    back = units.lerobot_to_rad(units.rad_to_lerobot(q))
    np.testing.assert_allclose(back, q, atol=1e-5)
    closed = units.rad_to_lerobot(units.LIMITS_RAD[:, 0])
    opened = units.rad_to_lerobot(units.LIMITS_RAD[:, 1])
    assert closed[5] == pytest.approx(0.0) and opened[5] == pytest.approx(100.0)
    assert opened[0] == pytest.approx(np.degrees(2.2), rel=1e-5)
    assert units.LIMITS_LEROBOT.shape == (6, 2)
    assert units.gripper_percent_to_rad(units.gripper_rad_to_percent(0.4)) == pytest.approx(0.4)


# -- the env API -----------------------------------------------------------
def test_observation_keys_shapes_dtypes(env):
    obs, info = env.reset(seed=3)
    assert set(obs) == {"observation.state", "observation.images.front", "observation.images.wrist", "task"}
    assert obs["observation.state"].shape == (6,) and obs["observation.state"].dtype == np.float32
    for cam in CAMERAS:
        img = obs[f"observation.images.{cam}"]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 5  # not a blank frame
    assert obs["task"] == env.instruction
    assert obs["task"].startswith("put the ") and obs["task"].endswith(" cube in the bin")
    assert env.fps == FPS and env.max_episode_steps > 0
    assert len(JOINT_NAMES) == env.joint_positions().shape[0]
    obs, reward, terminated, truncated, info = env.step(obs["observation.state"])
    assert isinstance(info["success"], bool) and reward == 0.0 and not terminated and not truncated
    assert env.render(camera="front", size=128).shape == (128, 128, 3)


def test_no_cameras_renders_nothing(blind_env):
    obs, _ = blind_env.reset(seed=0)
    assert set(obs) == {"observation.state", "task"}


def test_state_is_in_lerobot_units(blind_env):
    blind_env.reset(seed=0)
    q_rad = blind_env.data.qpos[blind_env.arm_qpos]
    np.testing.assert_allclose(blind_env.joint_positions()[:5], np.degrees(q_rad[:5]), rtol=1e-5)
    assert 0.0 <= blind_env.joint_positions()[5] <= 100.0


def test_actions_are_clamped_to_joint_limits(blind_env):
    blind_env.reset(seed=0)
    blind_env.step(np.full(6, 1e4, dtype=np.float32))
    np.testing.assert_allclose(blind_env.data.ctrl, units.LIMITS_RAD[:, 1])
    blind_env.step(np.full(6, -1e4, dtype=np.float32))
    np.testing.assert_allclose(blind_env.data.ctrl, units.LIMITS_RAD[:, 0])


def test_a_held_target_is_tracked(blind_env):
    """Commanding a joint moves it there (the shipped friction would prevent this)."""
    obs, _ = blind_env.reset(seed=0)
    action = obs["observation.state"].copy()
    action[0] += 30.0  # pan 30 degrees
    for _ in range(30):
        obs, *_ = blind_env.step(action)
    assert abs(obs["observation.state"][0] - action[0]) < 3.0


def test_bad_actions_raise_clear_errors(blind_env):
    blind_env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        blind_env.step(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        blind_env.step(np.array([0, 0, 0, 0, 0, np.nan]))


def test_reset_is_deterministic():
    a = make_env(seed=7, image_size=48, cameras=("front",))
    b = make_env(seed=7, image_size=48, cameras=("front",))
    try:
        obs_a, _ = a.reset(seed=11)
        obs_b, _ = b.reset(seed=11)
        assert a.scene_state()["cubes"] == b.scene_state()["cubes"]
        np.testing.assert_array_equal(obs_a["observation.images.front"], obs_b["observation.images.front"])
        np.testing.assert_array_equal(obs_a["observation.state"], obs_b["observation.state"])
        # seed=None continues the sequence: 12, 13, ... for both envs alike.
        a.reset()
        b.reset()
        assert a.episode_seed == b.episode_seed == 12
        assert a.scene_state()["cubes"] == b.scene_state()["cubes"]
        # a different seed gives a different layout
        layouts = set()
        for s in range(5):
            a.reset(seed=s)
            layouts.add(repr(sorted(a.scene_state()["cubes"].items())))
        assert len(layouts) == 5
    finally:
        a.close()
        b.close()


def test_layouts_respect_the_task_rules(blind_env):
    counts = set()
    for seed in range(30):
        blind_env.reset(seed=seed)
        state = blind_env.scene_state()
        cubes = state["cubes"]
        counts.add(len(cubes))
        assert state["target"] in cubes and state["target"] in blind_env.instruction
        xy = np.array([c["pos"][:2] for c in cubes.values()])
        r = np.linalg.norm(xy, axis=1)
        assert np.all((r > 0.13) & (r < 0.27))  # within the arm's reach
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy))
        assert d.min() > 0.06
        assert not any(c["in_bin"] for c in cubes.values())
    assert counts == {3, 4, 5}


def test_task_kwargs_fix_the_target_and_count():
    e = make_env(seed=0, cameras=(), target="blue", n_cubes=3)
    try:
        for s in range(3):
            e.reset(seed=s)
            assert e.instruction == "put the blue cube in the bin"
            assert len(e.scene_state()["cubes"]) == 3
    finally:
        e.close()


def test_unknown_task_camera_and_size_raise():
    with pytest.raises(ValueError, match="unknown task 'x'; available: pick_place"):
        make_env(task="x")
    with pytest.raises(ValueError, match="camera"):
        make_env(cameras=("top",))
    with pytest.raises(ValueError, match="image_size"):
        make_env(image_size=0)
    with pytest.raises(ValueError, match="image_size"):
        make_env(image_size=96.5)
    with pytest.raises(ValueError, match="colour"):
        make_env(target="pink")
    assert "pick_place" in TASKS
    e = make_env(cameras=())
    try:
        with pytest.raises(ValueError, match="camera"):
            e.render(camera="top")
    finally:
        e.close()


# -- success detection -------------------------------------------------------
def _hold_still(env, steps=10, gripper=None):
    action = env.joint_positions().copy()
    if gripper is not None:
        action[5] = gripper
    out = None
    for _ in range(steps):
        out = env.step(action)
    return out


def test_cube_dropped_in_bin_with_open_gripper_is_success(blind_env):
    blind_env.reset(seed=1)
    target = blind_env.scene_state()["target"]
    bx, by, _ = scene.BIN_POS
    blind_env.set_cube_pose(target, (bx, by, 0.03))
    _, reward, terminated, truncated, info = _hold_still(blind_env, 1)
    assert info["success"] and terminated and reward == 1.0
    assert blind_env.scene_state()["cubes"][target]["in_bin"]


def test_distractor_in_bin_is_not_success(blind_env):
    blind_env.reset(seed=1)
    state = blind_env.scene_state()
    other = next(c for c in state["cubes"] if c != state["target"])
    bx, by, _ = scene.BIN_POS
    blind_env.set_cube_pose(other, (bx, by, 0.03))
    _, _, terminated, _, info = _hold_still(blind_env, 5)
    assert not info["success"] and not terminated


def test_cube_held_above_bin_is_not_success():
    """Grasp the target with the expert, carry it over the bin, keep holding: no success."""
    from vla_course.sim.expert import ScriptedExpert

    e = make_env(seed=2, cameras=())
    try:
        obs, _ = e.reset(seed=2)
        expert = ScriptedExpert(e)
        while expert.phase != "lower":
            obs, _, terminated, truncated, info = e.step(expert.act(obs))
            assert not terminated and not truncated
        assert e.scene_state()["held"] == e.scene_state()["target"]
        # Keep the gripper closed over the bin: still not a success.
        _, _, terminated, _, info = _hold_still(e, 15, gripper=0.0)
        state = e.scene_state()
        assert state["held"] == state["target"] and not info["success"] and not terminated
        # Open it: the cube falls into the bin and the episode succeeds.
        for _ in range(20):
            _, _, terminated, _, info = _hold_still(e, 1, gripper=60.0)
            if terminated:
                break
        assert info["success"] and e.scene_state()["cubes"][state["target"]]["in_bin"]
    finally:
        e.close()


def test_truncation_at_max_episode_steps():
    e = make_env(seed=0, cameras=(), max_episode_steps=5)
    try:
        obs, _ = e.reset()
        flags = [e.step(obs["observation.state"])[3] for _ in range(5)]
        assert flags == [False] * 4 + [True]
    finally:
        e.close()


def test_two_step_task_checks_the_order():
    e = make_env(task="pick_place_two", seed=0, cameras=(), targets=["red", "blue"])
    try:
        e.reset(seed=0)
        assert e.instruction == "put the red cube then the blue cube in the bin"
        bx, by, _ = scene.BIN_POS
        e.set_cube_pose("blue", (bx - 0.02, by, 0.03))
        _hold_still(e, 5)
        e.set_cube_pose("red", (bx + 0.02, by, 0.03))
        _, _, terminated, _, info = _hold_still(e, 5)
        assert not info["success"]  # blue went in first
        e.reset(seed=0)
        e.set_cube_pose("red", (bx + 0.02, by, 0.03))
        _hold_still(e, 5)
        assert e.scene_state()["target"] == "blue"
        e.set_cube_pose("blue", (bx - 0.02, by, 0.03))
        _, _, terminated, _, info = _hold_still(e, 5)
        assert info["success"] and terminated
    finally:
        e.close()


def test_env_class_is_exported():
    """``vla_course.sim`` exports the env class itself (the one ``make_env`` builds), with the gym-style API."""
    import vla_course.sim as sim
    from vla_course.sim import env as env_module

    assert "SO100Env" in sim.__all__ and sim.SO100Env is env_module.SO100Env is SO100Env
    assert all(callable(getattr(SO100Env, m, None)) for m in ("reset", "step", "render", "close"))
    e = make_env(cameras=())
    try:
        assert type(e) is env_module.SO100Env
    finally:
        e.close()


def test_task_from_instruction_round_trips_with_the_env():
    from vla_course.sim.tasks import task_from_instruction

    assert task_from_instruction("Put the RED cube in the bin.") == ("pick_place", {"target": "red"})
    assert task_from_instruction("put the green cube then the blue cube in the bin") == (
        "pick_place_two", {"targets": ["green", "blue"]})
    for bad in ("put the pink cube in the bin", "stack the cubes", "put the red cube then the red cube in the bin"):
        with pytest.raises(ValueError, match="put the <colour> cube in the bin"):
            task_from_instruction(bad)
    e = make_env(seed=0, cameras=())
    try:
        for s in range(3):
            e.reset(seed=s)
            name, kwargs = task_from_instruction(e.instruction)
            assert name == "pick_place" and kwargs["target"] == e.scene_state()["target"]
    finally:
        e.close()


def test_project_puts_each_cube_on_pixels_of_its_colour():
    e = make_env(task="pick_place", seed=3, image_size=96, cameras=("front",))
    e.reset(seed=3)
    img = e.render("front", 96).astype(float)
    palette = {c: np.array(rgba[:3]) / np.linalg.norm(rgba[:3]) for c, rgba in COLORS.items()}
    for colour in e.layout.cubes:
        u, v = e.project(e.cube_pos(colour), "front", 96)
        assert 0 <= u < 96 and 0 <= v < 96
        px = img[int(round(v)), int(round(u))]
        nearest = max(palette, key=lambda c: palette[c] @ (px / np.linalg.norm(px)))
        assert nearest == colour, (colour, nearest, px)
    with pytest.raises(ValueError, match="camera"):
        e.project((0, 0, 0), "top")
    e.close()


def test_hold_up_is_registered_with_pick_places_tables_and_its_own_instruction():
    from vla_course.sim.tasks import task_from_instruction

    assert "hold_up" in TASKS
    hold, pick = make_env(task="hold_up", seed=0, cameras=()), make_env(task="pick_place", seed=0, cameras=())
    try:
        for s in (0, 7, 10_000):
            hold.reset(seed=s)
            pick.reset(seed=s)
            assert hold.layout.cubes == pick.layout.cubes and hold.layout.targets == pick.layout.targets
            target = hold.layout.targets[0]
            assert hold.instruction == f"hold the {target} cube up"
            assert task_from_instruction(hold.instruction) == ("hold_up", {"target": target})
            assert hold.scene_state()["target"] == target and not hold.scene_state()["success"]
    finally:
        hold.close()
        pick.close()
    with pytest.raises(ValueError, match="hold the <colour> cube up"):
        task_from_instruction("hold the pink cube up")
