"""The synthetic benchmark: deterministic, and its ground truth is geometrically self-consistent."""

from __future__ import annotations

import numpy as np
import pytest

from clipstore.synthetic import CLASS_NAMES, SyntheticSpec, clip_ids, clip_splits, render_clip

SPEC = SyntheticSpec(clips=6, frames=6, height=48, width=64, seed=5)


@pytest.fixture(scope="module")
def clips() -> list[dict[str, np.ndarray]]:
    return [render_clip(SPEC, c) for c in range(SPEC.clips)]


def test_deterministic_per_seed_and_clip() -> None:
    a, b = render_clip(SPEC, 2), render_clip(SPEC, 2)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    other_seed = render_clip(SyntheticSpec(clips=6, frames=6, height=48, width=64, seed=6), 2)
    assert not np.array_equal(a["frames"], other_seed["frames"])
    many_clips = render_clip(SyntheticSpec(clips=40, frames=6, height=48, width=64, seed=5), 2)
    np.testing.assert_array_equal(a["frames"], many_clips["frames"])


def test_shapes_and_dtypes(clips) -> None:
    t, h, w, c = SPEC.frames, SPEC.height, SPEC.width, len(CLASS_NAMES)
    expected = {"frames": ((t, h, w, 3), np.uint8), "depth": ((t, h, w), np.float32),
                "points": ((t, h, w, 3), np.float32), "confidence": ((t, h, w), np.float32),
                "instance": ((t, h, w), np.int32), "semantic": ((t, h, w), np.int16),
                "tag_counts": ((t, c), np.int32), "extrinsics": ((t, 3, 4), np.float32),
                "intrinsics": ((t, 3, 3), np.float32)}
    for name, (shape, dtype) in expected.items():
        assert clips[0][name].shape == shape and clips[0][name].dtype == dtype, name
    assert len(CLASS_NAMES) >= 6
    for clip in clips:
        assert np.isfinite(clip["depth"]).all() and (clip["depth"] > 0).all()
        assert (clip["confidence"] == 1).all()


def _unproject(clip: dict, frame: int) -> np.ndarray:
    """World points from depth, intrinsics and pose: X_cam = d K^-1 [u v 1], X_world = R^T (X_cam - t)."""
    h, w = clip["depth"].shape[1:]
    v, u = np.mgrid[0:h, 0:w]
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3).astype(np.float64)
    cam = clip["depth"][frame].reshape(-1, 1) * (pixels @ np.linalg.inv(clip["intrinsics"][frame]).T)
    rotation, translation = clip["extrinsics"][frame, :, :3], clip["extrinsics"][frame, :, 3]
    return ((cam - translation) @ rotation).reshape(h, w, 3)


def test_unprojected_depth_gives_the_stored_world_points(clips) -> None:
    for clip in clips:
        scene_size = np.ptp(clip["points"].reshape(-1, 3), axis=0).max()
        for frame in range(SPEC.frames):
            rotation = clip["extrinsics"][frame, :, :3].astype(np.float64)
            np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
            assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-5)
            error = np.abs(_unproject(clip, frame) - clip["points"][frame]).max()
            assert error < 1e-4 * scene_size, error


def _project(points: np.ndarray, clip: dict, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel columns, rows and camera depth of world points in ``frame``."""
    rotation, translation = clip["extrinsics"][frame, :, :3], clip["extrinsics"][frame, :, 3]
    cam = points @ rotation.T + translation
    uvw = cam @ clip["intrinsics"][frame].T
    return uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2], cam[:, 2]


def test_a_surface_point_seen_in_two_frames_has_one_instance_id(clips) -> None:
    checked = agreed = object_pixels = 0
    for clip in clips:
        for a, b in [(0, 1), (0, SPEC.frames - 1), (2, 4)]:
            points = clip["points"][a].reshape(-1, 3)
            ids = clip["instance"][a].ravel()
            object_pixels += int((ids > 0).sum())
            u, v, z = _project(points, clip, b)
            col, row = np.round(u).astype(int), np.round(v).astype(int)
            inside = (z > 0) & (col >= 0) & (col < SPEC.width) & (row >= 0) & (row < SPEC.height)
            col, row = np.where(inside, col, 0), np.where(inside, row, 0)
            # visible in b: its projected depth matches b's depth map (not occluded)
            visible = inside & (np.abs(clip["depth"][b][row, col] - z) < 0.01 * z)
            on_object = visible & (ids > 0)
            checked += int(on_object.sum())
            agreed += int((clip["instance"][b][row, col] == ids)[on_object].sum())
    assert checked > 0.3 * object_pixels, "the check must cover a large share of object pixels"
    assert agreed / checked > 0.98, agreed / checked


def test_labels_are_consistent(clips) -> None:
    for clip in clips:
        semantic, instance = clip["semantic"], clip["instance"]
        for frame in range(SPEC.frames):
            counts = np.bincount(semantic[frame][semantic[frame] >= 0], minlength=len(CLASS_NAMES))
            np.testing.assert_array_equal(clip["tag_counts"][frame], counts)
        np.testing.assert_array_equal(instance == 0, semantic == -1)
        for object_id in np.unique(instance[instance > 0]):
            assert len(np.unique(semantic[instance == object_id])) == 1


def test_objects_are_visible_and_classes_vary(clips) -> None:
    for clip in clips:
        visible_frames = (clip["instance"] > 0).reshape(SPEC.frames, -1).any(axis=1)
        assert visible_frames.mean() >= 0.8
    classes_seen = {int(c) for clip in clips for c in np.unique(clip["semantic"]) if c >= 0}
    assert len(classes_seen) >= 4


def test_colour_does_not_give_the_class() -> None:
    spec = SyntheticSpec(clips=30, frames=1, height=48, width=64, seed=1)
    colours: dict[int, list[np.ndarray]] = {}
    for c in range(spec.clips):
        clip = render_clip(spec, c)
        for object_id in np.unique(clip["instance"][clip["instance"] > 0]):
            mask = clip["instance"] == object_id
            if mask.sum() >= 20:
                colours.setdefault(int(clip["semantic"][mask][0]), []).append(clip["frames"][mask].mean(axis=0))
    spreads = [np.std(np.stack(v), axis=0).mean() for v in colours.values() if len(v) >= 4]
    assert len(spreads) >= 4 and min(spreads) > 20, spreads  # per-class colour std in 0..255 units


def test_camera_moves_smoothly(clips) -> None:
    for clip in clips:
        rotations, translations = clip["extrinsics"][:, :, :3], clip["extrinsics"][:, :, 3]
        centres = -np.einsum("tji,tj->ti", rotations, translations)
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        assert np.linalg.norm(centres[-1] - centres[0]) > 0.3
        assert steps.max() < 0.5 * steps.sum()
        angle = np.degrees(np.arccos(np.clip((np.trace(rotations[0] @ rotations[-1].T) - 1) / 2, -1, 1)))
        assert angle > 5


def test_split_and_ids() -> None:
    spec = SyntheticSpec(clips=20, seed=0, val_fraction=0.25)
    splits = clip_splits(spec)
    assert splits == clip_splits(spec) and splits.count("val") == 5
    assert splits != clip_splits(SyntheticSpec(clips=20, seed=1, val_fraction=0.25))
    assert clip_ids(spec)[3] == "synthetic-s0-c00003"


@pytest.mark.parametrize(("field", "value"), [("clips", 0), ("height", -1), ("val_fraction", 1.0),
                                              ("min_objects", 0), ("max_objects", 1)])
def test_spec_rejects_bad_values(field: str, value) -> None:
    arguments = {"min_objects": 2} if field == "max_objects" else {}
    with pytest.raises(ValueError, match=f"SyntheticSpec.{field}"):
        SyntheticSpec(**{**arguments, field: value})
