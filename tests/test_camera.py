"""Tests for probes.camera: relative poses, VGGT pose encoding, nearest rotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from probes.camera import (decode_pose_encoding, first_view_frame, nearest_rotation, pose_encoding,
                           relative_to_first)

IMAGE_SIZE = (294, 518)  # (H, W), DL3DV after VGGT preprocessing


def _random_extrinsics(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rot = Rotation.random(n, random_state=seed).as_matrix()
    return np.concatenate([rot, rng.normal(size=(n, 3, 1))], axis=2)


def _homogeneous(e: np.ndarray) -> np.ndarray:
    bottom = np.broadcast_to([0.0, 0.0, 0.0, 1.0], (e.shape[0], 1, 4))
    return np.concatenate([e, bottom], axis=1)


def _intrinsics(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    k = np.zeros((len(fx), 3, 3))
    k[:, 0, 0], k[:, 1, 1] = fx, fy
    k[:, 0, 2], k[:, 1, 2] = IMAGE_SIZE[1] / 2, IMAGE_SIZE[0] / 2
    k[:, 2, 2] = 1.0
    return k


# --------------------------------------------------------------------------- #
# relative_to_first
# --------------------------------------------------------------------------- #
def test_relative_to_first_view0_is_identity() -> None:
    rel = relative_to_first(_random_extrinsics(4, 0))
    assert rel.shape == (4, 3, 4)
    np.testing.assert_allclose(rel[0], np.eye(4)[:3], atol=1e-12)


def test_relative_to_first_preserves_camera_motion_and_camera_coordinates() -> None:
    e = _homogeneous(_random_extrinsics(4, 1))
    rel = _homogeneous(relative_to_first(e))
    # Camera i -> camera j motion E_j inv(E_i) is unchanged.
    for i in range(4):
        for j in range(4):
            np.testing.assert_allclose(rel[j] @ np.linalg.inv(rel[i]), e[j] @ np.linalg.inv(e[i]), atol=1e-10)
    # A world point X, re-expressed in camera 0's frame (E_0 X), keeps its camera coordinates.
    x = np.array([0.3, -1.2, 4.0, 1.0])
    for i in range(4):
        np.testing.assert_allclose(rel[i] @ (e[0] @ x), e[i] @ x, atol=1e-10)


def test_relative_to_first_conjugates_vggt_relative_pose() -> None:
    # VGGT's evaluation quantity inv(E_i) E_j becomes E_0 inv(E_i) E_j inv(E_0): a
    # conjugation, so only its rotation angle survives, not the matrix itself.
    e = _homogeneous(_random_extrinsics(3, 2))
    rel = _homogeneous(relative_to_first(e))
    before = np.linalg.inv(e[1]) @ e[2]
    after = np.linalg.inv(rel[1]) @ rel[2]
    np.testing.assert_allclose(after, e[0] @ before @ np.linalg.inv(e[0]), atol=1e-10)
    assert not np.allclose(after, before, atol=1e-3)
    angle = Rotation.from_matrix(before[:3, :3]).magnitude()
    assert Rotation.from_matrix(after[:3, :3]).magnitude() == pytest.approx(angle)


def test_relative_to_first_accepts_both_shapes() -> None:
    e = _random_extrinsics(3, 3)
    np.testing.assert_allclose(relative_to_first(e), relative_to_first(_homogeneous(e)))


# --------------------------------------------------------------------------- #
# Pose encoding
# --------------------------------------------------------------------------- #
def test_pose_encoding_round_trip() -> None:
    e = _random_extrinsics(6, 4)
    rng = np.random.default_rng(4)
    k = _intrinsics(rng.uniform(200, 600, 6), rng.uniform(200, 600, 6))
    enc = pose_encoding(e, k, IMAGE_SIZE)
    assert enc.shape == (6, 9)
    e_dec, k_dec = decode_pose_encoding(enc, IMAGE_SIZE)
    np.testing.assert_allclose(e_dec, e, atol=1e-12)
    np.testing.assert_allclose(k_dec, k, atol=1e-9)


def test_pose_encoding_hand_computed() -> None:
    # R = 90 degrees about x: q = (sin 45, 0, 0, cos 45) in (x, y, z, w) order.
    # fx = W / 2 -> fov_w = 2 atan(1) = pi / 2; fy = H / (2 sqrt(3)) -> fov_h = 2 atan(sqrt 3) = 2 pi / 3.
    rot = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    e = np.concatenate([rot, [[1.0], [2.0], [3.0]]], axis=1)[None]
    h, w = IMAGE_SIZE
    k = _intrinsics(np.array([w / 2]), np.array([h / (2 * np.sqrt(3))]))
    enc = pose_encoding(e, k, IMAGE_SIZE)[0]
    s = np.sqrt(0.5)
    np.testing.assert_allclose(enc, [1, 2, 3, s, 0, 0, s, 2 * np.pi / 3, np.pi / 2], atol=1e-12)


def test_pose_encoding_quaternion_sign_is_canonical() -> None:
    # 270 degrees about z: the unit quaternion with w = cos(135 deg) < 0 is flipped
    # to the equivalent one with w > 0 (= -90 degrees about z).
    rot = Rotation.from_rotvec([0.0, 0.0, 1.5 * np.pi]).as_matrix()
    e = np.concatenate([np.stack([rot, np.eye(3)]), np.zeros((2, 3, 1))], axis=2)
    enc = pose_encoding(e, _intrinsics(np.full(2, 300.0), np.full(2, 300.0)), IMAGE_SIZE)
    s = np.sqrt(0.5)
    np.testing.assert_allclose(enc[0, 3:7], [0, 0, -s, s], atol=1e-12)
    np.testing.assert_allclose(enc[1, 3:7], [0, 0, 0, 1], atol=1e-12)
    many = pose_encoding(_random_extrinsics(50, 5), _intrinsics(np.full(50, 300.0), np.full(50, 300.0)), IMAGE_SIZE)
    assert np.all(many[:, 6] >= 0)


def test_decode_normalises_quaternion_and_centres_principal_point() -> None:
    e = _random_extrinsics(2, 6)
    k = _intrinsics(np.array([250.0, 400.0]), np.array([260.0, 380.0]))
    k[:, 0, 2] += 7.0  # off-centre principal point: not encoded
    enc = pose_encoding(e, k, IMAGE_SIZE)
    enc[:, 3:7] *= 3.5
    e_dec, k_dec = decode_pose_encoding(enc, IMAGE_SIZE)
    np.testing.assert_allclose(e_dec, e, atol=1e-12)
    np.testing.assert_allclose(k_dec[:, 0, 0], [250.0, 400.0])
    np.testing.assert_allclose(k_dec[:, 1, 1], [260.0, 380.0])
    np.testing.assert_allclose(k_dec[:, 0, 2], IMAGE_SIZE[1] / 2)
    np.testing.assert_allclose(k_dec[:, 1, 2], IMAGE_SIZE[0] / 2)


@pytest.mark.parametrize(
    "extrinsics,intrinsics,image_size,match",
    [
        (np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), IMAGE_SIZE, r"extrinsics must have shape \(S, 3, 4\)"),
        (np.tile(np.eye(4)[:3], (2, 1, 1)), np.tile(np.eye(3), (3, 1, 1)), IMAGE_SIZE,
         r"intrinsics must have shape \(2, 3, 3\)"),
        (np.tile(np.eye(4)[:3], (1, 1, 1)), -np.eye(3)[None], IMAGE_SIZE, "positive focal lengths"),
        (np.tile(np.eye(4)[:3], (1, 1, 1)), np.eye(3)[None], (0, 10), "image_size"),
        (np.tile(2 * np.eye(4), (1, 1, 1)), np.eye(3)[None], IMAGE_SIZE, r"last row \[0, 0, 0, 1\]"),
    ],
)
def test_pose_encoding_value_errors(extrinsics, intrinsics, image_size, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        pose_encoding(extrinsics, intrinsics, image_size)


@pytest.mark.parametrize(
    "encoding,match",
    [
        (np.zeros((2, 8)), r"encoding must have shape \(S, 9\)"),
        (np.array([[0, 0, 0, 0, 0, 0, 0, 1.0, 1.0]]), "zero quaternion"),
        (np.array([[0, 0, 0, 0, 0, 0, 1, 0.0, 1.0]]), r"FoVs must lie in \(0, pi\)"),
        (np.array([[0, 0, 0, 0, 0, 0, 1, 1.0, np.pi]]), r"FoVs must lie in \(0, pi\)"),
        (np.array([[np.nan, 0, 0, 0, 0, 0, 1, 1.0, 1.0]]), "finite"),
    ],
)
def test_decode_pose_encoding_value_errors(encoding, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        decode_pose_encoding(encoding, IMAGE_SIZE)


# --------------------------------------------------------------------------- #
# nearest_rotation
# --------------------------------------------------------------------------- #
def _assert_rotations(r: np.ndarray) -> None:
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_nearest_rotation_of_exact_rotation_is_itself() -> None:
    rot = Rotation.random(10, random_state=7).as_matrix()
    np.testing.assert_allclose(nearest_rotation(rot), rot, atol=1e-12)


def test_nearest_rotation_of_noisy_rotation() -> None:
    rng = np.random.default_rng(8)
    rot = Rotation.random(12, random_state=8).as_matrix().reshape(3, 4, 3, 3)
    noisy = rot + rng.normal(scale=0.05, size=rot.shape)
    got = nearest_rotation(noisy)
    assert got.shape == (3, 4, 3, 3)
    _assert_rotations(got)
    # Closer (Frobenius) to the noisy matrix than the clean rotation it came from.
    assert np.all(np.linalg.norm(got - noisy, axis=(-2, -1)) <= np.linalg.norm(rot - noisy, axis=(-2, -1)) + 1e-12)


def test_nearest_rotation_fixes_reflection() -> None:
    # diag(3, 2, -1): singular values 3, 2, 1 and U V^T = diag(1, 1, -1) (det -1).
    # Flipping the direction of the smallest singular value gives the identity.
    m = np.diag([3.0, 2.0, -1.0])
    got = nearest_rotation(m)
    _assert_rotations(got)
    np.testing.assert_allclose(got, np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "matrices,match",
    [
        (np.eye(4), r"matrices must have shape \(\.\.\., 3, 3\)"),
        (np.ones(3), r"matrices must have shape \(\.\.\., 3, 3\)"),
        (np.full((3, 3), np.inf), "finite"),
    ],
)
def test_nearest_rotation_value_errors(matrices, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        nearest_rotation(matrices)


def test_first_view_frame_puts_view_zero_at_the_origin_with_unit_mean_norm() -> None:
    extrinsics = _random_extrinsics(3, seed=4)
    rng = np.random.default_rng(5)
    world = rng.uniform(-3, 3, size=(3, 4, 5, 3))
    depth = np.ones((3, 4, 5))
    depth[1, 0, 0] = np.nan  # an invalid pixel stays out of the mask
    frame = first_view_frame(depth, world, extrinsics)
    np.testing.assert_allclose(frame.extrinsics[0], np.eye(3, 4), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(frame.points[0], axis=-1).mean(), 1.0)
    camera0 = world @ extrinsics[0, :, :3].T + extrinsics[0, :, 3]
    np.testing.assert_allclose(frame.points * frame.scale, camera0)
    assert not frame.valid[1, 0, 0] and frame.valid.sum() == depth.size - 1
    # a point seen from view i: E'_i applied to the scaled view-0 point = view i's camera point, scaled
    camera1 = world[1] @ extrinsics[1, :, :3].T + extrinsics[1, :, 3]
    moved = frame.points[1] @ frame.extrinsics[1, :, :3].T + frame.extrinsics[1, :, 3]
    np.testing.assert_allclose(moved * frame.scale, camera1, atol=1e-9)


def test_first_view_frame_needs_a_valid_reference_view() -> None:
    depth = np.ones((2, 3, 3))
    depth[0] = 0.0
    with pytest.raises(ValueError, match="view 0 has no valid depth"):
        first_view_frame(depth, np.zeros((2, 3, 3, 3)), _random_extrinsics(2, seed=0))
