"""Pure feature math on boxes and labels for `vl bin`: union area, text-area ratio, dispersion, classes.

A box is (left, top, right, bottom) in pixels, right and bottom exclusive, so its area is
(right - left) * (bottom - top); a box with right <= left or bottom <= top is empty.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

GRID_CELLS = 1 << 22  # cells of the compressed grid held at once: bounds memory (~32 MB), not results


def _int_boxes(boxes: Iterable[Sequence[int]]) -> np.ndarray:
    """Non-empty boxes as an int64 array [n, 4]; float coordinates are an error, not silently truncated."""
    rows = [tuple(b) for b in boxes]
    if not rows:
        return np.zeros((0, 4), np.int64)
    arr = np.asarray(rows)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes are (left, top, right, bottom) quadruples, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"union_area takes integer pixel boxes, got {arr.dtype}")
    arr = arr.astype(np.int64)
    keep = (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
    return arr[keep]


def union_area(boxes: Iterable[Sequence[int]]) -> int:
    """Exact area covered by the union of integer boxes: overlaps count once, empty boxes add nothing."""
    arr = _int_boxes(boxes)
    if len(arr) == 0:
        return 0
    # Coordinate compression: the distinct edges cut the plane into a grid of cells, each either wholly
    # covered or not. Each box adds +1 to the cells it covers through a 2-D difference array whose
    # prefix sums are the cover counts; columns go in chunks carrying the running sum, to bound memory.
    xs, ys = np.unique(arr[:, [0, 2]]), np.unique(arr[:, [1, 3]])
    x0, x1 = np.searchsorted(xs, arr[:, 0]), np.searchsorted(xs, arr[:, 2])
    y0, y1 = np.searchsorted(ys, arr[:, 1]), np.searchsorted(ys, arr[:, 3])
    widths, heights = np.diff(xs), np.diff(ys)
    step = max(1, GRID_CELLS // len(heights))
    carry = np.zeros(len(heights), np.int64)  # cover counts of the column left of the chunk
    total = 0
    for start in range(0, len(widths), step):
        stop = min(start + step, len(widths))
        diff = np.zeros((stop - start, len(heights) + 1), np.int64)
        for col, sign in ((x0, 1), (x1, -1)):
            inside = (col >= start) & (col < stop)
            np.add.at(diff, (col[inside] - start, y0[inside]), sign)
            np.add.at(diff, (col[inside] - start, y1[inside]), -sign)
        cover = carry + np.cumsum(np.cumsum(diff, axis=1)[:, :-1], axis=0)
        carry = cover[-1]
        total += int(widths[start:stop] @ ((cover > 0) @ heights))
    return total


def _clip(boxes: Iterable[Sequence[int]], width: int, height: int) -> list[tuple[int, int, int, int]]:
    return [
        (min(max(x0, 0), width), min(max(y0, 0), height), min(max(x1, 0), width), min(max(y1, 0), height))
        for x0, y0, x1, y1 in (tuple(box) for box in boxes)
    ]


def _image_area(width: int, height: int) -> int:
    if width <= 0 or height <= 0:
        raise ValueError(f"an image has a positive size, not {width}x{height}")
    return width * height


def text_area_ratio(boxes: Iterable[Sequence[int]], width: int, height: int) -> float:
    """Share of a width x height image covered by the union of the boxes (clipped to it), in [0, 1]."""
    area = _image_area(width, height)
    return union_area(_clip(boxes, width, height)) / area


def dispersion(boxes: Iterable[Sequence[float]], width: int, height: int) -> float:
    """Area of the bounding box of the boxes' centres / image area, in [0, 1]; 0.0 for fewer than 2 boxes.

    Centres are clipped to the image first, so a box hanging over the edge cannot push it above 1. One
    box, or boxes whose centres share a row or a column, spread over no area and give 0.0.
    """
    area = _image_area(width, height)
    arr = np.asarray([tuple(b) for b in boxes], dtype=np.float64).reshape(-1, 4)
    if len(arr) < 2:
        return 0.0
    cx = np.clip((arr[:, 0] + arr[:, 2]) / 2, 0, width)
    cy = np.clip((arr[:, 1] + arr[:, 3]) / 2, 0, height)
    return float((cx.max() - cx.min()) * (cy.max() - cy.min()) / area)


def num_classes(labels: Iterable[Hashable]) -> int:
    """Number of distinct labels (class names) among the detections."""
    return len(set(labels))
