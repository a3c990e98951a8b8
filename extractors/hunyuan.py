"""HunyuanVideo (diffusers) as a feature source: its :class:`~extractors.diffusion.VideoFamily`, preset and
tiny model. The recipe itself is :class:`~extractors.diffusion.DiffusionVideoExtractor`.

``HunyuanVideoTransformer3DModel`` runs 20 dual-stream blocks (``transformer_blocks``: video and text in
separate streams that meet in joint attention) and then 40 single-stream blocks (``single_transformer_blocks``:
one stream over [video; text]); layers number them in that order, 0..59. Both kinds return
``(video_tokens, text_tokens)``; the video tokens are kept. The empty prompt is encoded as
``HunyuanVideoPipeline.encode_prompt`` encodes it: Llama hidden states (the pipeline's prompt template, its
first 95 tokens cropped) with their attention mask, and the CLIP text model's pooled output. The transformer
also takes the embedded guidance the pipeline passes (``guidance_scale`` x 1000, option ``guidance_scale``).
Latents are the VAE posterior mean times ``scaling_factor``; the scheduler is flow matching, so timestep t means
sigma = t / 1000 and the transformer is fed t, as the pipeline feeds its (shifted) sigmas x 1000.
"""

from __future__ import annotations

from typing import Any, ClassVar

from extractors.base import OptionError
from extractors.diffusion import DEFAULT_OPTIONS, DiffusionVideoExtractor, NoiseLevel, VideoFamily
from extractors.presets import Preset

# --- tiny tokenizers (built in code: no downloads) ------------------------------------------------------

# Llama 3's pre-tokenizer split: one word-level token per piece gives the template prefix the same 95 tokens
# (with BOS) as the real tokenizer, so the pipeline's fixed crop_start = 95 cuts exactly before the prompt.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA_SPECIAL = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "<pad>")
CLIP_SPECIAL = ("<|startoftext|>", "<|endoftext|>")  # ids 0 and 1: the tiny CLIP config's bos/eos ids


def llama_tokenizer() -> Any:
    """A word-level stand-in for HunyuanVideo's Llama 3 tokenizer: the prompt template's pieces, Llama 3's
    split and special tokens, BOS prepended; right padding with ``<pad>``."""
    import re

    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated")
    texts = re.split("|".join(map(re.escape, LLAMA_SPECIAL)), DEFAULT_PROMPT_TEMPLATE["template"])
    words = dict.fromkeys(piece for text in texts for piece, _ in split.pre_tokenize_str(text))
    vocab = {token: i for i, token in enumerate(["<unk>", *LLAMA_SPECIAL, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = split
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in LLAMA_SPECIAL])
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", pad_token="<pad>")


def clip_tokenizer() -> Any:
    """A word-level stand-in for the CLIP tokenizer: BOS ... EOS, padded with EOS as CLIP's is."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*CLIP_SPECIAL, "<unk>", *(f"w{i}" for i in range(29))])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in CLIP_SPECIAL])
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[(token, vocab[token]) for token in CLIP_SPECIAL])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<|startoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>")


# --- tiny random-init model (built by extractors.tiny_models.build_tiny_model) -------------------------

HUNYUAN_TINY: dict[str, Any] = {
    "pipeline": "HunyuanVideoPipeline",
    "tokenizers": {"tokenizer": "extractors.hunyuan:llama_tokenizer",
                   "tokenizer_2": "extractors.hunyuan:clip_tokenizer"},
    # 2 dual-stream + 2 single-stream blocks, 2 heads x 8 (rotary axes 2 + 2 + 4 = head dim, as 16 + 56 + 56).
    "transformer": ("HunyuanVideoTransformer3DModel", {
        "in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 2,
        "num_single_layers": 2, "num_refiner_layers": 1, "mlp_ratio": 2.0, "patch_size": 2, "patch_size_t": 1,
        "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 16, "pooled_projection_dim": 8,
        "rope_theta": 256.0, "rope_axes_dim": [2, 2, 4]}),
    "vae": ("AutoencoderKLHunyuanVideo", {
        "latent_channels": 4, "block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4,
        "scaling_factor": 0.476986, "spatial_compression_ratio": 8, "temporal_compression_ratio": 4}),
    # The public checkpoint's scheduler_config.json (shift 7, no dynamic shifting).
    "scheduler": ("FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 7.0}),
    # 3 layers: the pipeline takes hidden_states[-3], the output of a real layer (layer 30 of 32 in the real one).
    "text_encoder": ("LlamaModel", {
        "vocab_size": 128, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 3,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512, "bos_token_id": 1,
        "eos_token_id": 5, "pad_token_id": 6}),
    # 77 positions: the pipeline pads CLIP prompts to 77 tokens.
    "text_encoder_2": ("CLIPTextModel", {
        "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 77, "projection_dim": 8, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}),
}

# The pipeline's defaults are 129 frames at 720x1280; the datasets' clips have at most 81 frames, and 61 (4k+1)
# frames at 544x960 (HunyuanVideo's 540p size) cost about a quarter of the tokens. max_sequence_length and
# guidance_scale are the pipeline's defaults.
HUNYUAN_OPTIONS = {**DEFAULT_OPTIONS, "frames": 61, "resolution": [544, 960], "max_text_tokens": 256,
                   "guidance_scale": 6.0}


def hunyuan_preset(hub_id: str, blocks: int, channels: int) -> Preset:
    """Not probed by the paper: the relative depth of its layers 18 and 20 of 30 (Wan2.1-1.3B), timestep 500."""
    layers = (round(blocks * 18 / 30), round(blocks * 20 / 30))
    return Preset("hunyuan-video", hub_id, blocks, channels, layers, timestep=500,
                  options={"frames": 61, "resolution": [544, 960], "max_text_tokens": 256})


# --- family --------------------------------------------------------------------------------------------

class HunyuanVideo(VideoFamily):
    """HunyuanVideo text-to-video: Llama + CLIP text encoders, causal 3-D VAE (x4 time, x8 space), patch 2
    (1 in time), 20 dual-stream then 40 single-stream blocks."""

    family: ClassVar[str] = "hunyuan-video"
    description: ClassVar[str] = "HunyuanVideo text-to-video (HunyuanVideoTransformer3DModel, dual + single stream)"
    pipeline: ClassVar[str] = "HunyuanVideoPipeline"
    components: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "vae",
                                             "transformer", "scheduler")
    prompt_components: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
    block_lists: ClassVar[tuple[str, ...]] = ("transformer_blocks", "single_transformer_blocks")
    block_count_keys: ClassVar[tuple[str, ...]] = ("num_layers", "num_single_layers")
    attention: ClassVar[str] = "attn"
    spatial_multiple: ClassVar[int] = 16  # VAE x8 then patch x2, as the pipeline's check_inputs demands
    default_options = HUNYUAN_OPTIONS
    presets = {"HunyuanVideo": hunyuan_preset("hunyuanvideo-community/HunyuanVideo", 60, 3072)}
    tiny_models = {"tiny-hunyuan-video": HUNYUAN_TINY}
    transformer_class: ClassVar[str] = "HunyuanVideoTransformer3DModel"

    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        return int(vae.get("temporal_compression_ratio", 4)), int(vae.get("spatial_compression_ratio", 8))

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        patch = int(transformer.get("patch_size", 2))
        return int(transformer.get("patch_size_t", 1)), patch, patch

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """The configs must describe the text-to-video transformer this family feeds (no weights loaded);
        the option ``guidance_scale`` must be a number."""
        super().check_checkpoint(extractor)
        model = extractor.name
        scale = extractor.options["guidance_scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise OptionError(f"model {model!r}: option guidance_scale={scale!r} must be a number")
        transformer, vae = extractor.component_config("transformer"), extractor.component_config("vae")

        fail = extractor.refuse_checkpoint

        if transformer.get("_class_name", cls.transformer_class) != cls.transformer_class:
            fail(f"the transformer is a {transformer['_class_name']}; this family runs {cls.transformer_class}")
        if transformer.get("image_condition_type") is not None:
            fail(f"image_condition_type={transformer['image_condition_type']!r} (HunyuanVideo-I2V) is not "
                 f"supported: this family is text-to-video")
        latent, in_channels = int(vae.get("latent_channels", 16)), int(transformer.get("in_channels", 16))
        if in_channels != latent:
            fail(f"the transformer takes {in_channels} input channels and the VAE makes {latent}")
        patch_t, patch, _ = cls.patch_size(transformer)
        if patch_t != 1:
            fail(f"patch_size_t={patch_t} is not supported: tokens must map one-to-one to latent frames")
        if cls.vae_compression(vae)[1] * patch != cls.spatial_multiple:
            fail(f"VAE x patch downsampling is {cls.vae_compression(vae)[1] * patch}; this family expects "
                 f"{cls.spatial_multiple}")

    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        embedded = bool(extractor.transformer_config.get("guidance_embeds", True))
        return {"guidance_scale": extractor.options["guidance_scale"], "guidance_embeds": embedded}

    @classmethod
    def encode_prompt(cls, extractor: DiffusionVideoExtractor, parts: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's own ``encode_prompt`` (its default template and crop) as the transformer's kwargs."""
        pipe = cls.light_pipeline(**parts)
        embeds, pooled, mask = pipe.encode_prompt("", device=extractor.device,
                                                  max_sequence_length=extractor.options["max_text_tokens"])
        # The pipeline casts the mask to the transformer's dtype; a float mask here gets the job's dtype.
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask.float(),
                "pooled_projections": pooled}

    @staticmethod
    def encode_video(extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Posterior mean times ``scaling_factor`` (the pipeline divides by it before decoding), (B, C, F, H, W)."""
        vae = extractor.vae
        return vae.encode(video).latent_dist.mode() * vae.config.scaling_factor

    @classmethod
    def forward(cls, extractor: DiffusionVideoExtractor, transformer: Any, noisy: Any, level: NoiseLevel,
                clip_inputs: dict[str, Any]) -> Any:
        """The pipeline's transformer call: a float32 (1,) timestep (its latents are float32) and the embedded
        guidance ``guidance_scale`` x 1000, made in the transformer's dtype as the pipeline makes it."""
        import torch

        prompt = extractor.prompt
        guidance = None  # without a guidance embedder the transformer ignores it
        if transformer.config.guidance_embeds:
            scale = float(extractor.options["guidance_scale"])
            guidance = torch.tensor([scale], dtype=transformer.dtype, device=noisy.device) * 1000.0
        return transformer(hidden_states=noisy,
                           timestep=torch.tensor([level.fed], dtype=torch.float32, device=noisy.device),
                           encoder_hidden_states=prompt["encoder_hidden_states"],
                           encoder_attention_mask=prompt["encoder_attention_mask"],
                           pooled_projections=prompt["pooled_projections"], guidance=guidance, return_dict=False)

    @classmethod
    def attention_tokens(cls, extractor: DiffusionVideoExtractor, value: Any, block_list: str) -> Any:
        """Dual-stream attention projects video alone (text goes through ``add_*_proj``); single-stream
        attention projects [video; text] together, and the S text tokens at the end are dropped. q/k come
        normalised per head as (B, N, H, D), v as (B, N, H*D)."""
        tokens = value.flatten(2) if value.dim() == 4 else value
        if block_list == "single_transformer_blocks":
            text = extractor.prompt["encoder_hidden_states"].shape[1]
            tokens = tokens[:, : tokens.shape[1] - text]
        return tokens

    @staticmethod
    def latent_grid(latent_shape: tuple[int, ...], config: Any) -> tuple[int, int, int]:
        _, _, frames, height, width = latent_shape
        patch = config.patch_size
        return frames // config.patch_size_t, height // patch, width // patch


class HunyuanVideoExtractor(DiffusionVideoExtractor):
    family_spec = HunyuanVideo


EXTRACTORS = (HunyuanVideoExtractor,)
