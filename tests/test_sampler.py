"""The frame protocol: view spacing, snapping to the query-frame lattice, seeds, and the source mapping."""

from __future__ import annotations

import numpy as np
import pytest

from probes.sampler import FrameProtocol, SamplerError, feature_rows

QUERY_LATTICE = {0, *range(1, 76, 4)}  # the 20 query frames 0, 1, 5, ..., 73


def test_views_start_at_zero_keep_the_gap_and_land_on_the_lattice() -> None:
    protocol = FrameProtocol(views=8, min_gap=5, window=76, snap_stride=4)
    rng = np.random.default_rng(0)
    for _ in range(500):
        views = protocol.draw(81, rng)
        assert views[0] == 0 and len(views) == 8
        assert set(views.tolist()) <= QUERY_LATTICE
        assert np.all(np.diff(views) >= 4)  # distinct lattice points, at least one stride apart
        assert views[-1] <= 75


def test_unsnapped_views_keep_the_exact_minimum_gap() -> None:
    protocol = FrameProtocol(views=4, min_gap=5, window=76, snap_stride=0)
    rng = np.random.default_rng(1)
    gaps = np.concatenate([np.diff(protocol.draw(150, rng)) for _ in range(300)])
    assert gaps.min() >= 5
    assert gaps.max() > 20  # the slack is spread, not left at the end


def test_snap_matches_the_reference_formula() -> None:
    protocol = FrameProtocol()
    assert [protocol.snap(v) for v in (0, 1, 2, 4, 5, 8, 9, 74, 75)] == [0, 1, 1, 1, 5, 5, 9, 73, 73]


def test_validation_views_are_fixed_by_the_seed_and_seed_zero_counts() -> None:
    protocol = FrameProtocol(views=4, val_seed=0)
    first = protocol.validation_views([3, 7, 11], 81)
    again = protocol.validation_views([11, 3], 81)  # per clip: the set of clips does not matter
    assert [v.tolist() for c, v in first if c in (3, 11)] == [v.tolist() for _, v in sorted(again)]
    other = FrameProtocol(views=4, val_seed=1).validation_views([3, 7, 11], 81)
    assert any(a.tolist() != b.tolist() for (_, a), (_, b) in zip(first, other))


def test_training_views_change_by_epoch_and_repeat_by_seed() -> None:
    protocol = FrameProtocol(views=4)
    epoch0 = [v.tolist() for _, v in protocol.training_views(range(20), 81, seed=0, epoch=0)]
    assert epoch0 == [v.tolist() for _, v in protocol.training_views(range(20), 81, seed=0, epoch=0)]
    assert epoch0 != [v.tolist() for _, v in protocol.training_views(range(20), 81, seed=0, epoch=1)]
    assert len(protocol.training_views(range(20), 81, seed=0, epoch=0, draws=3)) == 60


def test_short_clips_use_their_own_length_and_impossible_protocols_fail() -> None:
    views = FrameProtocol(views=4, min_gap=4).draw(17, np.random.default_rng(0))
    assert views.max() <= 16 and set(views.tolist()) <= {0, 1, 5, 9, 13}
    with pytest.raises(SamplerError, match="8 views with min_gap 5 need 36 frames, but a clip of 17 frames"):
        FrameProtocol(views=8, min_gap=5).draw(17, np.random.default_rng(0))
    with pytest.raises(SamplerError, match="min_gap=2 < snap_stride=4"):
        FrameProtocol(views=4, min_gap=2)


def test_feature_rows_map_clip_frames_through_frame_index() -> None:
    frame_index = np.array([0, 1, 5, 9, 13])  # a VGM's latent frames of a 17-frame clip
    np.testing.assert_array_equal(feature_rows(frame_index, np.array([0, 5, 13]), "wan@t500@L20"), [0, 2, 4])
    with pytest.raises(SamplerError, match=r"source 'wan@t500@L20' has no feature frame for clip frame\(s\) \[4\]"):
        feature_rows(frame_index, np.array([0, 4]), "wan@t500@L20")
