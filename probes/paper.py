"""The "paper" probe nets: the reference code's VGGT-style probe, rebuilt from its description.

Architecture (docs/tasks.md, "Probe kinds"; VGGT's aggregator and heads with the patch embedding replaced by a
projection of frozen features):

- Trunk: LayerNorm(C) -> Linear(C, D); per view one camera token and ``registers`` register tokens, with a
  separate learned set for view 0 (that is how the reference view is marked; there is no view embedding, so
  any number of views works); 2-D RoPE on the patch tokens (half of each head's channels rotate with the row,
  half with the column; the special tokens sit at position 0, i.e. are not rotated); ``depth`` pairs of
  [within-view block, across-all-views block], each a pre-LN ViT block with QK-norm and LayerScale. Each pair
  emits concat(within-view output, across-views output), 2D channels, as VGGT does; heads read those.
- Geometry: two VGGT DPT heads (depth + confidence; points + confidence) on 4 evenly spaced pair outputs, and
  VGGT's camera head (``camera_depth`` blocks on the per-view camera tokens, adaLN conditioning on the current
  estimate, ``camera_iterations`` refinement steps).
- Instance: 1x1 convs 2D -> hidden -> hidden -> E with ReLU, L2-normalised, at the token grid.
- Tagging: K learned class queries, ``decoder_layers`` decoder layers (self-attention among the queries,
  cross-attention to all tokens of all views), one linear read-out per class.

Parameter counts of the defaults (built on the meta device; C = 1536 / C = 3584) against the reference's
published totals: geometry 383.9M / 386.0M (reference ~385M; camera head 216.2M -- 201.4M of it its four
2048-wide blocks, 12.6M the adaLN modulation -- vs ~216M; trunk 102.4M / 104.5M; each DPT head 32.7M),
instance 52.1M / 54.2M (~55M; almost all trunk), tagging 22.4M / 23.4M (~24M; trunk 13.4M / 14.5M, decoder
8.4M). All land within 7%, so no capacity was invented to close the remaining gaps (the reference's exact
layer options -- its text-embedding projection, biases, where its norms sit -- are not published).

Deliberate choices where the description is silent or where we depart from VGGT:

- DPT output resolution: the token grid times ``output_stride`` (default 4), not times the patch size: the
  last fusion block resamples straight to that size instead of upsampling x2, so no compute is spent above
  the output resolution. The caller resizes to the ground truth. VGGT's non-parametric UV position
  embedding inside the DPT head is left out.
- Point maps are not activated (VGGT uses "inv_log"): the targets are normalised to unit scale in view 0's
  frame, so there is no dynamic range to compress.
- Camera refinement starts from the identity encoding (FoV ``IDENTITY_FOV``) instead of a learned empty-pose
  token, and the output layer starts at 1% of its default scale, so an untrained head predicts ~identity.
  Only the final estimate is returned; the conditioning input of each step is detached (as in VGGT) but the
  running sum is not, so every step's update is trained through the final estimate.
- Instance head: a LayerNorm before the 1x1 convs, because the trunk output is an unnormalised residual
  stream (VGGT's DPT normalises its inputs the same way).
- Tagging head: the memory is LayerNorm + Linear(2D -> D) of the last pair output's tokens; decoder layers are
  pre-LN with MLP ratio ``mlp_ratio``. The reference initialises the class queries from CLIP text embeddings
  of the class names; those cannot be computed offline here, so the queries are learned from a random start
  unless a (K, E_text) ``class_embeddings`` tensor is passed, in which case queries = Linear(E_text, D) of it
  (the projection is trained, the embeddings are a fixed buffer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from probes.nets import (
    POSE_DIM,
    ProbeNet,
    activate_confidence,
    activate_depth,
    activate_pose,
    check_features,
    check_num_classes,
    identity_pose,
)

ROPE_BASE = 100.0  # VGGT's RoPE frequency base
DPT_LAYERS = 4
CAMERA_TOKEN = 0  # index of the camera token among a view's tokens; the registers follow it


# --------------------------------------------------------------------------- rotary position embedding

def rope_tables(h: int, w: int, special: int, head_dim: int,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (special + h * w, head_dim), for ``special`` unrotated tokens followed by the grid.

    The first half of a head's channels rotates with the row, the second half with the column.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head dim divisible by 4; got {head_dim}")
    axis_dim = head_dim // 2
    freqs = 1.0 / ROPE_BASE ** (torch.arange(0, axis_dim, 2, device=device, dtype=torch.float32) / axis_dim)
    rows, cols = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    origin = torch.zeros(special, device=device)
    # Patches start at position 1 so that position 0 (angle 0, no rotation) is the special tokens' alone.
    angles = []
    for grid in (rows, cols):
        position = torch.cat([origin, grid.reshape(-1) + 1.0])
        axis_angles = position[:, None] * freqs[None, :]
        angles.append(torch.cat([axis_angles, axis_angles], dim=-1))
    angle = torch.cat(angles, dim=-1)
    return angle.cos(), angle.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, head_dim) ``x``; each axis half is rotated on its own."""
    axis_dim = x.shape[-1] // 2
    rotated = torch.cat([_rotate_half(x[..., :axis_dim]), _rotate_half(x[..., axis_dim:])], dim=-1)
    return x * cos + rotated * sin


# --------------------------------------------------------------------------- transformer parts

class Attention(nn.Module):
    """Multi-head attention, optionally with per-head QK LayerNorm, 2-D RoPE and a separate context."""

    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = self.q_norm(self._split(self.q(x)))
        k, v = (self._split(t) for t in self.kv(context).chunk(2, dim=-1))
        k = self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.proj(attended.transpose(1, 2).reshape(x.shape))


def mlp(dim: int, hidden: int, out: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim if out is None else out))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-LN ViT block with LayerScale (VGGT's / DINOv2's ``Block``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layerscale: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qk_norm)
        self.ls1 = LayerScale(dim, layerscale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layerscale)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope=rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------- trunk

class PaperTrunk(nn.Module):
    """VGGT's alternating-attention aggregator on projected frozen features."""

    def __init__(self, in_channels: int, settings: Mapping[str, Any]):
        super().__init__()
        dim, heads, depth = settings["dim"], settings["heads"], settings["depth"]
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}")
        if dim % heads or (dim // heads) % 4:
            raise ValueError(f"dim {dim} / heads {heads} must give an integer head dim divisible by 4 (2-D RoPE)")
        self.in_channels = in_channels
        self.dim = dim
        self.heads = heads
        self.special = 1 + settings["registers"]
        self.in_norm = nn.LayerNorm(in_channels)
        self.in_proj = nn.Linear(in_channels, dim)
        # Index 0 of the second axis is view 0's token set, index 1 every other view's (VGGT's convention).
        self.camera_token = nn.Parameter(torch.empty(1, 2, 1, dim))
        self.register_tokens = nn.Parameter(torch.empty(1, 2, settings["registers"], dim))
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)
        block_args = (dim, heads, settings["mlp_ratio"], settings["layerscale"], True)
        self.frame_blocks = nn.ModuleList(Block(*block_args) for _ in range(depth))
        self.global_blocks = nn.ModuleList(Block(*block_args) for _ in range(depth))

    def _special_tokens(self, batch: int, views: int) -> torch.Tensor:
        tokens = torch.cat([self.camera_token, self.register_tokens], dim=2)  # (1, 2, special, D)
        per_view = torch.cat([tokens[:, :1], tokens[:, 1:].expand(1, views - 1, -1, -1)], dim=1)
        return per_view.expand(batch, -1, -1, -1)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        """One (B, S, special + h * w, 2D) tensor per pair: concat(within-view output, across-views output)."""
        batch, views, h, w = check_features(features, self.in_channels)
        patches = self.in_proj(self.in_norm(features)).reshape(batch, views, h * w, self.dim)
        x = torch.cat([self._special_tokens(batch, views).to(patches.dtype), patches], dim=2)
        tokens = x.shape[2]
        cos, sin = rope_tables(h, w, self.special, self.dim // self.heads, device=x.device)
        frame_rope = (cos.to(x.dtype), sin.to(x.dtype))
        global_rope = (frame_rope[0].repeat(views, 1), frame_rope[1].repeat(views, 1))
        outputs = []
        for frame_block, global_block in zip(self.frame_blocks, self.global_blocks):
            x = frame_block(x.reshape(batch * views, tokens, self.dim), rope=frame_rope)
            frame_out = x.reshape(batch, views, tokens, self.dim)
            x = global_block(x.reshape(batch, views * tokens, self.dim), rope=global_rope)
            x = x.reshape(batch, views, tokens, self.dim)
            outputs.append(torch.cat([frame_out, x], dim=-1))
        return outputs


def dpt_layer_indices(depth: int) -> list[int]:
    """Four evenly spaced pair indices ending at the last pair: depth 4 -> all four, 24 -> [5, 11, 17, 23]."""
    return [-(-(k + 1) * depth // DPT_LAYERS) - 1 for k in range(DPT_LAYERS)]


# --------------------------------------------------------------------------- DPT head

class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT feature fusion: add the (refined) skip, refine, resample to ``size``, 1x1 conv."""

    def __init__(self, features: int, has_skip: bool):
        super().__init__()
        self.skip_unit = ResidualConvUnit(features) if has_skip else None
        self.unit = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if self.skip_unit is not None:
            x = x + self.skip_unit(skip)
        x = F.interpolate(self.unit(x), size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """VGGT's DPT head: 4 pair outputs -> maps at 4x, 2x, 1x, 1/2x the grid -> fused -> grid x output_stride."""

    def __init__(self, dim_in: int, out_dim: int, features: int, channels: Sequence[int], output_stride: int,
                 layer_indices: Sequence[int]):
        super().__init__()
        if len(channels) != DPT_LAYERS:
            raise ValueError(f"dpt_channels needs {DPT_LAYERS} entries; got {list(channels)}")
        if output_stride < 1:
            raise ValueError(f"output_stride must be >= 1; got {output_stride}")
        self.output_stride = output_stride
        self.layer_indices = list(layer_indices)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in channels)
        self.resize = nn.ModuleList([
            nn.ConvTranspose2d(channels[0], channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(channels[1], channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(channels[3], channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in channels)
        # fusion[0] fuses the coarsest map (no skip) ... fusion[3] the finest, as VGGT's refinenet4 ... 1.
        self.fusion = nn.ModuleList(FusionBlock(features, has_skip=k > 0) for k in range(DPT_LAYERS))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(),
                                          nn.Conv2d(32, out_dim, 1))

    def forward(self, pair_outputs: Sequence[torch.Tensor], special: int, h: int, w: int) -> torch.Tensor:
        """(B, S, out_dim, h * output_stride, w * output_stride) raw outputs."""
        batch, views = pair_outputs[0].shape[:2]
        maps = []
        for k, index in enumerate(self.layer_indices):
            x = self.norm(pair_outputs[index][:, :, special:])
            x = x.reshape(batch * views, h, w, -1).permute(0, 3, 1, 2)
            maps.append(self.layer_rn[k](self.resize[k](self.projects[k](x))))
        out_size = (h * self.output_stride, w * self.output_stride)
        x = self.fusion[0](maps[3], None, size=maps[2].shape[-2:])
        x = self.fusion[1](x, maps[2], size=maps[1].shape[-2:])
        x = self.fusion[2](x, maps[1], size=maps[0].shape[-2:])
        x = self.fusion[3](x, maps[0], size=out_size)
        x = self.output_conv2(self.output_conv1(x))
        return x.reshape(batch, views, *x.shape[1:])


# --------------------------------------------------------------------------- camera head

class CameraHead(nn.Module):
    """VGGT's camera head: blocks across the views' camera tokens, adaLN-conditioned on the current estimate."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, layerscale: float, iterations: int):
        super().__init__()
        if depth < 1 or iterations < 1:
            raise ValueError(f"camera_depth and camera_iterations must be >= 1; got {depth}, {iterations}")
        self.iterations = iterations
        self.token_norm = nn.LayerNorm(dim)
        self.trunk = nn.ModuleList(Block(dim, heads, mlp_ratio, layerscale, qk_norm=False) for _ in range(depth))
        self.trunk_norm = nn.LayerNorm(dim)
        self.embed_pose = nn.Linear(POSE_DIM, dim)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = mlp(dim, dim // 2, POSE_DIM)
        with torch.no_grad():
            # Small updates at first, so the estimate stays near the identity it starts from.
            self.pose_branch[-1].weight.mul_(0.01)
            self.pose_branch[-1].bias.zero_()

    def forward(self, camera_tokens: torch.Tensor) -> torch.Tensor:
        """(B, S, dim) camera tokens -> (B, S, 9) activated pose encoding."""
        tokens = self.token_norm(camera_tokens)
        estimate = identity_pose(device=tokens.device, dtype=tokens.dtype).expand(*tokens.shape[:2], POSE_DIM)
        for _ in range(self.iterations):
            shift, scale, gate = self.modulation(self.embed_pose(estimate.detach())).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            for block in self.trunk:
                x = block(x)
            estimate = estimate + self.pose_branch(self.trunk_norm(x))
        return activate_pose(estimate)


# --------------------------------------------------------------------------- task nets

class PaperGeometry(ProbeNet):
    task = "geometry"

    def __init__(self, in_channels: int, settings: Mapping[str, Any]):
        super().__init__()
        self.trunk = PaperTrunk(in_channels, settings)
        dim2 = 2 * settings["dim"]
        dpt_args = (settings["dpt_features"], settings["dpt_channels"], settings["output_stride"],
                    dpt_layer_indices(settings["depth"]))
        self.depth_head = DPTHead(dim2, 2, *dpt_args)
        self.point_head = DPTHead(dim2, 4, *dpt_args)
        self.camera_head = CameraHead(dim2, settings["camera_depth"], settings["heads"], settings["mlp_ratio"],
                                      settings["layerscale"], settings["camera_iterations"])

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = features.shape[2:4]
        pairs = self.trunk(features)
        depth = self.depth_head(pairs, self.trunk.special, h, w)
        points = self.point_head(pairs, self.trunk.special, h, w)
        return {
            "depth": activate_depth(depth[:, :, 0]),
            "depth_conf": activate_confidence(depth[:, :, 1]),
            "points": points[:, :, :3].movedim(2, -1),
            "points_conf": activate_confidence(points[:, :, 3]),
            "pose": self.camera_head(pairs[-1][:, :, CAMERA_TOKEN]),
        }


class PaperInstance(ProbeNet):
    task = "instance"

    def __init__(self, in_channels: int, settings: Mapping[str, Any]):
        super().__init__()
        self.trunk = PaperTrunk(in_channels, settings)
        dim2, hidden = 2 * settings["dim"], settings["hidden"]
        self.norm = nn.LayerNorm(dim2)
        # 1x1 convs on a channels-last grid are per-token linear maps; Linear avoids two permutes.
        self.head = nn.Sequential(nn.Linear(dim2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, settings["embed_dim"]))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, views, h, w, _ = features.shape
        tokens = self.trunk(features)[-1][:, :, self.trunk.special:]
        embedding = F.normalize(self.head(self.norm(tokens)), dim=-1)
        return {"embedding": embedding.reshape(batch, views, h, w, -1)}


class DecoderLayer(nn.Module):
    """Pre-LN query decoder layer: self-attention among the queries, cross-attention to the memory, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, qk_norm=False)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, qk_norm=False)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = mlp(dim, int(dim * mlp_ratio))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        queries = queries + self.self_attn(self.norm_self(queries))
        queries = queries + self.cross_attn(self.norm_cross(queries), context=memory)
        return queries + self.mlp(self.norm_mlp(queries))


class PaperTagging(ProbeNet):
    task = "tagging"

    def __init__(self, in_channels: int, settings: Mapping[str, Any], num_classes: int,
                 class_embeddings: torch.Tensor | None = None):
        super().__init__()
        check_num_classes(num_classes)
        dim = settings["dim"]
        self.trunk = PaperTrunk(in_channels, settings)
        self.memory = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim))
        if class_embeddings is None:
            self.queries = nn.Parameter(torch.empty(num_classes, dim))
            nn.init.normal_(self.queries, std=0.02)
            self.query_proj = None
        else:
            if class_embeddings.ndim != 2 or class_embeddings.shape[0] != num_classes:
                raise ValueError(f"class_embeddings must be (num_classes={num_classes}, E_text); "
                                 f"got {tuple(class_embeddings.shape)}")
            self.register_buffer("class_embeddings", class_embeddings.detach().float().clone())
            self.query_proj = nn.Linear(class_embeddings.shape[1], dim)
        self.decoder = nn.ModuleList(DecoderLayer(dim, settings["heads"], settings["mlp_ratio"])
                                     for _ in range(settings["decoder_layers"]))
        self.out_norm = nn.LayerNorm(dim)
        self.class_weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.class_weight, std=0.02)
        self.class_bias = nn.Parameter(torch.zeros(num_classes))

    def _queries(self) -> torch.Tensor:
        return self.queries if self.query_proj is None else self.query_proj(self.class_embeddings)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        last = self.trunk(features)[-1]
        memory = self.memory(last.reshape(last.shape[0], -1, last.shape[-1]))
        queries = self._queries().to(memory.dtype).expand(memory.shape[0], -1, -1)
        for layer in self.decoder:
            queries = layer(queries, memory)
        logits = (self.out_norm(queries) * self.class_weight).sum(dim=-1) + self.class_bias
        return {"logits": logits}
