"""Wan2.1 through diffusers, on a tiny random-init pipeline saved and loaded like a real checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors import resolve_model
from extractors.base import OptionError
from extractors.diffusion import NoiseLevel, noise_level
from extractors.layers import LayerSpecError
from extractors.tiny_models import build_tiny_model
from extractors.wan import WanT2VExtractor

OPTIONS = {"frames": 9, "resolution": [64, 64], "random_init": True, "max_text_tokens": 8}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("tiny-wan-t2v", tmp_path_factory.mktemp("models") / "tiny-wan-t2v")


@pytest.fixture(scope="module")
def extractor(checkpoint: Path) -> WanT2VExtractor:
    model = WanT2VExtractor("wan", OPTIONS, seed=0, checkpoint=str(checkpoint))
    model.load()
    return model


def _frames(seed: int = 0, count: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)


def test_loads_through_from_pretrained_and_extracts(extractor: WanT2VExtractor) -> None:
    assert type(extractor.transformer).__name__ == "WanTransformer3DModel"
    assert not hasattr(extractor, "text_encoder"), "the text encoder is released after the prompt is encoded"
    features = extractor.extract(_frames(), (0, 2), 500, clip=3)
    assert features.layers[0].shape == (3, 4, 4, 24)  # 9 frames -> 3 latents; 64 px / 8 / 2 = 4 cells
    np.testing.assert_array_equal(features.frame_index, [0, 1, 5])
    assert extractor.noise_attributes(500)["sigma"] == 0.5


def test_noise_is_the_schedulers_own(extractor: WanT2VExtractor) -> None:
    scheduler = extractor.scheduler
    x0, eps = torch.randn(1, 4, 3, 4, 4), torch.randn(1, 4, 3, 4, 4)
    for index in (0, 250, 749, 999):
        timestep = scheduler.timesteps[index]
        level = NoiseLevel("flow", int(timestep), float(timestep) / 1000)
        expected = scheduler.scale_noise(x0, timestep[None], eps)
        torch.testing.assert_close(level.apply(x0, eps), expected)
    assert noise_level(scheduler, 500).value == 0.5


def test_seeds_make_features_reproducible(checkpoint: Path, extractor: WanT2VExtractor) -> None:
    a = extractor.extract(_frames(), (1,), 500, clip=0).layers[1]
    b = extractor.extract(_frames(), (1,), 500, clip=0).layers[1]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, extractor.extract(_frames(), (1,), 500, clip=1).layers[1])
    other = WanT2VExtractor("wan", OPTIONS, seed=1, checkpoint=str(checkpoint))
    other.load()
    assert not np.allclose(a, other.extract(_frames(), (1,), 500, clip=0).layers[1])


def test_blocks_after_the_deepest_requested_one_do_not_run(extractor: WanT2VExtractor) -> None:
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, block in enumerate(extractor.transformer.blocks)]
    try:
        extractor.extract(_frames(), (0,), 500, clip=0)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [0]


def test_token_grid_matches_the_models_own_output_head(extractor: WanT2VExtractor) -> None:
    """Last-block tokens laid out as (T', h, w), passed through Wan's output head and unpatchified by that
    layout, must equal the model's output: a transposed or shifted grid would not."""
    transformer, spec = extractor.transformer, extractor.family_spec
    torch.manual_seed(0)
    noisy = torch.randn(1, 4, 3, 8, 8)
    last = len(transformer.blocks) - 1
    with torch.inference_mode():
        level = noise_level(extractor.scheduler, 500)
        tokens = extractor._forward(noisy, level, ((last, "output"),))[last, "output"]
        grid = spec.latent_grid(noisy.shape, transformer.config)
        cells = tokens.reshape(*grid, -1)  # the extractor's layout: (T', h, w, D)
        timestep = torch.tensor([500.0])
        temb = transformer.condition_embedder(timestep, extractor.text, None)[0]
        shift, scale = (transformer.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        head = transformer.proj_out(transformer.norm_out(cells.float()) * (1 + scale[0]) + shift[0])
        p_t, p_h, p_w = transformer.config.patch_size
        t, h, w = grid
        rebuilt = head.reshape(t, h, w, p_t, p_h, p_w, -1).permute(6, 0, 3, 1, 4, 2, 5)
        rebuilt = rebuilt.reshape(-1, t * p_t, h * p_h, w * p_w)
        output = transformer(hidden_states=noisy, timestep=timestep, encoder_hidden_states=extractor.text,
                             return_dict=False)[0][0]
    torch.testing.assert_close(rebuilt, output, rtol=1e-4, atol=1e-5)


def test_bad_input_gives_clear_errors(checkpoint: Path, extractor: WanT2VExtractor, tmp_path: Path) -> None:
    entry = {"family": "wan-t2v", "checkpoint": str(checkpoint), "timesteps": [500], "options": OPTIONS}
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_model("wan", {**entry, "layers": [3]})
    with pytest.raises(OptionError, match=r"timestep 1001 is outside FlowMatchEulerDiscreteScheduler's range 0\.\.1000"):
        resolve_model("wan", {**entry, "timesteps": [1001]})
    short = extractor.extract(_frames(count=6), (0,), 500, clip=7)  # fed whole: its longest 4k+1 prefix
    assert short.frame_index.tolist() == [0, 1] and extractor.expected_frame_index(6).tolist() == [0, 1]
    with pytest.raises(OptionError, match=r"frames=8; this VAE takes 4k\+1 frames"):
        WanT2VExtractor("wan", {**OPTIONS, "frames": 8}, checkpoint=str(checkpoint))
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(Exception, match=r"lacks the folder\(s\) \['vae/'\]"):
        WanT2VExtractor("wan", OPTIONS, checkpoint=str(broken))
    with pytest.raises(OptionError, match=r"checkpoint '/no/such/model' does not exist"):
        WanT2VExtractor("wan", OPTIONS, checkpoint="/no/such/model")
    with pytest.raises(OptionError, match="needs 'checkpoint'"):
        WanT2VExtractor("wan", OPTIONS)


def test_i2v_is_conditioned_on_the_first_frame(tmp_path: Path) -> None:
    from extractors.wan import WanI2VExtractor

    path = build_tiny_model("tiny-wan-i2v", tmp_path / "tiny-wan-i2v")
    model = WanI2VExtractor("wan-i2v", OPTIONS, seed=0, checkpoint=str(path))
    model.load()
    assert type(model.conditioning["image_encoder"]).__name__ == "CLIPVisionModel"
    frames = _frames()
    base = model.extract(frames, (0, 2), 500, clip=0)
    assert base.layers[2].shape == (3, 4, 4, 24)
    np.testing.assert_array_equal(base.frame_index, [0, 1, 5])
    inputs = model.family_spec.clip_conditioning(model, model.video_tensor(frames, 0), frames)
    assert inputs["condition"].shape == (1, 8, 3, 8, 8)  # first-frame mask (4) + condition latents (4)
    changed = frames.copy()
    changed[0] = 255 - changed[0]
    moved = model.family_spec.clip_conditioning(model, model.video_tensor(changed, 0), changed)
    assert not torch.allclose(inputs["image_embeds"], moved["image_embeds"])
    later = frames.copy()
    later[4] = 255 - later[4]  # not the first frame: the image conditioning stays the same
    same = model.family_spec.clip_conditioning(model, model.video_tensor(later, 0), later)
    torch.testing.assert_close(inputs["image_embeds"], same["image_embeds"])
    torch.testing.assert_close(inputs["condition"], same["condition"])


def test_context_frames_keep_the_query_lattice(checkpoint: Path) -> None:
    model = WanT2VExtractor("wan", {**OPTIONS, "context_frames": 5}, seed=0, checkpoint=str(checkpoint))
    model.load()
    features = model.extract(_frames(), (0,), 500, clip=0)
    np.testing.assert_array_equal(features.frame_index, [0, 1])  # latent 2 starts at frame 5: outside
    assert features.layers[0].shape[0] == 2


def test_preset_facts_are_checked_against_the_checkpoint(checkpoint: Path) -> None:
    entry = {"preset": "Wan2.1-T2V-1.3B", "checkpoint": str(checkpoint), "layers": [0], "options": OPTIONS}
    with pytest.raises(ValueError, match=r"has 3 blocks of 24 channels, but preset 'Wan2.1-T2V-1.3B' is 30 "
                                         r"blocks of 1536"):
        resolve_model("wan", entry)


def test_one_job_writes_every_timestep_once_per_clip(checkpoint: Path, small_store: Path, tmp_path: Path) -> None:
    from extractors import open_feature_store
    from extractors.job import run_extraction

    options = {**OPTIONS, "frames": 5, "resolution": [32, 32]}
    model = resolve_model("wan", {"family": "wan-t2v", "checkpoint": str(checkpoint), "layers": [-1],
                                  "timesteps": [250, 500], "options": options})
    outputs = {250: tmp_path / "t250" / "shard-0.zarr", 500: tmp_path / "t500" / "shard-0.zarr"}
    run_extraction(clip_store=small_store, outputs=outputs, dataset="small", model=model, shard=0,
                   clips_per_shard=2, seed=0, progress=False)
    single = model.build(seed=0)
    single.load()
    from clipstore import open_clip_store

    frames = open_clip_store(small_store).zarr_array("frames")[1]
    for timestep, path in outputs.items():
        store = open_feature_store([path])
        assert store.attrs["timestep"] == timestep and store.attrs["sigma"] == timestep / 1000
        assert store.attrs["random_init"] is True and store.attrs["scheduler"] == "FlowMatchEulerDiscreteScheduler"
        expected = single.extract(frames, (2,), timestep, clip=1).layers[2]
        np.testing.assert_allclose(store.layer(2)[1].compute().astype(np.float32), expected, rtol=1e-2, atol=1e-3)


def test_a_kill_between_publishing_two_timesteps_keeps_the_published_one(
        checkpoint: Path, small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after publishing t250 and before t500; Snakemake then removes both outputs of the killed job.
    The rerun restores t250 from its snapshot and extracts only t500."""
    from extractors.featurestore import FeatureStoreWriter
    from extractors.job import run_extraction

    options = {**OPTIONS, "frames": 5, "resolution": [32, 32]}
    model = resolve_model("wan", {"family": "wan-t2v", "checkpoint": str(checkpoint), "layers": [-1],
                                  "timesteps": [250, 500], "options": options})
    outputs = {250: tmp_path / "t250" / "shard-0.zarr", 500: tmp_path / "t500" / "shard-0.zarr"}
    real_finish = FeatureStoreWriter.finish

    def killed_at_second(self, attributes, **kwargs):
        if attributes["timestep"] == 500:
            raise KeyboardInterrupt
        return real_finish(self, attributes, **kwargs)

    monkeypatch.setattr(FeatureStoreWriter, "finish", killed_at_second)
    run = dict(clip_store=small_store, outputs=outputs, dataset="small", model=model, shard=0, clips_per_shard=2,
               seed=0, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_extraction(**run)
    assert outputs[250].exists() and not outputs[500].exists()
    before = (outputs[250] / "layer_2" / "c" / "0" / "0" / "0" / "0" / "0").read_bytes()
    shutil.rmtree(outputs[250])  # Snakemake removes the outputs of a job it saw killed
    monkeypatch.setattr(FeatureStoreWriter, "finish", real_finish)
    asked: list[tuple] = []
    real_extract = WanT2VExtractor.extract_clip

    def recording(self, arrays, layers, timesteps, **kwargs):
        asked.append(tuple(timesteps))
        return real_extract(self, arrays, layers, timesteps, **kwargs)

    monkeypatch.setattr(WanT2VExtractor, "extract_clip", recording)
    run_extraction(**run)
    assert asked == []  # every clip of t500 was written before the kill: it is only published
    assert (outputs[250] / "layer_2" / "c" / "0" / "0" / "0" / "0" / "0").read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("t*/*")) == ["shard-0.zarr", "shard-0.zarr"]
