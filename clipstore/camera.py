"""Ground-truth geometry conventions shared by extractors (the oracle) and probes (the geometry targets).

Extrinsics are world-to-camera ``[R | t]`` in the OpenCV camera frame (x right, y down, z forward):
``X_cam = R @ X_world + t``, accepted as (S, 3, 4) or homogeneous (S, 4, 4) and returned as (S, 3, 4).
The per-sample normalisation of the paper's geometry probes lives here, below both packages, so the oracle
source encodes exactly what the geometry targets compare against (docs/tasks.md, "Geometry").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FirstViewFrame", "as_extrinsics", "first_view_frame", "relative_to_first"]

_BOTTOM_ROW = np.array([0.0, 0.0, 0.0, 1.0])


def as_extrinsics(extrinsics: ArrayLike, name: str = "extrinsics") -> NDArray[np.float64]:
    """(S, 3, 4) float64 from (S, 3, 4) or (S, 4, 4), validated."""
    e = np.asarray(extrinsics, dtype=np.float64)
    if e.ndim != 3 or e.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"{name} must have shape (S, 3, 4) or (S, 4, 4), got shape {e.shape}")
    if e.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one view, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{name} must contain only finite values")
    if e.shape[1] == 4 and not np.allclose(e[:, 3], _BOTTOM_ROW):
        raise ValueError(f"{name} (S, 4, 4) must have last row [0, 0, 0, 1], got {e[:, 3].tolist()}")
    return e[:, :3]


def _homogeneous(e34: NDArray[np.float64]) -> NDArray[np.float64]:
    bottom = np.broadcast_to(_BOTTOM_ROW, (e34.shape[0], 1, 4))
    return np.concatenate([e34, bottom], axis=1)


def relative_to_first(extrinsics: ArrayLike) -> NDArray[np.float64]:
    """Re-express world-to-camera matrices in view 0's camera frame as the world.

    ``E'_i = E_i @ inv(E_0)``, so ``E'_0`` is the identity. A point keeps its
    camera coordinates (``E'_i @ (E_0 @ X) = E_i @ X``), and the camera-to-camera
    motions ``E_j @ inv(E_i)`` are unchanged. VGGT's evaluation quantity
    ``inv(E_i) @ E_j`` is *not* unchanged in general (it gets conjugated by
    ``E_0``), only its rotation angle is.

    Args:
        extrinsics: (S, 3, 4) or (S, 4, 4) world-to-camera matrices.

    Returns:
        (S, 3, 4) world-to-camera matrices with world = camera 0.

    Raises:
        ValueError: on a bad shape, non-finite values, or a (S, 4, 4) input whose
            last row is not [0, 0, 0, 1].
    """
    e = _homogeneous(as_extrinsics(extrinsics))
    return (e @ np.linalg.inv(e[0]))[:, :3]


@dataclass(frozen=True)
class FirstViewFrame:
    """Geometry of a set of views in view 0's camera frame, scaled so view 0's mean point norm is 1."""

    scale: float  # view 0's mean point norm in the input units; divide lengths by it
    points: NDArray[np.float64]  # (S, H, W, 3) in view 0's camera frame, scaled (non-finite where invalid)
    extrinsics: NDArray[np.float64]  # (S, 3, 4) world = camera 0, translations scaled
    valid: NDArray[np.bool_]  # (S, H, W) finite depth > 0 with a finite point


def first_view_frame(depth: ArrayLike, points: ArrayLike, extrinsics: ArrayLike) -> FirstViewFrame:
    """The reference's per-sample geometry normalisation: everything in view 0's camera frame, scaled so
    the mean norm of view 0's valid points is 1. ``depth`` (S, H, W), ``points`` (S, H, W, 3) in world
    coordinates, ``extrinsics`` (S, 3|4, 4) world-to-camera. Raises ValueError when view 0 has no valid
    pixel (nothing to take the scale from)."""
    depth = np.asarray(depth, dtype=np.float64)
    e = as_extrinsics(extrinsics)
    camera0 = np.asarray(points, dtype=np.float64) @ e[0, :, :3].T + e[0, :, 3]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0) & np.isfinite(camera0).all(axis=-1)
    if not valid[0].any():
        raise ValueError("view 0 has no valid depth, so the views cannot be scale-normalised")
    scale = float(np.linalg.norm(camera0[0][valid[0]], axis=-1).mean())
    relative = relative_to_first(e)
    relative[:, :, 3] /= scale
    return FirstViewFrame(scale, camera0 / scale, relative, valid)

