"""``SO100Env``: a gym-style environment around the MuJoCo world.

The loop is the one every robot-learning library uses::

    obs, info = env.reset()
    while True:
        obs, reward, terminated, truncated, info = env.step(action)

and it speaks LeRobot's language at the boundary, exactly like a real SO-100
recorded with ``lerobot-record``:

* ``obs["observation.state"]``: the 6 joint positions, float32, degrees for the
  arm and 0..100 for the gripper (see :mod:`vla_course.sim.units`);
* ``obs["observation.images.<camera>"]``: uint8 (S, S, 3) images;
* ``obs["task"]``: the language instruction;
* an action is 6 *absolute joint targets* in the same units. The sim clamps
  them to the joint limits, converts to radians and hands them to MuJoCo's
  position servos, then runs 16 physics steps of 1/480 s: one 30 Hz control step.

It also exposes **privileged** information a real robot does not have
(:meth:`scene_state`: exact cube positions, which cube the gripper holds), used
by the scripted expert and for labels, never by a policy.
"""

from __future__ import annotations

import mujoco
import numpy as np

from vla_course.constants import CAMERAS, COLORS, FPS, IMAGE_KEY_PREFIX, IMAGE_SIZE, STATE_KEY
from vla_course.sim import scene, units
from vla_course.sim.tasks import TASKS, Layout, PutInBin

# Joint angles (rad) the arm starts from: folded up above the table, gripper
# half open, above the near edge of the workspace.
HOME_RAD = np.array([0.0, -2.5, 2.1, 1.7, 0.0, 0.6])  # fingertip near (0.12, 0, 0.12)
HOME_NOISE_RAD = np.radians(3.0)  # per-episode jitter of the start pose (arm joints)
# A jaw angle above this cannot be closed on a 25 mm cube: the gripper is "open".
GRIPPER_OPEN_RAD = 0.3
# Default episode length per target cube (control steps at 30 Hz).
STEPS_PER_TARGET = 360


class SO100Env:
    """An SO-100 arm, 3-5 coloured cubes and a bin; one task per environment.

    Build it with :func:`vla_course.sim.make_env` rather than directly.
    """

    fps = FPS

    def __init__(
        self,
        task: PutInBin,
        seed: int = 0,
        image_size: int = IMAGE_SIZE,
        cameras: tuple[str, ...] | list[str] = CAMERAS,
        max_episode_steps: int = STEPS_PER_TARGET,
        shadows: bool = False,
    ):
        if isinstance(cameras, str):
            cameras = (cameras,)
        cameras = tuple(cameras)
        for cam in cameras:
            if cam not in CAMERAS:
                raise ValueError(f"unknown camera {cam!r}; use a subset of {CAMERAS} (or () for no images)")
        _check_size(image_size, "image_size")
        self.task = task
        self.image_size = int(image_size)
        self.cameras = cameras
        self.max_episode_steps = int(max_episode_steps)
        self.model = scene.build_model(shadows=shadows)
        self.data = mujoco.MjData(self.model)
        self.n_substeps = int(round(1.0 / (FPS * self.model.opt.timestep)))
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._next_seed = int(seed)
        self._index_model()
        self.layout: Layout | None = None
        self.episode_seed: int | None = None
        self.episode_count = 0  # how many resets so far (lets helpers notice a new episode)
        self.steps = 0
        self.reset(seed=int(seed))

    # -- model bookkeeping --------------------------------------------------
    def _index_model(self) -> None:
        """Look up, once, where each joint and cube lives in qpos/qvel."""
        m = self.model
        joints = [m.joint(scene.ARM_PREFIX + name) for name in units.MJCF_JOINT_NAMES]
        self.arm_qpos = np.array([j.qposadr[0] for j in joints])
        self.arm_dofs = np.array([j.dofadr[0] for j in joints])
        self.cube_qpos = {c: m.joint(f"cube_{c}").qposadr[0] for c in COLORS}
        self.cube_dofs = {c: m.joint(f"cube_{c}").dofadr[0] for c in COLORS}
        self.cube_geom = {c: m.geom(f"cube_{c}").id for c in COLORS}
        self.fingertip_site = m.site("fingertip").id
        fixed = m.body(scene.ARM_PREFIX + "Fixed_Jaw").id
        moving = m.body(scene.ARM_PREFIX + "Moving_Jaw").id
        self._fixed_jaw_geoms = set(np.flatnonzero(m.geom_bodyid == fixed))
        self._moving_jaw_geoms = set(np.flatnonzero(m.geom_bodyid == moving))

    # -- the gym API --------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[dict, dict]:
        """Start a new episode. ``seed=None`` takes the next seed in sequence.

        ``make_env(seed=s)`` gives episodes with seeds s, s+1, s+2, ...; passing
        an int re-seeds (and the sequence continues from it). The same seed
        always gives the same layout, start pose and first image.
        """
        if seed is None:
            seed = self._next_seed
        self.episode_seed = int(seed)
        self.episode_count += 1
        self._next_seed = self.episode_seed + 1
        rng = np.random.default_rng(self.episode_seed)
        self.layout = self.task.sample(rng, seed=self.episode_seed)
        d = self.data
        mujoco.mj_resetData(self.model, d)
        q0 = HOME_RAD.copy()
        q0[:5] += rng.uniform(-HOME_NOISE_RAD, HOME_NOISE_RAD, size=5)
        d.qpos[self.arm_qpos] = q0
        d.ctrl[:] = q0
        for i, colour in enumerate(COLORS):
            if colour in self.layout.cubes:
                x, y, yaw = self.layout.cubes[colour]
                self.set_cube_pose(colour, (x, y, scene.CUBE_HALF), yaw)
            else:
                self.set_cube_pose(colour, scene.parked_position(i), 0.0)
        mujoco.mj_forward(self.model, d)
        self.bin_order: list[str] = []  # colours in the order they first landed in the bin
        self.steps = 0
        self._success = False
        info = {"seed": self.episode_seed, "success": False}
        return self._observation(), info

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        """Apply absolute joint targets (LeRobot units) for one 1/30 s control step."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (6,):
            raise ValueError(
                f"action must have shape (6,) (joint targets in LeRobot units, order {units.JOINT_NAMES}), "
                f"got shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a}; pass finite joint targets")
        self.data.ctrl[:] = units.lerobot_to_rad(units.clamp_lerobot(a))
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self.steps += 1
        for colour in self.layout.cubes:
            if colour not in self.bin_order and self.in_bin(self.cube_pos(colour)):
                self.bin_order.append(colour)
        state = self.scene_state()
        self._success = self.task.success(state)
        terminated = self._success
        truncated = (not terminated) and self.steps >= self.max_episode_steps
        reward = 1.0 if self._success else 0.0
        info = {"success": self._success, "seed": self.episode_seed, "steps": self.steps}
        return self._observation(), reward, terminated, truncated, info

    @property
    def instruction(self) -> str:
        """The current episode's language instruction."""
        return self.layout.instruction

    # -- observations -------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        """Joint positions in LeRobot units (float32, shape (6,))."""
        return units.rad_to_lerobot(self.data.qpos[self.arm_qpos])

    def _observation(self) -> dict:
        obs = {STATE_KEY: self.joint_positions()}
        for cam in self.cameras:
            obs[IMAGE_KEY_PREFIX + cam] = self.render(camera=cam, size=self.image_size)
        obs["task"] = self.instruction
        return obs

    def render(self, camera: str = "front", size: int = 256) -> np.ndarray:
        """Render one camera as a uint8 (size, size, 3) image (any size up to 1024)."""
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; use one of {CAMERAS}")
        _check_size(size, "size")
        size = int(size)
        if size not in self._renderers:
            try:
                self._renderers[size] = mujoco.Renderer(self.model, height=size, width=size)
            except mujoco.FatalError as e:
                raise RuntimeError(
                    f"MuJoCo could not create an OpenGL context ({e}). On a machine without a display, "
                    "set MUJOCO_GL=egl (or osmesa) before `import mujoco`, e.g. import vla_course.sim first."
                ) from None
        renderer = self._renderers[size]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().copy()

    def project(self, point, camera: str = "front", size: int = 96) -> np.ndarray:
        """Pixel (column, row) where a world point appears in ``camera``'s ``size``x``size`` image (pinhole model:
        MuJoCo cameras look along their -z axis, with +y up and a vertical field of view ``fovy``); NaN for a point behind the camera."""
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; use one of {CAMERAS}")
        cam = self.model.camera(camera).id
        local = self.data.cam_xmat[cam].reshape(3, 3).T @ (np.asarray(point, dtype=float) - self.data.cam_xpos[cam])
        if local[2] >= 0:  # behind the camera: nowhere in the image
            return np.array([np.nan, np.nan])
        focal = size / 2 / np.tan(np.radians(self.model.cam_fovy[cam]) / 2)
        return np.array([size / 2 + focal * local[0] / -local[2], size / 2 - focal * local[1] / -local[2]])

    # -- privileged state ---------------------------------------------------
    def fingertip_pos(self) -> np.ndarray:
        """World position of the grasp point between the finger pads."""
        return self.data.site_xpos[self.fingertip_site].copy()

    def cube_pos(self, colour: str) -> np.ndarray:
        adr = self.cube_qpos[colour]
        return self.data.qpos[adr : adr + 3].copy()

    def cube_yaw(self, colour: str) -> float:
        """Rotation of a cube about the vertical (rad), from its quaternion."""
        adr = self.cube_qpos[colour]
        w, x, y, z = self.data.qpos[adr + 3 : adr + 7]
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def set_cube_pose(self, colour: str, pos, yaw: float = 0.0) -> None:
        """Teleport a cube (and stop it). Call ``mujoco.mj_forward`` or step after."""
        adr, dof = self.cube_qpos[colour], self.cube_dofs[colour]
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[dof : dof + 6] = 0.0

    def held_cube(self) -> str | None:
        """The cube the gripper holds: one touched by both the fixed and the moving jaw."""
        d = self.data
        touching: dict[int, set[str]] = {}
        for g1, g2 in zip(d.contact.geom1[: d.ncon], d.contact.geom2[: d.ncon]):
            for a, b in ((g1, g2), (g2, g1)):
                if a in self._fixed_jaw_geoms:
                    touching.setdefault(int(b), set()).add("fixed")
                elif a in self._moving_jaw_geoms:
                    touching.setdefault(int(b), set()).add("moving")
        for colour in self.layout.cubes:
            if touching.get(self.cube_geom[colour]) == {"fixed", "moving"}:
                return colour
        return None

    def in_bin(self, pos) -> bool:
        """Is a cube centre inside the bin (within its walls, below their top)?"""
        bx, by, bz = scene.BIN_POS
        x, y, z = pos
        inside = abs(x - bx) < scene.BIN_INNER_HALF and abs(y - by) < scene.BIN_INNER_HALF
        return bool(inside and bz < z < bz + scene.BIN_WALL_HEIGHT + scene.CUBE_HALF)

    def scene_state(self) -> dict:
        """Privileged ground truth for labels and the scripted expert.

        Keys: ``cubes`` {colour: {"pos", "yaw", "in_bin"}} (cubes on the table
        only), ``target`` (the cube to pick now; None once all are in),
        ``targets`` (all, in order), ``held`` (colour or None), ``gripper_open``,
        ``gripper`` (0..100), ``fingertip_pos``, ``bin_pos``, ``instruction``,
        ``bin_order`` (colours in the order they first entered the bin), ``success``.
        """
        cubes = {}
        for colour in self.layout.cubes:
            p = self.cube_pos(colour)
            cubes[colour] = {"pos": tuple(float(v) for v in p), "yaw": self.cube_yaw(colour), "in_bin": self.in_bin(p)}
        jaw = float(self.data.qpos[self.arm_qpos[units.GRIPPER_INDEX]])
        state = {
            "cubes": cubes,
            "targets": list(self.layout.targets),
            "held": self.held_cube(),
            "gripper_open": jaw > GRIPPER_OPEN_RAD,
            "gripper": units.gripper_rad_to_percent(jaw),
            "fingertip_pos": tuple(float(v) for v in self.fingertip_pos()),
            "bin_pos": tuple(float(v) for v in scene.BIN_POS),
            "instruction": self.instruction,
            "bin_order": list(self.bin_order),
        }
        state["target"] = self.task.current_target(state)
        state["success"] = self.task.success(state)
        return state

    # -- cleanup ------------------------------------------------------------
    def close(self) -> None:
        """Free the offscreen renderers (always call this; safe to call twice)."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _check_size(size, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= scene.MAX_RENDER_SIZE:
        raise ValueError(f"{name} must be an int in 16..{scene.MAX_RENDER_SIZE} (e.g. 96 or 256), got {size!r}")


def make_env(
    task: str = "pick_place",
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    cameras: tuple[str, ...] | list[str] = CAMERAS,
    max_episode_steps: int | None = None,
    shadows: bool = False,
    **task_kwargs,
) -> SO100Env:
    """Build an environment for a registered task.

    Args:
        task: a name from ``TASKS`` (e.g. "pick_place").
        seed: seed of the first episode (later resets without a seed count up).
        image_size: side of the square camera images in observations.
        cameras: which of ("front", "wrist") to render into observations;
            ``()`` renders nothing (fast: for scripted data without images).
        max_episode_steps: episode length limit (default: 360 steps = 12 s per
            target cube; the expert's clean pick-and-place takes ~100 steps and
            one with a fumble or drop and its recovery up to ~300).
        shadows: cast shadows (prettier, slower to render).
        **task_kwargs: passed to the task, e.g. ``target="red"``, ``n_cubes=3``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; available: {', '.join(TASKS)}")
    try:
        task_obj = TASKS[task](**task_kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for task {task!r}: {e}") from None
    if max_episode_steps is None:
        max_episode_steps = STEPS_PER_TARGET * task_obj.n_targets
    return SO100Env(task_obj, seed=seed, image_size=image_size, cameras=cameras,
                    max_episode_steps=max_episode_steps, shadows=shadows)
