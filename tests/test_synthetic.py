"""Tests of the procedural synthetic dataset: determinism, array contract, exact geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from clipstore.synthetic import CLASS_NAMES, SyntheticSpec, clip_ids, clip_splits, render_clip

SPEC = SyntheticSpec(clips=6, frames=9, height=64, width=64, seed=3)
KEYS = ("frames", "depth", "points", "confidence", "instance", "semantic", "tag_counts", "extrinsics", "intrinsics")


@pytest.fixture(scope="module")
def clips() -> list[dict[str, np.ndarray]]:
    return [render_clip(SPEC, clip) for clip in range(SPEC.clips)]


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        np.testing.assert_array_equal(value, b[key], err_msg=key)


def _centres(ext: np.ndarray) -> np.ndarray:
    rot, t = ext[..., :3].astype(np.float64), ext[..., 3].astype(np.float64)
    return -np.einsum("...ji,...j->...i", rot, t)


def _scene_size(out: dict[str, np.ndarray]) -> float:
    pts = out["points"].reshape(-1, 3)
    return float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))


# --- determinism ------------------------------------------------------------------------------


def test_same_clip_twice_is_identical(clips):
    _assert_same(render_clip(SPEC, 2), clips[2])


def test_other_seed_gives_other_frames(clips):
    other = render_clip(SyntheticSpec(clips=6, frames=9, height=64, width=64, seed=4), 2)
    assert not np.array_equal(other["frames"], clips[2]["frames"])


def test_clip_does_not_depend_on_number_of_clips():
    small = SyntheticSpec(clips=4, frames=5, height=24, width=32, seed=11)
    large = SyntheticSpec(clips=40, frames=5, height=24, width=32, seed=11)
    _assert_same(render_clip(small, 3), render_clip(large, 3))


def test_clip_index_is_checked():
    with pytest.raises(ValueError, match="clip"):
        render_clip(SPEC, SPEC.clips)
    with pytest.raises(ValueError, match="clip"):
        render_clip(SPEC, -1)


# --- array contract ---------------------------------------------------------------------------


def test_shapes_and_dtypes(clips):
    t, h, w, c = SPEC.frames, SPEC.height, SPEC.width, len(CLASS_NAMES)
    expected = {
        "frames": ((t, h, w, 3), np.uint8),
        "depth": ((t, h, w), np.float32),
        "points": ((t, h, w, 3), np.float32),
        "confidence": ((t, h, w), np.float32),
        "instance": ((t, h, w), np.int32),
        "semantic": ((t, h, w), np.int16),
        "tag_counts": ((t, c), np.int32),
        "extrinsics": ((t, 3, 4), np.float32),
        "intrinsics": ((t, 3, 3), np.float32),
    }
    for out in clips:
        assert set(out) == set(KEYS)
        for key, (shape, dtype) in expected.items():
            assert out[key].shape == shape, key
            assert out[key].dtype == dtype, key


def test_non_square_resolution():
    out = render_clip(SyntheticSpec(clips=1, frames=2, height=20, width=36), 0)
    assert out["frames"].shape == (2, 20, 36, 3)
    k = out["intrinsics"][0]
    assert k[0, 2] == pytest.approx(17.5) and k[1, 2] == pytest.approx(9.5)


def test_depth_valid_and_confidence_one(clips):
    for out in clips:
        assert np.isfinite(out["depth"]).all() and np.isfinite(out["points"]).all()
        # The camera never sits inside or against an object or a wall.
        assert out["depth"].min() > 0.3
        assert (out["confidence"] == 1.0).all()
        assert out["frames"].max() > out["frames"].min()


def test_class_names():
    assert len(CLASS_NAMES) >= 6 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)


def test_clip_ids():
    ids = clip_ids(SyntheticSpec(clips=12, seed=5))
    assert ids[3] == "synthetic-s5-c00003"
    assert len(ids) == 12 and len(set(ids)) == 12


# --- geometry ---------------------------------------------------------------------------------


def test_intrinsics_and_rotations(clips):
    for out in clips:
        k = out["intrinsics"].astype(np.float64)
        assert np.allclose(k, k[0]), "intrinsics are constant over a clip"
        k = k[0]
        assert k[0, 0] == k[1, 1] and k[0, 1] == k[1, 0] == 0 and tuple(k[2]) == (0, 0, 1)
        assert k[0, 2] == (SPEC.width - 1) / 2 and k[1, 2] == (SPEC.height - 1) / 2
        hfov = 2 * math.degrees(math.atan(SPEC.width / 2 / k[0, 0]))
        assert 60 <= hfov <= 70
        rot = out["extrinsics"][:, :, :3].astype(np.float64)
        eye = np.einsum("tij,tkj->tik", rot, rot)
        np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-6)
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-6)


def test_unprojected_depth_gives_points(clips):
    v, u = np.mgrid[0 : SPEC.height, 0 : SPEC.width].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    for out in clips:
        tol = 1e-4 * _scene_size(out)
        for f in range(SPEC.frames):
            k = out["intrinsics"][f].astype(np.float64)
            rot = out["extrinsics"][f, :, :3].astype(np.float64)
            t = out["extrinsics"][f, :, 3].astype(np.float64)
            x_cam = out["depth"][f, :, :, None].astype(np.float64) * (pix @ np.linalg.inv(k).T)
            x_world = (x_cam - t) @ rot  # R^T (X_cam - t), row-vector form
            err = np.abs(x_world - out["points"][f]).max()
            assert err < tol, (f, err, tol)


def _interior(instance: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has a single instance id (borders excluded)."""
    core = instance[1:-1, 1:-1]
    same = np.ones_like(core, dtype=bool)
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            same &= instance[1 + dv : instance.shape[0] - 1 + dv, 1 + du : instance.shape[1] - 1 + du] == core
    out = np.zeros(instance.shape, dtype=bool)
    out[1:-1, 1:-1] = same
    return out


def _reproject(out: dict[str, np.ndarray], a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame a's surface points in frame b: camera z, and the depths and instance ids of the
    four pixel centres around each projection (``z`` is NaN where it falls outside)."""
    rot = out["extrinsics"][b, :, :3].astype(np.float64)
    k = out["intrinsics"][b].astype(np.float64)
    cam = out["points"][a].reshape(-1, 3).astype(np.float64) @ rot.T + out["extrinsics"][b, :, 3]
    z = cam[:, 2]
    u = k[0, 0] * cam[:, 0] / z + k[0, 2]
    v = k[1, 1] * cam[:, 1] / z + k[1, 2]
    inside = (z > 0) & (u >= 0) & (u < SPEC.width - 1) & (v >= 0) & (v < SPEC.height - 1)
    u0 = np.where(inside, np.floor(u), 0).astype(np.int64)
    v0 = np.where(inside, np.floor(v), 0).astype(np.int64)
    cu, cv = np.stack([u0, u0 + 1, u0, u0 + 1]), np.stack([v0, v0, v0 + 1, v0 + 1])
    return np.where(inside, z, np.nan), out["depth"][b][cv, cu], out["instance"][b][cv, cu]


def test_multi_view_instance_consistency(clips):
    frames = range(0, SPEC.frames, 2)
    object_pixels = checked_object_pixels = 0
    for out in clips:
        for a, b in itertools.permutations(frames, 2):
            z, corner_depth, corner_inst = _reproject(out, a, b)
            inst_a = out["instance"][a].ravel()
            # Visible in b: the point lies within (a hair of) the depth range of the surrounding
            # pixel centres, which all see one instance.  Pixels on an instance border in a are
            # left out: their points can sit in a sub-pixel sliver that b's samples miss.
            with np.errstate(invalid="ignore"):
                low, high = corner_depth.min(axis=0), corner_depth.max(axis=0)
                visible = (z >= low * 0.998 - 0.002) & (z <= high * 1.002 + 0.002)
            ok = visible & (corner_inst == corner_inst[0]).all(axis=0) & _interior(out["instance"][a]).ravel()
            np.testing.assert_array_equal(inst_a[ok], corner_inst[0][ok], err_msg=f"frames {a}->{b}")
            object_pixels += int((inst_a > 0).sum())
            checked_object_pixels += int((ok & (inst_a > 0)).sum())
    assert checked_object_pixels > 0.35 * object_pixels, (checked_object_pixels, object_pixels)


# --- labels -----------------------------------------------------------------------------------


def test_labels_are_consistent(clips):
    n_cls = len(CLASS_NAMES)
    for out in clips:
        sem, inst = out["semantic"], out["instance"]
        for f in range(SPEC.frames):
            counts = np.bincount(sem[f][sem[f] >= 0].astype(np.int64), minlength=n_cls)
            np.testing.assert_array_equal(out["tag_counts"][f], counts)
        assert ((inst == 0) == (sem == -1)).all()
        assert sem.min() >= -1 and sem.max() < n_cls and inst.min() >= 0
        for i in np.unique(inst[inst > 0]):
            assert len(np.unique(sem[inst == i])) == 1, f"instance {i} has several classes"


def test_objects_visible_and_classes_vary(clips):
    seen: set[int] = set()
    for out in clips:
        visible = (out["instance"] > 0).reshape(SPEC.frames, -1).any(axis=1)
        assert visible.mean() >= 0.75
        assert len(np.unique(out["instance"])) >= 3, "several objects per clip"
        seen |= set(np.unique(out["semantic"][out["semantic"] >= 0]).tolist())
    assert len(seen) >= 4


def test_colour_does_not_give_the_class():
    spec = SyntheticSpec(clips=16, frames=3, height=32, width=32, seed=7)
    colours, classes = [], []
    for clip in range(spec.clips):
        out = render_clip(spec, clip)
        for i in np.unique(out["instance"][out["instance"] > 0]):
            mask = out["instance"] == i
            if mask.sum() >= 10:
                colours.append(out["frames"][mask].mean(axis=0))
                classes.append(int(out["semantic"][mask][0]))
    x, y = np.stack(colours), np.array(classes)
    present = [c for c in range(len(CLASS_NAMES)) if (y == c).sum() >= 4]
    assert len(present) >= 4
    for cls in present:
        spread = x[y == cls].std(axis=0).mean()
        assert spread > 15.0, f"{CLASS_NAMES[cls]} colours barely vary ({spread:.1f})"
    # Leave-one-out nearest class-mean colour must stay near chance.
    correct = 0
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        means = np.stack([x[rest & (y == c)].mean(axis=0) for c in present])
        correct += present[int(np.argmin(np.linalg.norm(means - x[i], axis=1)))] == y[i]
    assert correct / len(y) < 2.5 / len(present), correct / len(y)


# --- camera -----------------------------------------------------------------------------------


def test_camera_moves_smoothly(clips):
    for out in clips:
        ext = out["extrinsics"].astype(np.float64)
        centres = _centres(ext)
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        assert np.linalg.norm(centres[-1] - centres[0]) > 0.3
        assert steps.max() < 0.35 * steps.sum()
        assert steps.max() < 2.0 * steps.mean()
        rot = ext[:, :, :3]
        rel = np.einsum("tij,tkj->tik", rot[1:], rot[:-1])
        angles = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))
        total = np.arccos(np.clip((np.trace(rot[-1] @ rot[0].T) - 1) / 2, -1, 1))
        assert math.degrees(total) > 5.0
        assert angles.max() < 0.5 * total + 1e-9
        assert angles.max() < 3.0 * max(angles.mean(), 1e-9)


# --- splits and spec --------------------------------------------------------------------------


@pytest.mark.parametrize(("clips", "fraction", "n_val"), [(24, 0.25, 6), (10, 0.3, 3), (4, 0.1, 1), (5, 0.0, 0)])
def test_split_counts(clips, fraction, n_val):
    spec = SyntheticSpec(clips=clips, val_fraction=fraction)
    splits = clip_splits(spec)
    assert len(splits) == clips and set(splits) <= {"train", "val"}
    assert splits.count("val") == n_val
    assert clip_splits(spec) == splits


def test_split_depends_on_seed():
    splits = {tuple(clip_splits(SyntheticSpec(clips=40, seed=s))) for s in range(5)}
    assert len(splits) > 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clips", 0),
        ("frames", -1),
        ("height", 0),
        ("width", 2.5),
        ("seed", -3),
        ("val_fraction", 1.0),
        ("val_fraction", -0.1),
        ("min_objects", 0),
        ("max_objects", 2),
    ],
)
def test_spec_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticSpec(**{field: value})
