"""Frozen feature extractors, their registry, and the per-layer / per-timestep feature store.

Importing this package is cheap: model families import torch, diffusers or transformers only when an
extractor of that family is built (see :mod:`extractors.registry`).
"""

from extractors.base import ClipFeatures, Extractor
from extractors.featurestore import FeatureStore, FeatureStoreWriter, open_feature_store
from extractors.layers import resolve_layers
from extractors.registry import ModelConfig, extractor_class, families, presets, resolve_model

__all__ = [
    "ClipFeatures",
    "Extractor",
    "FeatureStore",
    "FeatureStoreWriter",
    "ModelConfig",
    "extractor_class",
    "families",
    "open_feature_store",
    "presets",
    "resolve_layers",
    "resolve_model",
]
