"""Probe nets (probes.nets, probes.paper): the shared output interface, initial state, gradients, sizes."""

from __future__ import annotations

import pytest
import torch

from probes.nets import IDENTITY_FOV, build_probe_net, identity_pose, parameter_count
from probes.paper import apply_rope, dpt_layer_indices, rope_tables
from probes.tasks import TASKS

B, S, H, W, C = 2, 3, 4, 6, 10
CLASSES = 5
TINY = {
    "light": {task: {"dim": 32, "heads": 2, "max_views": 4} for task in ("tagging", "instance", "geometry")},
    "paper": {
        "tagging": {"dim": 32, "depth": 1, "heads": 2, "decoder_layers": 1},
        "instance": {"dim": 32, "depth": 1, "heads": 2, "hidden": 16},
        "geometry": {"dim": 32, "depth": 1, "heads": 2, "camera_depth": 1, "dpt_features": 16,
                     "dpt_channels": (8, 16, 16, 32)},
    },
}
CASES = [(kind, task) for kind in TINY for task in TINY[kind]]


def tiny_net(kind: str, task: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_probe_net(kind, task, C, {**TINY[kind][task], **overrides},
                           num_classes=CLASSES if task == "tagging" else None)


def features(seed: int = 1, views: int = S) -> torch.Tensor:
    return torch.randn(B, views, H, W, C, generator=torch.Generator().manual_seed(seed))


def expected_shapes(kind: str, task: str) -> dict[str, tuple[int, ...]]:
    if task == "tagging":
        return {"logits": (B, CLASSES)}
    if task == "instance":
        return {"embedding": (B, S, H, W, 32)}
    stride = TINY[kind][task].get("output_stride", TASKS["geometry"].nets["paper"].architecture["output_stride"]) \
        if kind == "paper" else 1
    grid = (B, S, H * stride, W * stride)
    return {"depth": grid, "depth_conf": grid, "points": (*grid, 3), "points_conf": grid, "pose": (B, S, 9)}


@pytest.mark.parametrize("kind,task", CASES)
def test_output_keys_shapes_dtypes(kind, task):
    net = tiny_net(kind, task)
    assert net.task == task
    out = net(features())
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes(kind, task)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("kind", TINY)
def test_instance_embeddings_are_unit_norm(kind):
    embedding = tiny_net(kind, "instance")(features())["embedding"]
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(B, S, H, W))


@pytest.mark.parametrize("kind", TINY)
def test_geometry_positive_outputs_and_identity_pose_at_init(kind):
    out = tiny_net(kind, "geometry")(features())
    for key in ("depth", "depth_conf", "points_conf"):
        assert (out[key] > 0).all(), key
    assert (out["depth_conf"] > 1).all() and (out["points_conf"] > 1).all()
    pose = out["pose"].detach()
    torch.testing.assert_close(pose, identity_pose().expand(B, S, 9), atol=0.05, rtol=0)
    torch.testing.assert_close(pose[..., 3:7], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(B, S, 4),
                               atol=0.05, rtol=0)
    assert identity_pose()[7:].tolist() == [IDENTITY_FOV, IDENTITY_FOV]


@pytest.mark.parametrize("kind,task", CASES)
def test_backward_gives_finite_nonzero_gradients_everywhere(kind, task):
    net = tiny_net(kind, task)
    out = net(features())
    # Random weights: a plain sum can have exactly zero gradient (e.g. through an L2 normalisation).
    generator = torch.Generator().manual_seed(2)
    loss = sum((v * torch.randn(v.shape, generator=generator)).sum() for v in out.values())
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        if name == "trunk.view_embed.weight":  # rows of views beyond S get no gradient, by design
            assert parameter.grad[:S].abs().sum(dim=1).gt(0).all()
            continue
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind,task", CASES)
def test_same_seed_same_output(kind, task):
    first = tiny_net(kind, task, seed=7)(features())
    second = tiny_net(kind, task, seed=7)(features())
    other = tiny_net(kind, task, seed=8)(features())
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
    assert any(not torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize("kind", TINY)
def test_geometry_of_later_views_depends_on_view_0(kind):
    net = tiny_net(kind, "geometry").eval()
    x = features()
    changed = x.clone()
    changed[:, 0] = torch.randn(B, H, W, C, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        before, after = net(x), net(changed)
    for key in ("depth", "points", "pose"):
        assert not torch.allclose(before[key][:, 1:], after[key][:, 1:], rtol=0, atol=1e-7), key


@pytest.mark.parametrize("kind", TINY)
def test_view_0_is_distinguishable(kind):
    # Swapping two identical-content views must still change the output: view 0 is marked, not just first.
    net = tiny_net(kind, "geometry").eval()
    x = features()
    x[:, 1] = x[:, 2]
    swapped = x[:, [1, 0, 2]]
    with torch.no_grad():
        assert not torch.allclose(net(x)["pose"][:, 1], net(swapped)["pose"][:, 0], atol=1e-7)


def test_paper_net_takes_a_single_view():
    out = tiny_net("paper", "geometry")(features(views=1))
    assert out["pose"].shape == (B, 1, 9)


def test_light_net_refuses_more_views_than_max_views():
    with pytest.raises(ValueError, match="max_views=4"):
        tiny_net("light", "geometry")(features(views=5))


@pytest.mark.parametrize("kind,task", CASES)
def test_unknown_setting_is_refused_with_the_known_ones(kind, task):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['bogus'\]; known: .*'dim'"):
        tiny_net(kind, task, bogus=1)


def test_factory_argument_errors():
    with pytest.raises(ValueError, match="unknown probe net kind"):
        build_probe_net("heavy", "tagging", C, {}, num_classes=3)
    with pytest.raises(ValueError, match="unknown task"):
        build_probe_net("light", "depth", C, {})
    with pytest.raises(ValueError, match="num_classes"):
        build_probe_net("light", "tagging", C, {})
    with pytest.raises(ValueError, match="num_classes"):
        build_probe_net("paper", "geometry", C, {}, num_classes=3)
    with pytest.raises(ValueError, match="class_embeddings"):
        build_probe_net("light", "tagging", C, {}, num_classes=3, class_embeddings=torch.zeros(3, 8))
    with pytest.raises(ValueError, match="channels"):
        tiny_net("light", "instance")(torch.randn(B, S, H, W, C + 1))


def test_paper_tagging_queries_from_class_embeddings():
    torch.manual_seed(0)
    net = build_probe_net("paper", "tagging", C, TINY["paper"]["tagging"], num_classes=CLASSES,
                          class_embeddings=torch.randn(CLASSES, 12))
    net(features())["logits"].sum().backward()
    assert net.query_proj.weight.grad.abs().sum() > 0
    assert not any(name == "class_embeddings" for name, _ in net.named_parameters())
    with pytest.raises(ValueError, match="class_embeddings must be"):
        build_probe_net("paper", "tagging", C, TINY["paper"]["tagging"], num_classes=CLASSES,
                        class_embeddings=torch.randn(CLASSES + 1, 12))


def test_dpt_layers_are_evenly_spaced_and_end_at_the_last_pair():
    assert dpt_layer_indices(4) == [0, 1, 2, 3]
    assert dpt_layer_indices(24) == [5, 11, 17, 23]
    assert dpt_layer_indices(1) == [0, 0, 0, 0]


def test_rope_is_relative_and_leaves_special_tokens_alone():
    cos, sin = rope_tables(3, 4, special=2, head_dim=8)
    torch.testing.assert_close(cos[:2], torch.ones(2, 8))
    torch.testing.assert_close(sin[:2], torch.zeros(2, 8))
    q, k = torch.randn(8), torch.randn(8)
    rot_q, rot_k = apply_rope(q.expand(14, 8), cos, sin), apply_rope(k.expand(14, 8), cos, sin)
    # Tokens 2 + (row * 4 + col): (0,0)-(1,2) and (1,1)-(2,3) have the same offset, so the same score.
    torch.testing.assert_close(rot_q[2] @ rot_k[2 + 6], rot_q[2 + 5] @ rot_k[2 + 11])


REFERENCE_TOTALS = {"geometry": 385e6, "instance": 55e6, "tagging": 24e6}


@pytest.mark.parametrize("task", REFERENCE_TOTALS)
def test_default_paper_nets_match_the_reference_sizes(task):
    with torch.device("meta"):
        net = build_probe_net("paper", task, 1536, {}, num_classes=20 if task == "tagging" else None)
    assert parameter_count(net) == pytest.approx(REFERENCE_TOTALS[task], rel=0.15)
    if task == "geometry":
        assert parameter_count(net.camera_head) == pytest.approx(216e6, rel=0.15)


@pytest.mark.parametrize("task", TASKS)
def test_default_light_nets_are_light(task):
    with torch.device("meta"):
        net = build_probe_net("light", task, 1536, {}, num_classes=20 if task == "tagging" else None)
    assert parameter_count(net) < 1_000_000
