"""Trainable probe networks on frozen features: the shared interface, the factory, and the light nets.

Every net maps ``features`` of shape (B, S, h, w, C) -- B samples, S views each, an h x w token grid of C
channels per view -- to a dict of named outputs, so one training loop drives all of them:

- ``"tagging"``:  ``{"logits": (B, K)}``
- ``"instance"``: ``{"embedding": (B, S, h, w, E)}``, unit L2 norm along the last dim
- ``"geometry"``: ``{"depth", "depth_conf", "points_conf": (B, S, Ho, Wo) > 0, "points": (B, S, Ho, Wo, 3),
  "pose": (B, S, 9)}``; (Ho, Wo) is the head's own resolution (the caller resizes to the ground truth), and
  ``pose`` is VGGT's camera encoding [translation 3, quaternion xyzw 4, fov_h, fov_w] of each view relative
  to view 0.

Two kinds: ``"light"`` (here; a single small transformer over all tokens of all views of a sample, well under
1M parameters) and ``"paper"`` (:mod:`probes.paper`; the reference code's VGGT-style heads, 24M-385M
parameters). Which class serves which (kind, task), and its settings, is declared by the task
(:class:`probes.taskspec.NetKind` in the task's ``SPEC``); :func:`build_probe_net` reads it from the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from probes.tasks import task_spec

POSE_DIM = 9
# Field of view (radians) of the identity pose the camera heads start from; ~57 degrees sits inside the
# range of ordinary video cameras, so the first estimate is plausible rather than degenerate.
IDENTITY_FOV = 1.0

class ProbeNet(nn.Module):
    """The interface every probe net implements; ``task`` names the output dict's layout (module docstring)."""

    task: str

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def check_features(features: torch.Tensor, in_channels: int) -> tuple[int, int, int, int]:
    """(B, S, h, w) of a valid feature tensor; raises on a wrong rank, dtype or channel count."""
    if features.ndim != 5:
        raise ValueError(f"features must be (B, S, h, w, C); got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"features must be floating point; got {features.dtype}")
    batch, views, h, w, channels = features.shape
    if channels != in_channels:
        raise ValueError(f"features have {channels} channels; this net was built for {in_channels}")
    if min(batch, views, h, w) < 1:
        raise ValueError(f"features have an empty dimension: shape {tuple(features.shape)}")
    return batch, views, h, w


def identity_pose(*, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(9,) VGGT encoding of the identity camera: no translation, quaternion [0, 0, 0, 1], FoV IDENTITY_FOV."""
    return torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, IDENTITY_FOV, IDENTITY_FOV], device=device,
                        dtype=dtype)


def activate_pose(raw: torch.Tensor) -> torch.Tensor:
    """VGGT's pose activation ("linear" translation and quaternion, "relu" FoV): a FoV is never negative."""
    return torch.cat([raw[..., :7], F.relu(raw[..., 7:])], dim=-1)


def activate_depth(raw: torch.Tensor) -> torch.Tensor:
    """VGGT's "exp" activation: depth is positive and the net works in log-depth."""
    return torch.exp(raw)


def activate_confidence(raw: torch.Tensor) -> torch.Tensor:
    """VGGT's "expp1" activation: confidence > 1, so the confidence-weighted loss's -log(c) term stays finite."""
    return 1.0 + torch.exp(raw)


def sincos_position_embedding_2d(h: int, w: int, dim: int, *, device: torch.device | None = None) -> torch.Tensor:
    """(h * w, dim) fixed 2-D sin-cos embedding (MAE style): half the channels encode the row, half the column.

    Computed for the actual grid rather than learned, because the grid size differs between feature sources.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs dim divisible by 4; got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = []
    for position in (rows.reshape(-1), cols.reshape(-1)):
        angles = position[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=-1)


class LightBlock(nn.Module):
    """Pre-LN transformer block with full self-attention over its whole token sequence."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp(self.norm2(x))


class LightTrunk(nn.Module):
    """Project features to ``dim``, mark views and grid positions, attend jointly over all views of a sample."""

    def __init__(self, in_channels: int, dim: int, heads: int, blocks: int, mlp_ratio: float, max_views: int,
                 dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1; got {blocks}")
        self.in_channels = in_channels
        self.dim = dim
        self.max_views = max_views
        self.in_norm = nn.LayerNorm(in_channels)
        self.in_proj = nn.Linear(in_channels, dim)
        # A learned embedding per view index; it is what tells the net which view is the reference (view 0).
        self.view_embed = nn.Embedding(max_views, dim)
        nn.init.normal_(self.view_embed.weight, std=0.02)
        self.blocks = nn.ModuleList(LightBlock(dim, heads, mlp_ratio, dropout) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, S, h * w, dim) tokens."""
        batch, views, h, w = check_features(features, self.in_channels)
        if views > self.max_views:
            raise ValueError(f"{views} views per sample exceed max_views={self.max_views} of this net")
        x = self.in_proj(self.in_norm(features)).reshape(batch, views, h * w, self.dim)
        x = x + self.view_embed.weight[:views, None, :]
        x = x + sincos_position_embedding_2d(h, w, self.dim, device=x.device).to(x.dtype)
        x = x.reshape(batch, views * h * w, self.dim)
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x).reshape(batch, views, h * w, self.dim)


def _trunk(in_channels: int, settings: Mapping[str, Any]) -> LightTrunk:
    return LightTrunk(in_channels, settings["dim"], settings["heads"], settings["blocks"], settings["mlp_ratio"],
                      settings["max_views"], settings["dropout"])


class LightTagging(ProbeNet):
    """Mean over all tokens of all views -> LayerNorm -> one logit per class."""

    task = "tagging"

    def __init__(self, in_channels: int, settings: Mapping[str, Any], num_classes: int):
        super().__init__()
        self.trunk = _trunk(in_channels, settings)
        self.head = nn.Sequential(nn.LayerNorm(settings["dim"]),
                                  nn.Linear(settings["dim"], check_num_classes(num_classes)))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.trunk(features)
        return {"logits": self.head(tokens.mean(dim=(1, 2)))}


class LightInstance(ProbeNet):
    """Per-token linear embedding, L2-normalised, at the token grid."""

    task = "instance"

    def __init__(self, in_channels: int, settings: Mapping[str, Any]):
        super().__init__()
        self.trunk = _trunk(in_channels, settings)
        self.head = nn.Linear(settings["dim"], settings["embed_dim"])

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, views, h, w, _ = features.shape
        embedding = F.normalize(self.head(self.trunk(features)), dim=-1)
        return {"embedding": embedding.reshape(batch, views, h, w, -1)}


class LightCameraHead(nn.Module):
    """Per-view mean token -> MLP -> 9-d pose encoding, starting at the identity pose."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.hidden = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, POSE_DIM)
        with torch.no_grad():
            # Small output weights and an identity bias: an untrained head predicts ~identity for every view,
            # which is the right answer for view 0 and a sane start for the others.
            self.out.weight.mul_(0.01)
            self.out.bias.copy_(identity_pose(device=self.out.bias.device))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, S, T, dim) tokens -> (B, S, 9)."""
        return activate_pose(self.out(F.gelu(self.hidden(self.norm(tokens.mean(dim=2))))))


class LightGeometry(ProbeNet):
    """Per-token log-depth, depth confidence, xyz and point confidence at the token grid, plus a camera head."""

    task = "geometry"

    def __init__(self, in_channels: int, settings: Mapping[str, Any]):
        super().__init__()
        self.trunk = _trunk(in_channels, settings)
        self.dense = nn.Linear(settings["dim"], 6)
        self.camera = LightCameraHead(settings["dim"])

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, views, h, w, _ = features.shape
        tokens = self.trunk(features)
        raw = self.dense(tokens).reshape(batch, views, h, w, 6)
        return {
            "depth": activate_depth(raw[..., 0]),
            "depth_conf": activate_confidence(raw[..., 1]),
            "points": raw[..., 2:5],
            "points_conf": activate_confidence(raw[..., 5]),
            "pose": self.camera(tokens),
        }


def resolve_settings(kind: str, task: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The net settings of (kind, task) overridden by ``settings``; unknown kinds, tasks or keys raise ValueError."""
    defaults = task_spec(task).net_kind(kind).architecture
    given = dict(settings or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{kind} {task} net: unknown setting(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def build_probe_net(kind: str, task: str, in_channels: int, settings: Mapping[str, Any] | None = None,
                    **arguments: Any) -> ProbeNet:
    """The ``kind`` probe net of ``task`` on ``in_channels``-channel features, as the task declares it.

    ``arguments`` are the net class's extra constructor arguments (the task's ``net_arguments``, e.g.
    ``num_classes`` for tagging); ``None`` values are dropped, a missing or unexpected one is an error.
    """
    net_kind = task_spec(task).net_kind(kind)
    resolved = resolve_settings(kind, task, settings)
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1; got {in_channels}")
    cls = net_kind.net_class()
    given = {key: value for key, value in arguments.items() if value is not None}
    _check_arguments(cls, given)
    return cls(in_channels, resolved, **given)


def _check_arguments(cls: type, given: Mapping[str, Any]) -> None:
    parameters = list(inspect.signature(cls).parameters.values())[2:]  # after in_channels, settings
    names = {p.name for p in parameters}
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty]
    missing = [name for name in required if name not in given]
    unexpected = sorted(set(given) - names)
    if missing or unexpected:
        raise ValueError(f"{cls.__name__}: missing argument(s) {missing}, unexpected {unexpected}; it takes "
                         f"{sorted(names) or 'none'}")


def check_num_classes(num_classes: int) -> int:
    """``num_classes`` of a tagging net, refused below 1."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    return num_classes


def parameter_count(net: nn.Module) -> int:
    """Number of parameters (works on a net built on the ``meta`` device)."""
    return sum(p.numel() for p in net.parameters())


__all__ = ["IDENTITY_FOV", "POSE_DIM", "ProbeNet", "check_num_classes",
           "activate_confidence", "activate_depth", "activate_pose", "build_probe_net", "check_features",
           "identity_pose", "parameter_count", "resolve_settings", "sincos_position_embedding_2d"]
