"""Procedural indoor scenes rendered with a pure-NumPy ray caster, with exact ground truth.

This is the built-in default dataset: every clip is a closed rectangular room (floor, four
walls, ceiling) with procedural textures, holding a few textured objects whose *shape* is
their semantic class (``CLASS_NAMES``).  Colour and texture are drawn independently of the
class, so only geometry identifies it.  One camera per clip moves smoothly on an arc around
the objects while its look-at target drifts.

Conventions
-----------
* World frame: right-handed, metres, **y up**.  The floor is the plane ``y = 0``, the
  ceiling ``y = room height``; walls are the planes ``x = x_lo / x_hi`` and ``z = z_lo / z_hi``.
  Objects stand on the floor inside a disk centred on the world origin.
* Camera: OpenCV convention (x right, y down, z forward).  ``extrinsics[i] = [R | t]`` maps
  world to camera, ``X_cam = R @ X_world + t``; the camera centre is ``-R.T @ t``.
* Intrinsics: pinhole ``K`` with ``fx = fy`` (horizontal FoV ``HFOV_DEG``) and pixel centres at
  integer coordinates, ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``: pixel (row v, col u) looks
  along ``K^-1 [u, v, 1]``.
* ``points`` are ``camera_centre + s * unit_ray`` where ``s`` is the traced hit distance, and
  ``depth`` is the camera-frame z of that same point, so unprojecting ``depth`` reproduces
  ``points`` up to float32 rounding.  Every ray hits the closed room, so depth is always
  valid and ``confidence`` is 1 everywhere.
* ``instance`` is 1..n (object order in the scene, stable over the clip), 0 for room
  surfaces; ``semantic`` is the class index, -1 for room surfaces.

Each clip is determined by ``(spec.seed, clip)`` alone through
``np.random.default_rng([spec.seed, clip])``; the scene and the camera path do not depend on
the number of clips, frames or the resolution (frames sample the same continuous path).

Objects are found by sphere tracing exact signed distance functions, one object at a time
and only for rays that hit its bounding sphere; the room is intersected analytically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "SyntheticSpec", "clip_ids", "clip_splits", "render_clip"]

CLASS_NAMES: tuple[str, ...] = ("cube", "sphere", "cylinder", "cone", "torus", "pyramid")

HFOV_DEG = 65.0
HIT_EPS = 1e-4  # metres; rooms are ~7-11 m across, so hits are accurate to ~1e-5 of the scene size
MAX_STEPS = 200
NORMAL_STEP = 2e-4
AMBIENT = 0.3
OBJECT_GAP = 0.1  # free space kept between object footprints


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and seed of a synthetic dataset; clip ``k`` depends only on ``(seed, k)``."""

    clips: int = 24
    frames: int = 17
    height: int = 64
    width: int = 64
    seed: int = 0
    val_fraction: float = 0.25
    min_objects: int = 3
    max_objects: int = 6

    def __post_init__(self) -> None:
        for name in ("clips", "frames", "height", "width"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("seed", self.seed, minimum=0)
        vf = self.val_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float, np.floating, np.integer)) or not 0 <= vf < 1:
            raise ValueError(f"SyntheticSpec.val_fraction must be in [0, 1), got {vf!r}")
        _require_int("min_objects", self.min_objects, minimum=1)
        _require_int("max_objects", self.max_objects, minimum=self.min_objects)


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"SyntheticSpec.{name} must be an int >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Public API


def clip_ids(spec: SyntheticSpec) -> list[str]:
    """Stable clip identifiers, e.g. ``synthetic-s0-c00003``."""
    return [f"synthetic-s{spec.seed}-c{clip:05d}" for clip in range(spec.clips)]


def clip_splits(spec: SyntheticSpec) -> list[str]:
    """``"train"`` / ``"val"`` per clip, a seeded random choice of ``round(val_fraction * clips)``
    val clips.  With at least two clips and ``val_fraction > 0`` there is at least one val and
    at least one train clip; a single clip is always train."""
    n_val = round(spec.val_fraction * spec.clips)
    if spec.clips < 2:
        n_val = 0
    elif spec.val_fraction > 0:
        n_val = min(max(n_val, 1), spec.clips - 1)
    # A separate stream from the clips' own ([seed, clip]) streams.
    order = np.random.default_rng([spec.seed, 0x5B1D]).permutation(spec.clips)
    val = set(order[:n_val].tolist())
    return ["val" if clip in val else "train" for clip in range(spec.clips)]


def render_clip(spec: SyntheticSpec, clip: int) -> dict[str, np.ndarray]:
    """Render clip ``clip`` of ``spec``; see the module docstring for the conventions."""
    if isinstance(clip, bool) or not isinstance(clip, (int, np.integer)) or not 0 <= clip < spec.clips:
        raise ValueError(f"clip must be an int in [0, {spec.clips}), got {clip!r}")
    rng = np.random.default_rng([spec.seed, int(clip)])
    scene = _sample_scene(rng, spec.min_objects, spec.max_objects)
    t_, h, w = spec.frames, spec.height, spec.width
    k = _intrinsics(h, w)
    centres, rots = scene.orbit.poses(t_)
    origins, dirs = _camera_rays(k, rots, centres, h, w)
    hit = _intersect(scene, origins, dirs)
    points = origins + hit.dist[:, None] * dirs
    forward = np.repeat(rots[:, 2, :], h * w, axis=0)
    depth = np.einsum("ij,ij->i", points - origins, forward)
    rgb = _shade(scene, points, dirs, hit)

    classes = np.array([-1] + [o.cls for o in scene.objects], dtype=np.int16)
    semantic = classes[hit.instance].reshape(t_, h, w)
    extrinsics = np.concatenate([rots, -np.einsum("tij,tj->ti", rots, centres)[:, :, None]], axis=2)
    return {
        "frames": rgb.reshape(t_, h, w, 3),
        "depth": depth.reshape(t_, h, w).astype(np.float32),
        "points": points.reshape(t_, h, w, 3).astype(np.float32),
        "confidence": np.ones((t_, h, w), dtype=np.float32),
        "instance": hit.instance.reshape(t_, h, w).astype(np.int32),
        "semantic": semantic,
        "tag_counts": _tag_counts(semantic),
        "extrinsics": extrinsics.astype(np.float32),
        "intrinsics": np.repeat(k[None], t_, axis=0).astype(np.float32),
    }


def _tag_counts(semantic: np.ndarray) -> np.ndarray:
    n_cls = len(CLASS_NAMES)
    flat = semantic.reshape(semantic.shape[0], -1).astype(np.int64)
    # Offset each frame's labels into its own block so one bincount counts all frames.
    offsets = np.arange(semantic.shape[0])[:, None] * n_cls
    labels = (flat + offsets)[flat >= 0]
    counts = np.bincount(labels, minlength=semantic.shape[0] * n_cls)
    return counts.reshape(semantic.shape[0], n_cls).astype(np.int32)


# --------------------------------------------------------------------------------------------
# Shapes: exact SDFs in unit coordinates, base on y = 0, axis along +y.


def _radius_xz(q: np.ndarray) -> np.ndarray:
    return np.hypot(q[:, 0], q[:, 2])


def _sd_cube(q: np.ndarray) -> np.ndarray:
    d = np.abs(q - (0.0, 0.75, 0.0)) - 0.75
    return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(axis=1), 0.0)


def _sd_sphere(q: np.ndarray) -> np.ndarray:
    return np.linalg.norm(q - (0.0, 0.9, 0.0), axis=1) - 0.9


def _sd_cylinder(q: np.ndarray) -> np.ndarray:
    dx = _radius_xz(q) - 0.65
    dy = np.abs(q[:, 1] - 0.9) - 0.9
    return np.minimum(np.maximum(dx, dy), 0.0) + np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))


_CONE_PROFILE = np.array([[-0.9, 0.0], [0.9, 0.0], [0.0, 1.8]])


def _sd_cone(q: np.ndarray) -> np.ndarray:
    # A solid of revolution is at the same distance as its meridian cross-section in 2D.
    return _sd_polygon(_radius_xz(q), q[:, 1], _CONE_PROFILE)


def _sd_torus(q: np.ndarray) -> np.ndarray:
    return np.hypot(_radius_xz(q) - 0.75, q[:, 1] - 0.32) - 0.32


_PYRAMID_SCALE = 1.7  # base half-width 0.85
_PYRAMID_HEIGHT = 1.5 / _PYRAMID_SCALE


def _sd_pyramid(q: np.ndarray) -> np.ndarray:
    return _PYRAMID_SCALE * _sd_pyramid_unit(q / _PYRAMID_SCALE, _PYRAMID_HEIGHT)


def _sd_polygon(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple 2D polygon (I. Quilez's winding formulation)."""
    d = (px - verts[0, 0]) ** 2 + (py - verts[0, 1]) ** 2
    sign = np.ones_like(px)
    for i in range(len(verts)):
        (vix, viy), (vjx, vjy) = verts[i], verts[i - 1]
        ex, ey = vjx - vix, vjy - viy
        wx, wy = px - vix, py - viy
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.minimum(d, (wx - ex * h) ** 2 + (wy - ey * h) ** 2)
        c1, c2, c3 = py >= viy, py < vjy, ex * wy > ey * wx
        sign = np.where((c1 & c2 & c3) | (~c1 & ~c2 & ~c3), -sign, sign)
    return sign * np.sqrt(d)


def _sd_pyramid_unit(p: np.ndarray, h: float) -> np.ndarray:
    """Exact SDF of a square pyramid, base [-0.5, 0.5]^2 at y = 0, apex at y = h (after I. Quilez)."""
    m2 = h * h + 0.25
    ax, az, y = np.abs(p[:, 0]), np.abs(p[:, 2]), p[:, 1]
    swap = az > ax
    x = np.where(swap, az, ax) - 0.5
    z = np.where(swap, ax, az) - 0.5
    qx, qy, qz = z, h * y - 0.5 * x, h * x + 0.5 * y
    s = np.maximum(-qx, 0.0)
    t = np.clip((qy - 0.5 * z) / (m2 + 0.25), 0.0, 1.0)
    a = m2 * (qx + s) ** 2 + qy * qy
    b = m2 * (qx + 0.5 * t) ** 2 + (qy - m2 * t) ** 2
    d2 = np.where(np.minimum(qy, -qx * m2 - qy * 0.5) > 0.0, 0.0, np.minimum(a, b))
    sides = np.sqrt((d2 + qz * qz) / m2) * np.sign(np.maximum(qz, -y))
    # The published formula ignores the base face: add it inside, and below the base the
    # base square is the nearest part.
    above = np.maximum(sides, -y)
    below = np.sqrt(np.maximum(ax - 0.5, 0.0) ** 2 + np.maximum(az - 0.5, 0.0) ** 2 + y * y)
    return np.where(y < 0.0, below, above)


@dataclass(frozen=True)
class _Shape:
    sdf: Callable[[np.ndarray], np.ndarray]
    centre_y: float  # bounding sphere centre (on the axis)
    radius: float  # bounding sphere radius
    footprint: float  # radius of the floor disk that contains the shape


_SHAPES: dict[str, _Shape] = {
    "cube": _Shape(_sd_cube, 0.75, 0.75 * math.sqrt(3.0), 0.75 * math.sqrt(2.0)),
    "sphere": _Shape(_sd_sphere, 0.9, 0.9, 0.9),
    "cylinder": _Shape(_sd_cylinder, 0.9, math.hypot(0.65, 0.9), 0.65),
    "cone": _Shape(_sd_cone, 0.9, math.hypot(0.9, 0.9), 0.9),
    "torus": _Shape(_sd_torus, 0.32, 0.75 + 0.32, 0.75 + 0.32),
    "pyramid": _Shape(_sd_pyramid, 0.75, math.hypot(0.85 * math.sqrt(2.0), 0.75), 0.85 * math.sqrt(2.0)),
}
assert tuple(_SHAPES) == CLASS_NAMES


# --------------------------------------------------------------------------------------------
# Scene description


@dataclass(frozen=True)
class _Texture:
    kind: int  # 0 solid, 1 checker, 2 stripes, 3 smooth noise
    colours: np.ndarray  # (2, 3) in [0, 1]
    period: float
    waves: np.ndarray  # (3, 3) wave vectors: stripe direction / noise frequencies
    phases: np.ndarray  # (3,)
    offset: np.ndarray  # (3,) keeps cell boundaries off flat faces, which would speckle

    def albedo(self, p: np.ndarray) -> np.ndarray:
        p = p + self.offset
        if self.kind == 0:
            mix = np.zeros(len(p))
        elif self.kind == 1:
            mix = (np.floor(p / self.period).sum(axis=1) % 2).astype(np.float64)
        elif self.kind == 2:
            mix = np.floor(p @ self.waves[0] / self.period) % 2
        else:
            mix = 0.5 + 0.5 * np.sin(p @ self.waves.T / self.period + self.phases).mean(axis=1)
        c0, c1 = self.colours
        return c0 + mix[:, None] * (c1 - c0)


@dataclass(frozen=True)
class _Object:
    cls: int
    x: float
    z: float
    yaw: float
    scale: float
    texture: _Texture

    @property
    def shape(self) -> _Shape:
        return _SHAPES[CLASS_NAMES[self.cls]]

    def local(self, p: np.ndarray) -> np.ndarray:
        """World points -> unit shape coordinates (undo translation, yaw and scale)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        dx, dz = p[:, 0] - self.x, p[:, 2] - self.z
        q = np.stack([c * dx - s * dz, p[:, 1], s * dx + c * dz], axis=1)
        return q / self.scale

    def sdf(self, p: np.ndarray) -> np.ndarray:
        return self.scale * self.shape.sdf(self.local(p))

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        centre = np.array([self.x, self.scale * self.shape.centre_y, self.z])
        return centre, self.scale * self.shape.radius * 1.01 + 2 * HIT_EPS


@dataclass(frozen=True)
class _Room:
    lo: np.ndarray  # (3,) min corner, lo[1] == 0 (floor)
    hi: np.ndarray  # (3,) max corner, hi[1] == ceiling height
    textures: tuple[_Texture, ...]  # per face 2 * axis + (face at hi)


@dataclass(frozen=True)
class _Orbit:
    """Camera on an arc around the origin; radius, height and target interpolate linearly."""

    theta0: float
    dtheta: float
    radius: tuple[float, float]
    height: tuple[float, float]
    target: tuple[np.ndarray, np.ndarray]

    def poses(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera centres (T, 3) and world-to-camera rotations (T, 3, 3)."""
        s = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
        theta = self.theta0 + self.dtheta * s
        r = _lerp(*self.radius, s)
        centres = np.stack([r * np.cos(theta), _lerp(*self.height, s), r * np.sin(theta)], axis=1)
        targets = self.target[0] + s[:, None] * (self.target[1] - self.target[0])
        return centres, np.stack([_look_at(c, t) for c, t in zip(centres, targets, strict=True)])


@dataclass(frozen=True)
class _Scene:
    room: _Room
    objects: tuple[_Object, ...]
    orbit: _Orbit
    light: np.ndarray  # (3,) point light position


def _lerp(a: float, b: float, s: np.ndarray) -> np.ndarray:
    return a + (b - a) * s


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation, OpenCV axes, no roll (world y is up)."""
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 1.0, 0.0))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


# --------------------------------------------------------------------------------------------
# Sampling


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.25, 1.0), rng.uniform(0.35, 1.0)
    rgb = np.clip(np.abs((hue * 6.0 + np.array([0.0, 4.0, 2.0])) % 6.0 - 3.0) - 1.0, 0.0, 1.0)
    return val * (1.0 - sat + sat * rgb)


def _sample_texture(rng: np.random.Generator, period: tuple[float, float], solid_ok: bool) -> _Texture:
    # Draw every parameter whatever the kind, so the stream layout is the same for all kinds.
    kind = int(rng.integers(0 if solid_ok else 1, 4))
    c0 = _random_colour(rng)
    c1 = _random_colour(rng) if rng.uniform() < 0.5 else c0 * rng.uniform(0.35, 0.75)
    waves = rng.normal(size=(3, 3))
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)
    size = float(rng.uniform(*period))
    phases, offset = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.1, 0.9, 3) * size
    return _Texture(kind, np.stack([c0, c1]), size, waves, phases, offset)


def _sample_objects(rng: np.random.Generator, n: int) -> tuple[tuple[_Object, ...], float]:
    """``n`` non-overlapping objects inside a disk around the origin; returns them and the
    disk radius (grown when the disk turns out too crowded)."""
    region = 0.8 + 0.45 * math.sqrt(n)
    while True:
        objects: list[_Object] = []
        for _ in range(n):
            obj = _sample_object(rng, objects, region)
            if obj is None:
                break
            objects.append(obj)
        if len(objects) == n:
            return tuple(objects), region
        region *= 1.1


def _sample_object(rng: np.random.Generator, placed: list[_Object], region: float) -> _Object | None:
    for _ in range(100):
        cls = int(rng.integers(len(CLASS_NAMES)))
        scale = float(rng.uniform(0.25, 0.45))
        reach = scale * _SHAPES[CLASS_NAMES[cls]].footprint
        rad = (region - reach) * math.sqrt(rng.uniform())
        ang = rng.uniform(0, 2 * np.pi)
        x, z = rad * math.cos(ang), rad * math.sin(ang)
        if all(math.hypot(x - o.x, z - o.z) >= reach + o.scale * o.shape.footprint + OBJECT_GAP for o in placed):
            yaw = float(rng.uniform(0, 2 * np.pi))
            return _Object(cls, x, z, yaw, scale, _sample_texture(rng, (0.25, 0.6), solid_ok=True))
    return None


def _sample_orbit(rng: np.random.Generator, region: float) -> _Orbit:
    r0 = region + rng.uniform(1.1, 1.7)
    r1 = max(region + 1.0, r0 + rng.uniform(-0.4, 0.4))
    h0 = rng.uniform(1.1, 1.8)
    h1 = float(np.clip(h0 + rng.uniform(-0.35, 0.35), 0.9, 2.0))
    targets = []
    for _ in range(2):
        rad, ang = 0.5 * region * math.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        targets.append(np.array([rad * math.cos(ang), rng.uniform(0.15, 0.45), rad * math.sin(ang)]))
    theta0 = float(rng.uniform(0, 2 * np.pi))
    dtheta = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1))
    return _Orbit(theta0, dtheta, (r0, r1), (h0, h1), (targets[0], targets[1]))


def _sample_room(rng: np.random.Generator, orbit: _Orbit) -> _Room:
    reach = max(orbit.radius)  # the camera's distance from the origin never exceeds this
    lo = np.array([-(reach + rng.uniform(0.5, 2.0)), 0.0, -(reach + rng.uniform(0.5, 2.0))])
    hi = np.array([reach + rng.uniform(0.5, 2.0), rng.uniform(2.6, 3.3), reach + rng.uniform(0.5, 2.0)])
    textures = tuple(_sample_texture(rng, (0.4, 1.2), solid_ok=False) for _ in range(6))
    return _Room(lo, hi, textures)


def _sample_scene(rng: np.random.Generator, min_objects: int, max_objects: int) -> _Scene:
    objects, region = _sample_objects(rng, int(rng.integers(min_objects, max_objects + 1)))
    orbit = _sample_orbit(rng, region)
    room = _sample_room(rng, orbit)
    light = rng.uniform(room.lo + 0.5, room.hi - 0.5)
    light[1] = room.hi[1] - 0.1
    return _Scene(room, objects, orbit, light)


# --------------------------------------------------------------------------------------------
# Ray casting


def _intrinsics(height: int, width: int) -> np.ndarray:
    f = 0.5 * width / math.tan(math.radians(HFOV_DEG) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def _camera_rays(k: np.ndarray, rots: np.ndarray, centres: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel origins and unit world directions, frame-major then row-major, (T*H*W, 3)."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(h * w)], axis=1)
    cam = pix @ np.linalg.inv(k).T
    cam /= np.linalg.norm(cam, axis=1, keepdims=True)
    dirs = np.einsum("pj,tjk->tpk", cam, rots).reshape(-1, 3)  # R^T d for every frame
    return np.repeat(centres, h * w, axis=0), dirs


@dataclass
class _Hit:
    dist: np.ndarray  # (N,) distance along the unit ray
    instance: np.ndarray  # (N,) 0 = room, i = scene.objects[i - 1]
    face: np.ndarray  # (N,) room face index where instance == 0


def _intersect(scene: _Scene, origins: np.ndarray, dirs: np.ndarray) -> _Hit:
    dist, face = _trace_room(scene.room, origins, dirs)
    instance = np.zeros(len(dirs), dtype=np.int64)
    for i, obj in enumerate(scene.objects, start=1):
        t_obj = _sphere_trace(obj, origins, dirs, dist)
        closer = t_obj < dist
        dist = np.where(closer, t_obj, dist)
        instance[closer] = i
    return _Hit(dist, instance, face)


def _trace_room(room: _Room, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance from the (convex, closed) room box and the face index it exits through."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(dirs > 0, room.hi, room.lo)
        t_axes = np.where(dirs != 0, (bound - origins) / dirs, np.inf)
    axis = np.argmin(t_axes, axis=1)
    rows = np.arange(len(dirs))
    return t_axes[rows, axis], 2 * axis + (dirs[rows, axis] > 0)


def _sphere_trace(obj: _Object, origins: np.ndarray, dirs: np.ndarray, t_max: np.ndarray) -> np.ndarray:
    """Hit distance of each ray with ``obj`` (inf for a miss or beyond ``t_max``)."""
    centre, radius = obj.bounding_sphere()
    oc = origins - centre
    b = np.einsum("ij,ij->i", oc, dirs)
    disc = b * b - (np.einsum("ij,ij->i", oc, oc) - radius * radius)
    root = np.sqrt(np.maximum(disc, 0.0))
    # Only rays through the bounding sphere are traced, from where they enter it.
    idx = np.flatnonzero((disc > 0) & (-b + root > 0) & (-b - root < t_max))
    t = np.maximum(-b - root, 0.0)[idx]
    t_end = np.minimum(-b + root, t_max)[idx]
    o, d = origins[idx], dirs[idx]
    hit = np.full(len(dirs), np.inf)
    for _ in range(MAX_STEPS):
        step = obj.sdf(o + t[:, None] * d)
        done = step < HIT_EPS
        hit[idx[done]] = t[done]
        t = t + step
        # Exact SDFs never overshoot, so a ray past t_end (or the occluder) has missed.
        keep = ~done & (t < t_end)
        if not keep.any():
            break
        idx, t, t_end, o, d = idx[keep], t[keep], t_end[keep], o[keep], d[keep]
    return hit


def _object_normals(obj: _Object, p: np.ndarray) -> np.ndarray:
    offsets = NORMAL_STEP * np.eye(3)
    grad = np.stack([obj.sdf(p + e) - obj.sdf(p - e) for e in offsets], axis=1)
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)


def _shade(scene: _Scene, points: np.ndarray, dirs: np.ndarray, hit: _Hit) -> np.ndarray:
    """Lambertian + ambient from a point light (no shadows), uint8 RGB (N, 3)."""
    albedo = np.empty_like(points)
    normal = np.empty_like(points)
    room = hit.instance == 0
    for f, tex in enumerate(scene.room.textures):
        sel = np.flatnonzero(room & (hit.face == f))
        flat = points[sel]
        flat[:, f // 2] = 0.0  # a face is a plane: its own coordinate only carries rounding noise
        albedo[sel] = tex.albedo(flat)
        normal[sel] = np.eye(3)[f // 2] * (-1.0 if f % 2 else 1.0)  # faces point into the room
    for i, obj in enumerate(scene.objects, start=1):
        sel = np.flatnonzero(hit.instance == i)
        albedo[sel] = obj.texture.albedo(obj.local(points[sel]))
        normal[sel] = _object_normals(obj, points[sel])
    # Shade the side that faces the camera, whatever the SDF gradient says at thin edges.
    normal *= np.where(np.einsum("ij,ij->i", normal, dirs) > 0, -1.0, 1.0)[:, None]
    to_light = scene.light - points
    to_light /= np.linalg.norm(to_light, axis=1, keepdims=True)
    diffuse = np.maximum(np.einsum("ij,ij->i", normal, to_light), 0.0)
    rgb = albedo * (AMBIENT + (1.0 - AMBIENT) * diffuse)[:, None]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
