"""The paper's model presets and config/paper.yaml."""

from __future__ import annotations

import pytest
import yaml

from extractors.registry import ModelConfigError, apply_preset, families, presets
from tests.conftest import REPO
from workflow.planning import validate_config

FAMILIES, PRESETS = families(), presets()
# Families whose checkpoints the paper probed (config/paper.yaml uses every preset of these).
PAPER_FAMILIES = {"wan-t2v", "wan-i2v", "cogvideox-t2v", "cogvideox-i2v", "qwen2.5-vl", "qwen3-vl", "internvl",
                  "siglip", "clip"}
PAPER_PRESETS = {name for name, preset in PRESETS.items() if preset.family in PAPER_FAMILIES}


def test_every_preset_names_a_registered_family() -> None:
    assert {p.family for p in PRESETS.values() if not p.unavailable} <= set(FAMILIES)


def test_an_unavailable_model_is_refused_saying_why() -> None:
    with pytest.raises(ModelConfigError, match=r"model 'os': preset 'Open-Sora-v2' is unavailable: Open-Sora 2\.0 "
                                               r"has no diffusers or PyPI route.*docs/video-families\.md"):
        apply_preset("os", {"preset": "Open-Sora-v2", "checkpoint": "/ckpt/open-sora"})


def test_paper_timesteps_and_layers() -> None:
    assert PRESETS["Wan2.1-T2V-14B"].timestep == 500 and PRESETS["CogVideoX-5b"].timestep == 250
    assert all(PRESETS[name].layers == (18, 20) for name in PAPER_PRESETS if PRESETS[name].timestep is not None)
    vlm_layers = {name: p.layers for name, p in PRESETS.items() if p.options.get("route") == "llm"}
    assert vlm_layers["Qwen3-VL-8B"] == (22,) and vlm_layers["Qwen2.5-VL-7B"] == (21,)
    assert vlm_layers["InternVL3-8B"] == (18,) and vlm_layers["InternVL3.5-8B"] == (22,)
    assert len(vlm_layers) == 10
    assert (PRESETS["Wan2.1-T2V-1.3B"].blocks, PRESETS["Wan2.1-T2V-1.3B"].channels) == (30, 1536)


def test_entry_keys_override_the_preset() -> None:
    merged = apply_preset("w", {"preset": "Wan2.1-T2V-1.3B", "checkpoint": "/ckpt/wan", "options": {"frames": 17}})
    assert merged["checkpoint"] == "/ckpt/wan" and merged["family"] == "wan-t2v"
    assert merged["options"] == {"frames": 17, "resolution": [480, 832], "max_text_tokens": 512}
    with pytest.raises(ModelConfigError, match="unknown preset 'Wan9'"):
        apply_preset("w", {"preset": "Wan9"})


def test_paper_config_is_valid_and_uses_presets() -> None:
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    presets = {entry.get("preset") for entry in config["models"].values()} - {None}
    assert presets == PAPER_PRESETS
    from probes.tasks import resolve_task

    resolved = {name: resolve_task(name, entry) for name, entry in config["tasks"].items()}
    assert set(resolved) == {"tagging", "instance", "geometry"}
    assert all(set(probes) == {"linear", "light", "paper"} for _, _, probes in resolved.values())


def test_paper_fusions_name_sources_the_presets_extract() -> None:
    from extractors.ids import SourceId, timestep_token

    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert config["fusions"]
    for fusion in config["fusions"].values():
        for text in fusion["sources"]:
            source = SourceId.parse(text)
            preset = PRESETS[config["models"][source.model]["preset"]]
            assert source.layer in preset.layers and source.timestep == timestep_token(preset.timestep), text


def test_paper_protocols_sample_only_frames_whose_ground_truth_the_paper_datasets_keep() -> None:
    from clipstore.frames import query_frames
    from clipstore.kinds import store_options
    from probes.sampler import FrameProtocol
    from probes.tasks import resolve_task

    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    for name, entry in config["tasks"].items():
        _, options, _ = resolve_task(name, entry)
        protocol = FrameProtocol.from_options(options)
        for dataset in entry["datasets"]:
            kept = store_options(config["datasets"][dataset]).ground_truth_frames(81)
            assert kept == query_frames(81)
            assert protocol.reachable(81) <= set(kept), (name, dataset)
