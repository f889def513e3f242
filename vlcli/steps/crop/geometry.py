"""Smart-crop geometry: the resized frame, candidate boxes, and mapping boxes back to original pixels."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class CropGrid:
    """Which candidates to cut: N positions per free axis, for every aspect ratio and scale."""

    num_crops: int = 15
    aspects: tuple[tuple[int, int], ...] = ((1, 1),)
    scales: tuple[float, ...] = (1.0,)

    @property
    def is_seed(self) -> bool:
        """True for the seed's algorithm: squares of the full short side along the long axis."""
        return self.aspects == ((1, 1),) and self.scales == (1.0,)


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """Size after resizing so the short side is `short`; the long side is floored to a multiple of 16.

    The long side never drops below `short`, so a candidate square always fits.
    """
    if width <= height:
        long = max(short, int(height * short / width) // 16 * 16)
        return short, long
    long = max(short, int(width * short / height) // 16 * 16)
    return long, short


def _offsets(free: int, n: int) -> list[int]:
    """`n` evenly spaced offsets in [0, free], both ends included; one centred offset when n == 1."""
    if free <= 0:
        return [0]
    if n == 1:
        return [free // 2]
    return [int(i * free / (n - 1)) for i in range(n)]


def seed_boxes(width: int, height: int, num_crops: int) -> list[Box]:
    """The seed's candidates in the resized frame: squares of the short side slid along the long axis."""
    side = min(width, height)
    if width == height:
        return [(0, 0, side, side)]
    if width > height:
        return [(x, 0, x + side, side) for x in _offsets(width - side, num_crops)]
    return [(0, y, side, y + side) for y in _offsets(height - side, num_crops)]


def grid_boxes(width: int, height: int, grid: CropGrid) -> list[Box]:
    """Candidates for every aspect and scale: the largest box of that aspect, scaled, at N positions per axis."""
    if grid.is_seed:
        return seed_boxes(width, height, grid.num_crops)
    boxes: list[Box] = []
    for aw, ah in grid.aspects:
        fit = min(width / aw, height / ah)
        for scale in grid.scales:
            bw = max(1, min(width, round(aw * fit * scale)))
            bh = max(1, min(height, round(ah * fit * scale)))
            for y in _offsets(height - bh, grid.num_crops):
                for x in _offsets(width - bw, grid.num_crops):
                    boxes.append((x, y, x + bw, y + bh))
    return list(dict.fromkeys(boxes))


def to_original(box: Box, resized: tuple[int, int], original: tuple[int, int]) -> Box:
    """Map a box from the resized frame back to original pixels, clamped inside the image."""
    sx, sy = original[0] / resized[0], original[1] / resized[1]
    left, top, right, bottom = box
    ow, oh = original
    out_l = min(max(0, round(left * sx)), ow - 1)
    out_t = min(max(0, round(top * sy)), oh - 1)
    out_r = max(out_l + 1, min(ow, round(right * sx)))
    out_b = max(out_t + 1, min(oh, round(bottom * sy)))
    return out_l, out_t, out_r, out_b
