"""Feature math for `vl bin`: exact union area, text-area ratio, dispersion of detections, class count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlcli.steps.bin import features
from vlcli.steps.bin.features import dispersion, num_classes, text_area_ratio, union_area

Box = tuple[int, int, int, int]


@st.composite
def boxes(draw: st.DrawFn, side: int = 24, max_size: int = 12) -> list[Box]:
    """Small integer boxes in a side x side field, some empty or inverted."""
    coord = st.integers(0, side)
    quads = st.tuples(coord, coord, coord, coord)
    return draw(st.lists(quads, max_size=max_size))


def area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def pixel_count(bs: list[Box], side: int = 24) -> int:
    """The union area by brute force: mark every covered pixel of the field."""
    grid = np.zeros((side, side), bool)
    for x0, y0, x1, y1 in bs:
        if x1 > x0 and y1 > y0:
            grid[y0:y1, x0:x1] = True
    return int(grid.sum())


@settings(max_examples=300, deadline=None)
@given(boxes())
def test_union_area_equals_a_pixel_count(bs: list[Box]) -> None:
    assert union_area(bs) == pixel_count(bs)


@settings(max_examples=200, deadline=None)
@given(boxes(), st.randoms(use_true_random=False))
def test_union_area_is_bounded_by_the_sum_and_ignores_order(bs: list[Box], rnd: object) -> None:
    total = union_area(bs)
    assert 0 <= total <= sum(area(b) for b in bs)
    assert total >= max((area(b) for b in bs), default=0)
    shuffled = list(bs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert union_area(shuffled) == total
    assert union_area(bs + bs) == total  # duplicates count once


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=15))
def test_union_area_of_disjoint_boxes_is_their_sum(sizes: list[tuple[int, int]]) -> None:
    # side by side along x, each in its own 10-pixel column, touching edges share no area
    bs = [(10 * i, 0, 10 * i + w, h) for i, (w, h) in enumerate(sizes)]
    assert union_area(bs) == sum(w * h for w, h in sizes)
    touching = [(10 * i, 0, 10 * (i + 1), 5) for i in range(len(sizes))]
    assert union_area(touching) == 50 * len(sizes)


@settings(max_examples=100, deadline=None)
@given(boxes(side=20))
def test_a_box_containing_all_others_is_the_union(bs: list[Box]) -> None:
    outer = (-3, -1, 21, 22)
    assert union_area([*bs, outer]) == area(outer)
    assert union_area([outer, *bs]) == area(outer)


def test_union_area_edge_cases() -> None:
    assert union_area([]) == 0
    assert union_area([(5, 5, 5, 9), (3, 4, 1, 8)]) == 0  # empty and inverted boxes
    assert union_area([(0, 0, 4, 4), (2, 2, 6, 6)]) == 16 + 16 - 4
    assert union_area(np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.int32)) == 100
    big = 10**7
    assert union_area([(0, 0, big, big), (big // 2, 0, 2 * big, big)]) == 2 * big * big  # no int overflow
    with pytest.raises(ValueError, match="integer"):
        union_area([(0.5, 0, 2, 2)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="quadruples"):
        union_area([(0, 0, 2)])  # type: ignore[list-item]


def test_union_area_in_small_chunks_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 500, (300, 2, 2))
    bs = [(int(min(x)), int(min(y)), int(max(x)), int(max(y))) for x, y in corners]
    whole = union_area(bs)
    monkeypatch.setattr(features, "GRID_CELLS", 7)  # one column per chunk: the carried sums must add up
    assert union_area(bs) == whole
    grid = np.zeros((500, 500), bool)
    for x0, y0, x1, y1 in bs:
        grid[y0:y1, x0:x1] = True
    assert whole == int(grid.sum())


def test_text_area_ratio_clips_to_the_image() -> None:
    assert text_area_ratio([], 640, 480) == 0.0
    assert text_area_ratio([(0, 0, 640, 240)], 640, 480) == pytest.approx(0.5)
    assert text_area_ratio([(0, 0, 320, 480), (160, 0, 640, 480)], 640, 480) == 1.0  # overlap counted once
    assert text_area_ratio([(-100, -100, 1000, 1000)], 640, 480) == 1.0
    assert text_area_ratio([(700, 0, 800, 100)], 640, 480) == 0.0  # wholly outside
    with pytest.raises(ValueError, match="positive size"):
        text_area_ratio([], 0, 480)


@settings(max_examples=100, deadline=None)
@given(boxes(side=40), st.integers(1, 40), st.integers(1, 40))
def test_text_area_ratio_is_a_share(bs: list[Box], w: int, h: int) -> None:
    assert 0.0 <= text_area_ratio(bs, w, h) <= 1.0


def test_dispersion_of_fake_detections() -> None:
    # fewer than 2 boxes spread over nothing
    assert dispersion([], 100, 100) == 0.0
    assert dispersion([(10, 10, 30, 30)], 100, 100) == 0.0
    # centres (20, 20) and (80, 60): bounding box 60 x 40 of a 100 x 100 image
    assert dispersion([(10, 10, 30, 30), (70, 50, 90, 70)], 100, 100) == pytest.approx(0.24)
    # a third box inside that span changes nothing; box sizes do not matter, only centres
    assert dispersion([(10, 10, 30, 30), (70, 50, 90, 70), (45, 35, 55, 45)], 100, 100) == pytest.approx(0.24)
    assert dispersion([(19, 19, 21, 21), (0, 20, 160, 100)], 100, 100) == pytest.approx(0.24)
    # centres in one row: no area
    assert dispersion([(0, 0, 10, 10), (80, 0, 90, 10)], 100, 100) == 0.0
    # float boxes (a detector's output) and centres clipped to the image: corners give the whole image
    corners = [(-10.0, -10.0, 10.0, 10.0), (90.0, 90.0, 110.0, 110.0)]
    assert dispersion(corners, 100, 100) == pytest.approx(1.0)
    assert dispersion([(-50, -50, -30, -30), (150, 150, 170, 170)], 100, 100) == 1.0
    with pytest.raises(ValueError, match="positive size"):
        dispersion([(0, 0, 1, 1), (2, 2, 3, 3)], 10, -1)


@settings(max_examples=100, deadline=None)
@given(boxes(side=50), st.randoms(use_true_random=False))
def test_dispersion_is_a_share_and_ignores_order(bs: list[Box], rnd: object) -> None:
    d = dispersion(bs, 50, 50)
    assert 0.0 <= d <= 1.0
    shuffled = list(bs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert dispersion(shuffled, 50, 50) == pytest.approx(d)


def test_num_classes() -> None:
    assert num_classes([]) == 0
    assert num_classes(["person", "dog", "person", "cat"]) == 3
    assert num_classes(iter(["a"])) == 1
