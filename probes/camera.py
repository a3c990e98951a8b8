"""Camera conventions and VGGT's pose encoding (numpy + scipy's Rotation only).

Extrinsics are world-to-camera ``[R | t]`` in the OpenCV camera frame (x right,
y down, z forward): ``X_cam = R @ X_world + t``. They are accepted as (S, 3, 4)
or homogeneous (S, 4, 4) and returned as (S, 3, 4). Intrinsics are (S, 3, 3)
pinhole matrices ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, and
``image_size`` is ``(H, W)`` in pixels.

Pose encoding (VGGT's ``"absT_quaR_FoV"``), 9 numbers per view::

    [tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]

with ``t`` the extrinsic translation, ``q`` the unit quaternion of ``R`` in
VGGT's scalar-last order, sign-canonicalised so that ``qw >= 0`` (for
``qw == 0`` scipy's rule: the first non-zero component is positive),
``fov_h = 2 atan(H / (2 fy))`` and ``fov_w = 2 atan(W / (2 fx))`` in radians.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from clipstore.camera import FirstViewFrame, as_extrinsics, first_view_frame, relative_to_first

__all__ = ["FirstViewFrame", "decode_pose_encoding", "first_view_frame", "nearest_rotation", "pose_encoding",
           "relative_to_first"]


def _image_size(image_size: tuple[int, int]) -> tuple[float, float]:
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"image_size must be (H, W) with positive entries, got {tuple(image_size)}")
    return float(image_size[0]), float(image_size[1])


def pose_encoding(
    extrinsics: ArrayLike, intrinsics: ArrayLike, image_size: tuple[int, int]
) -> NDArray[np.float64]:
    """VGGT's ``absT_quaR_FoV`` encoding ``[t (3), q xyzw (4), fov_h, fov_w]``.

    See the module docstring for the exact definition. ``R`` is expected to be
    a rotation; scipy's :meth:`Rotation.from_matrix` orthogonalises it
    otherwise. The principal point is not encoded.

    Args:
        extrinsics: (S, 3, 4) or (S, 4, 4) world-to-camera matrices.
        intrinsics: (S, 3, 3) pinhole intrinsics with ``fx, fy > 0``.
        image_size: ``(H, W)`` in pixels.

    Returns:
        (S, 9) encoding, FoVs in radians.

    Raises:
        ValueError: on bad or mismatched shapes, non-finite values, a
            non-positive focal length or image size.
    """
    e = as_extrinsics(extrinsics)
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (e.shape[0], 3, 3):
        raise ValueError(f"intrinsics must have shape ({e.shape[0]}, 3, 3) to match extrinsics, got {k.shape}")
    fx, fy = k[:, 0, 0], k[:, 1, 1]
    if not (np.all(np.isfinite(k)) and np.all(fx > 0) and np.all(fy > 0)):
        raise ValueError("intrinsics must be finite with positive focal lengths fx = K[0, 0], fy = K[1, 1]")
    height, width = _image_size(image_size)
    quat = Rotation.from_matrix(e[:, :, :3]).as_quat(canonical=True)
    fov_h = 2.0 * np.arctan(height / (2.0 * fy))
    fov_w = 2.0 * np.arctan(width / (2.0 * fx))
    return np.concatenate([e[:, :, 3], quat, fov_h[:, None], fov_w[:, None]], axis=1)


def decode_pose_encoding(
    encoding: ArrayLike, image_size: tuple[int, int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Invert :func:`pose_encoding` (as VGGT's ``pose_encoding_to_extri_intri``).

    The quaternion is normalised before conversion (a probe's raw output is
    not unit length). ``fy = H / (2 tan(fov_h / 2))``,
    ``fx = W / (2 tan(fov_w / 2))``, and the principal point is put at
    ``(cx, cy) = (W / 2, H / 2)`` as VGGT does (not ``(W - 1) / 2``), so an
    off-centre principal point does not survive the round trip.

    Args:
        encoding: (S, 9) encodings ``[t, q xyzw, fov_h, fov_w]``.
        image_size: ``(H, W)`` in pixels.

    Returns:
        ``(extrinsics (S, 3, 4), intrinsics (S, 3, 3))``.

    Raises:
        ValueError: on a shape other than (S, 9), non-finite values, a
            (near) zero quaternion, or a FoV outside (0, pi).
    """
    enc = np.asarray(encoding, dtype=np.float64)
    if enc.ndim != 2 or enc.shape[1] != 9:
        raise ValueError(f"encoding must have shape (S, 9), got shape {enc.shape}")
    if not np.all(np.isfinite(enc)):
        raise ValueError("encoding must contain only finite values")
    quat = enc[:, 3:7]
    norm = np.linalg.norm(quat, axis=1)
    if np.any(norm < 1e-12):
        raise ValueError(f"encoding has a (near) zero quaternion (norms {norm.tolist()})")
    fov = enc[:, 7:9]
    if np.any(fov <= 0) or np.any(fov >= np.pi):
        raise ValueError(f"encoding FoVs must lie in (0, pi) radians, got range [{fov.min()}, {fov.max()}]")
    height, width = _image_size(image_size)

    rot = Rotation.from_quat(quat / norm[:, None]).as_matrix()
    extrinsics = np.concatenate([rot, enc[:, :3, None]], axis=2)
    intrinsics = np.zeros((enc.shape[0], 3, 3))
    intrinsics[:, 0, 0] = width / (2.0 * np.tan(fov[:, 1] / 2.0))
    intrinsics[:, 1, 1] = height / (2.0 * np.tan(fov[:, 0] / 2.0))
    intrinsics[:, 0, 2] = width / 2.0
    intrinsics[:, 1, 2] = height / 2.0
    intrinsics[:, 2, 2] = 1.0
    return extrinsics, intrinsics


def nearest_rotation(matrices: ArrayLike) -> NDArray[np.float64]:
    """Closest rotation (Frobenius norm) to each 3x3 matrix, by SVD.

    With ``M = U diag(s) V^T``: ``R = U diag(1, 1, det(U V^T)) V^T``, the
    solution of the orthogonal Procrustes problem restricted to det +1 -- used
    to turn a linear probe's 9 regressed entries into a rotation.

    Args:
        matrices: (..., 3, 3) real matrices.

    Returns:
        (..., 3, 3) rotation matrices (orthonormal, det +1).

    Raises:
        ValueError: on a shape not ending in (3, 3) or non-finite values.
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim < 2 or m.shape[-2:] != (3, 3):
        raise ValueError(f"matrices must have shape (..., 3, 3), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("matrices must contain only finite values")
    u, _, vt = np.linalg.svd(m)
    # Flipping U's last column turns an improper orthogonal U V^T into the nearest rotation.
    det = np.linalg.det(u @ vt)
    u = u.copy()
    u[..., :, 2] *= np.where(det < 0, -1.0, 1.0)[..., None]
    return u @ vt
