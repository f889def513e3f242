"""Candidate geometry: resized frame, counts, both ends included, boxes inside, mapping back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vlcli.steps.crop.geometry import CropGrid, grid_boxes, resized_size, seed_boxes, to_original

sizes = st.integers(min_value=16, max_value=5000)


@given(sizes, sizes, st.sampled_from([64, 224, 1000, 1024]))
def test_resized_short_side_and_long_side_rule(w: int, h: int, short: int) -> None:
    rw, rh = resized_size(w, h, short)
    assert min(rw, rh) == short
    long, orig_long, orig_short = max(rw, rh), max(w, h), min(w, h)
    assert long >= short
    assert long == max(short, int(orig_long * short / orig_short) // 16 * 16)


@given(sizes, sizes, st.integers(min_value=1, max_value=40))
def test_seed_boxes_slide_along_the_long_axis(w: int, h: int, n: int) -> None:
    rw, rh = resized_size(w, h, 224)
    boxes = seed_boxes(rw, rh, n)
    side = min(rw, rh)
    if rw == rh:
        assert boxes == [(0, 0, side, side)]
        return
    assert len(boxes) == n
    for left, top, right, bottom in boxes:
        assert right - left == side and bottom - top == side
        assert left >= 0 and top >= 0 and right <= rw and bottom <= rh
    starts = [b[0] if rw > rh else b[1] for b in boxes]
    if n > 1:
        assert starts[0] == 0 and starts[-1] == max(rw, rh) - side  # both ends included
        assert starts == sorted(starts)
    else:
        assert starts == [(max(rw, rh) - side) // 2]


def test_seed_offsets_formula() -> None:
    boxes = seed_boxes(1360, 1024, 15)
    assert [b[0] for b in boxes] == [int(i * (1360 - 1024) / 14) for i in range(15)]


@given(sizes, sizes, st.integers(min_value=1, max_value=6))
def test_grid_boxes_are_inside_and_have_their_aspect(w: int, h: int, n: int) -> None:
    grid = CropGrid(n, ((1, 1), (4, 3), (16, 9)), (1.0, 0.7))
    for left, top, right, bottom in grid_boxes(w, h, grid):
        assert 0 <= left < right <= w and 0 <= top < bottom <= h


@given(sizes, sizes, st.data())
def test_boxes_map_back_inside_the_original(w: int, h: int, data: st.DataObject) -> None:
    rw, rh = resized_size(w, h, 1024)
    for box in seed_boxes(rw, rh, 5):
        left, top, right, bottom = to_original(box, (rw, rh), (w, h))
        assert 0 <= left < right <= w and 0 <= top < bottom <= h


def test_mapping_back_scales_each_axis() -> None:
    # 1600x1200 -> 1360x1024 (1365 floored to a multiple of 16): x scales by 1600/1360, y by 1200/1024.
    assert resized_size(1600, 1200, 1024) == (1360, 1024)
    assert to_original((336, 0, 1360, 1024), (1360, 1024), (1600, 1200)) == (395, 0, 1600, 1200)
