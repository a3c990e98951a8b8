"""Dataset kinds in the config and what each needs: one table, read by the workflow plan and the dataset job.

``synthetic`` is rendered (:mod:`clipstore.generate`), ``clipstore`` is an existing canonical store used in
place, and every other kind is a :class:`~clipstore.ingest.DatasetReader` (docs/data.md). Readers are named
by import path, so a workflow imports only the readers of the kinds it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clipstore.errors import StoreError
from clipstore.ingest import DatasetReader, StoreOptions
from clipstore.store import CLIP_ARRAYS


@dataclass(frozen=True)
class ReaderKind:
    reader: str  # "module:Class" of the DatasetReader
    options: tuple[str, ...]  # the reader's own config keys (its constructor's keyword arguments)

    def load(self) -> type[DatasetReader]:
        module, name = self.reader.split(":")
        return getattr(importlib.import_module(module), name)


READERS: dict[str, ReaderKind] = {
    "scannet": ReaderKind("clipstore.scannet:ScanNetReader", ("classes", "intrinsics_resolution")),
    "dl3dv": ReaderKind("clipstore.dl3dv:DL3DVReader", ()),
    "video": ReaderKind("clipstore.video:VideoReader", ("frames", "resize", "split_file")),
}
STORE_OPTIONS = tuple(StoreOptions.__dataclass_fields__)
SYNTHETIC_OPTIONS = ("clips", "frames", "height", "width", "val_fraction", "min_objects", "max_objects", "seed")
KINDS: dict[str, tuple[str, ...]] = {  # kind -> config keys besides `kind` (and `root`, `threads` for readers)
    "synthetic": (*SYNTHETIC_OPTIONS, "threads", "max_frames", "ground_truth", "context_frames"),
    "clipstore": ("root",),
    **{kind: ("root", "threads", *entry.options, *STORE_OPTIONS) for kind, entry in READERS.items()},
}


def check_keys(name: str, entry: Mapping[str, Any]) -> None:
    """One line naming a key the dataset's kind does not take."""
    kind = entry["kind"]
    if kind not in KINDS:
        raise StoreError(f"dataset {name!r}: unknown kind {kind!r}; known: {sorted(KINDS)}")
    unknown = sorted(set(entry) - {"kind", *KINDS[kind]})
    if unknown:
        raise StoreError(f"dataset {name!r}: kind {kind!r} takes no {unknown}; its keys: {sorted(KINDS[kind])}")
    if kind != "synthetic" and "root" not in entry:
        raise StoreError(f"dataset {name!r}: kind {kind!r} needs 'root'")


def reader_arrays(kind: str) -> tuple[str, ...]:
    """Clip-store arrays a dataset of ``kind`` provides, known before it is read."""
    if kind == "synthetic":
        return tuple(CLIP_ARRAYS)
    return READERS[kind].load().arrays


def open_reader(entry: Mapping[str, Any]) -> DatasetReader:
    """The reader of a dataset entry of the config (a reader kind)."""
    kind = READERS[entry["kind"]]
    return kind.load()(entry["root"], **{key: entry[key] for key in kind.options if key in entry})


def store_options(entry: Mapping[str, Any]) -> StoreOptions:
    return StoreOptions(**{key: entry[key] for key in STORE_OPTIONS if key in entry})
