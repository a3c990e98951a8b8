"""How a feature store compresses its float16 features: the ``compression`` spec of a model (docs/stores.md).

Two settings:

- ``{codec: lossless}`` (the default; ``None`` after normalisation): zstd level 1 on the float16 bytes,
  bit-exact, as every store was written before compression became a setting.
- ``{codec: bitround, keepbits: K}``, K in 0..9: each value's float16 mantissa is rounded (round half to even)
  to its K leading bits by numcodecs' ``BitRound`` filter, then the bytes are byte-shuffled and zstd-compressed
  by Blosc. Relative error <= 2^-(K+1) for normal float16 values (|x| >= 2^-14), absolute error
  <= 2^-(K+15) below; zarr decodes it like any store (``BitRound`` decodes as the identity).

Why these library routes:

- ``BitRound`` comes from ``zarr.codecs.numcodecs``, where ``numcodecs.zarr3.BitRound`` now forwards (that
  module is deprecated). Its ``max_bits`` table has ``float16: 10``, and it rounds through the same-width int
  view, so float16 is supported as is. It needs no scale, so it cannot clip and adapts to every channel.
  Near the top of the float16 range the rounding carries into the exponent and gives inf; the writer refuses
  such features (:func:`rounds_to_finite`), as it refuses values beyond float16.
- Blosc with byte shuffle, not plain zstd, after rounding: the zeroed low mantissa bits sit in the low byte of
  each float16, and shuffling puts those bytes together where zstd finds the runs (bench/compression.py:
  2.1x against 1.8x for plain zstd at keepbits 3 on heavy-tailed activations). Blosc is a core Zarr v3
  codec. For lossless data the shuffle gains nothing, and the default keeps zstd so that its stores stay
  byte-identical.
- No linear (int8-with-scale) quantisation: numcodecs' ``FixedScaleOffset`` takes one fixed scale and offset
  per array, chosen before any data is seen, and wraps silently when a value overflows the integer type (its
  docs: "No checks are made"). ``Quantize`` rounds to an absolute precision, which erases channels with a
  small scale, and multiplies in float16, which can overflow. Neither handles heavy-tailed activations whose
  channels differ in scale by orders of magnitude.

``numcodecs.bitround`` is not a Zarr v3 core codec: zarr-python reads such stores, other Zarr implementations
may not (zarr-python warns once per process with a ``ZarrUserWarning``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numcodecs
import numpy as np
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.codecs.numcodecs import BitRound

from extractors.base import OptionError

CODECS = ("lossless", "bitround")
FLOAT16_MANTISSA_BITS = 10
KEYS = {"lossless": ("codec",), "bitround": ("codec", "keepbits")}
EXAMPLE = "{codec: bitround, keepbits: 7}"


def normalise_compression(spec: Any, *, owner: str) -> dict[str, Any] | None:
    """The canonical form of a ``compression`` spec: None for lossless (so that spelling out the default
    leaves fingerprints as they were), else ``{"codec": "bitround", "keepbits": K}``. ``owner`` names
    whose spec it is in the error (``model 'wan'``)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise OptionError(f"{owner}: compression={spec!r} must be a mapping such as {EXAMPLE} or {{codec: lossless}}")
    if "codec" not in spec:
        raise OptionError(f"{owner}: compression {dict(spec)} lacks 'codec'; known: {list(CODECS)}")
    codec = spec["codec"]
    if codec not in CODECS:
        raise OptionError(f"{owner}: compression codec={codec!r} is unknown; known: {list(CODECS)}")
    unknown = sorted(set(spec) - set(KEYS[codec]))
    if unknown:
        raise OptionError(f"{owner}: compression key(s) {unknown} do not apply to codec {codec!r}; "
                          f"it takes {list(KEYS[codec])}")
    if codec == "lossless":
        return None
    return {"codec": "bitround", "keepbits": _keepbits(spec.get("keepbits"), owner)}


def _keepbits(value: Any, owner: str) -> int:
    if value is None:
        raise OptionError(f"{owner}: compression codec 'bitround' needs keepbits (0..9 mantissa bits to keep)")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < FLOAT16_MANTISSA_BITS:
        raise OptionError(f"{owner}: compression keepbits={value!r} must be an integer 0..9 (float16 has "
                          f"{FLOAT16_MANTISSA_BITS} mantissa bits; keeping all of them is {{codec: lossless}})")
    return value


def array_codecs(spec: Mapping[str, Any] | None, *, level: int = 1) -> dict[str, list[Any]]:
    """``filters`` and ``compressors`` for ``zarr.Group.create_array`` of a normalised spec; ``level`` is the
    zstd level of both pipelines."""
    if spec is None:
        return {"filters": [], "compressors": [ZstdCodec(level=level)]}
    return {"filters": [_bitround(spec)],
            "compressors": [BloscCodec(typesize=2, cname="zstd", clevel=level, shuffle="shuffle")]}


def _bitround(spec: Mapping[str, Any]) -> BitRound:
    return BitRound(keepbits=int(spec["keepbits"]))


def max_relative_error(spec: Mapping[str, Any] | None) -> float:
    """The bound on |stored - x| / |x| for normal float16 x (|x| >= 2^-14); below, |stored - x| is at most
    this times 2^-14."""
    return 0.0 if spec is None else 2.0 ** -(int(spec["keepbits"]) + 1)


def describe(spec: Mapping[str, Any] | None, *, level: int = 1) -> dict[str, Any]:
    """The store attribute ``compression``: the normalised spec, whether it is lossy, its error bound, and
    the Zarr codec configurations the layer arrays carry."""
    codecs = array_codecs(spec, level=level)
    return {**(spec or {"codec": "lossless"}), "lossy": spec is not None,
            "max_relative_error": max_relative_error(spec),
            "filters": [codec.to_dict() for codec in codecs["filters"]],
            "compressors": [codec.to_dict() for codec in codecs["compressors"]]}


def round_trip(spec: Mapping[str, Any] | None, values: np.ndarray) -> np.ndarray:
    """float16 ``values`` as a store with ``spec`` gives them back (through the library codec itself)."""
    values = np.asarray(values, dtype=np.float16)
    if spec is None:
        return values
    codec = numcodecs.BitRound(keepbits=int(spec["keepbits"]))  # what the zarr filter runs
    return np.asarray(codec.decode(codec.encode(values))).view(np.float16).reshape(values.shape)


def rounds_to_finite(spec: Mapping[str, Any] | None, peak: float) -> bool:
    """Whether float16 magnitudes up to ``peak`` stay finite when stored with ``spec``: rounding the mantissa
    can carry into the exponent, and at the top of the range that gives inf (e.g. 65408 at keepbits 7).
    Rounding is monotonic, so checking the peak checks every value."""
    return bool(np.isfinite(round_trip(spec, np.asarray([peak], dtype=np.float16)))[0])
