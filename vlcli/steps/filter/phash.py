"""Perceptual hash (pHash): the same 64 bits as `imagehash.phash`, as a plain int.

Algorithm (Zauner / hackerfactor "Looks Like It"): grey levels (PIL's "L" conversion), resized to 32x32
with PIL's Lanczos filter, a 2-D DCT-II (unnormalised, rows then columns), the top-left 8x8 block of
low frequencies, and one bit per coefficient: 1 when it is greater than the block's median.

Bit order: the 8x8 bits are read row by row (vertical frequency major, as `imagehash`'s
`hash.flatten()`), the first bit being the most significant of the int. So for an int `h`:
`str(imagehash.phash(img)) == f"{h:016x}"`, `imagehash.hex_to_hash(f"{h:016x}")` gives the ImageHash back,
and `int(str(image_hash), 16)` turns an ImageHash into the int. Hamming distance is
`(a ^ b).bit_count()`, equal to `ImageHash - ImageHash`.

The table stores the hash as int64 (the two's complement of the 64 bits): `to_int64` / `from_int64`.

JPEGs hash from a luma-only decode at a reduced DCT scale (`phash_draft`; 1/8 for photos): each decoded
pixel is about the mean of a block (8x8 at 1/8), so giving it the sum of PIL's full-size Lanczos weights
over its block (and clipping the horizontal pass as PIL does) gives the 32x32 the full-size resize
would, up to rounding. Bits then equal imagehash's on the full decode for ~90% of photos, the rest 2
bits apart (benchmarks/phash.py). The rest is PIL rounding each of the 1200 rows of its horizontal pass
to 8 bits: a float resize of the exact full-size pixels gets no closer (~91%), rounding estimates of
those rows measured worse, and only the full decode with PIL's own resize gives every bit (`exact`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from vlcli.images import decode, decode_luma_draft, to_rgb

HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
SAMPLE_SIZE = 32  # the image is reduced to 32x32 before the DCT (imagehash's highfreq_factor 4)
BITS = HASH_SIZE * HASH_SIZE
_MASK = (1 << BITS) - 1
# Steps that decode for a model too (NSFW) decode JPEGs at the smallest scale whose short side is
# still >= this, and hash those pixels (`phash_pixels`).
DRAFT_MIN_SIDE = 8 * SAMPLE_SIZE
# `phash_draft` decodes JPEGs at the smallest DCT scale whose short side stays >= this: 1/8 for photos
# (entropy decoding, which no scale skips, is then most of the cost: ~2.6 ms of ~2.9 for 1600x1200).
# 1/4 and 1/2 measured no closer to the full decode on the benchmark photos (see the module notes).
DRAFT_MIN_PIXELS = 2 * SAMPLE_SIZE
_TRANSPOSE = {  # EXIF orientation -> the 32x32 array as `ImageOps.exif_transpose` turns the image
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, 1),
}


def _dct2(pixels: np.ndarray) -> np.ndarray:
    """Unnormalised 2-D DCT-II, down the columns then along the rows."""
    # scipy's pocketfft: the same transform imagehash calls, so coefficients (and their rounding noise,
    # which decides bits in flat or symmetric images) match to the last bit.
    from scipy.fft import dct

    return np.asarray(dct(dct(pixels, type=2, axis=0), type=2, axis=1))


def bits_to_int(bits: np.ndarray) -> int:
    """The int whose binary digits, most significant first, are `bits` (64 booleans)."""
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def _bits(sample: np.ndarray) -> int:
    low = _dct2(sample)[:HASH_SIZE, :HASH_SIZE]
    return bits_to_int(low > np.median(low))


def phash(img: Image.Image) -> int:
    """The 64-bit perceptual hash of `img` as an int in [0, 2**64), bit for bit `imagehash.phash(img)`."""
    small = img.convert("L").resize((SAMPLE_SIZE, SAMPLE_SIZE), Image.Resampling.LANCZOS)
    return _bits(np.asarray(small, dtype=np.float64))


def _lanczos(x: np.ndarray) -> np.ndarray:
    """PIL's Lanczos-3 kernel (zero outside [-3, 3))."""
    return np.where((x >= -3) & (x < 3), np.sinc(x) * np.sinc(x / 3), 0.0)


@lru_cache(maxsize=256)
def _block_weights(full: int, reduced: int) -> np.ndarray:
    """(32, reduced): PIL's Lanczos weights resizing `full` pixels to 32, summed over the full-size
    pixels each of the `reduced` pixels averages (blocks of ceil(full / reduced), the last one short)."""
    scale = full / SAMPLE_SIZE
    stretch = max(scale, 1.0)
    support = 3.0 * stretch
    centers = (np.arange(SAMPLE_SIZE) + 0.5) * scale
    x = np.arange(full)
    # the window PIL's precompute_coeffs sums over (C's int() truncates toward zero)
    lo = np.trunc(centers - support + 0.5).clip(0)[:, None]
    hi = np.trunc(centers + support + 0.5).clip(None, full)[:, None]
    w = _lanczos((x - centers[:, None] + 0.5) / stretch) * ((x >= lo) & (x < hi))
    w /= w.sum(axis=1, keepdims=True)
    out = np.zeros((SAMPLE_SIZE, reduced))
    np.add.at(out.T, np.minimum(x // -(-full // reduced), reduced - 1), w.T)
    out.flags.writeable = False
    return out


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`a @ b` as a sum of products small enough for OpenBLAS to keep on this thread."""
    # OpenBLAS splits a product over every core once m*n*k >= 2**18; with the cores busy (the prefetch
    # pool's other threads, other processes) its threads spin-wait: 14 ms instead of 0.3 for one photo.
    m, k = a.shape
    step = max(1, (2**18 - 1) // (m * b.shape[1]))
    out: np.ndarray = a[:, :step] @ b[:step]
    for i in range(step, k, step):
        out += a[:, i : i + step] @ b[i : i + step]
    return out


def phash_pixels(img: Image.Image, full: tuple[int, int], orientation: int = 1) -> int:
    """The pHash of an image of size `full` from `img`, the same image decoded at a reduced scale (each
    pixel the mean of a block, as JPEG draft mode gives), as stored; `orientation` (EXIF) is applied
    after. Close to `phash` of the full-size image (see the module notes); exact when `img` is full size."""
    turn = _TRANSPOSE.get(orientation)
    if img.size == full:
        return phash(Image.fromarray(np.ascontiguousarray(turn(np.asarray(img)))) if turn else img)
    grey = img if img.mode == "L" else to_rgb(img).convert("L")
    pixels = np.asarray(grey, dtype=np.float64)
    # PIL's two passes: horizontal first, clipped to 0..255 (Lanczos overshoots at hard edges), then
    # vertical. PIL also rounds both to 8 bits; rounding estimates of the full-size rows measured worse.
    rows = np.clip(_matmul(pixels, _block_weights(full[0], grey.size[0]).T), 0, 255)
    sample = _matmul(_block_weights(full[1], grey.size[1]), rows)
    return _bits(turn(sample) if turn else sample)


def phash_draft(data: bytes) -> int | None:
    """The pHash of a JPEG's bytes from a luma-only decode at a reduced scale (close to `phash` of the
    full decode, see the module notes); None for other formats and JPEGs too small to reduce."""
    drafted = decode_luma_draft(data, DRAFT_MIN_PIXELS)
    if drafted is None:
        return None
    img, full, orientation = drafted
    return phash_pixels(img, full, orientation)


def phash_bytes(data: bytes, *, exact: bool = False) -> int:
    """The pHash of encoded image bytes, as `phash` of the upright image (transparency on white) sees it;
    JPEGs from a reduced-scale luma decode unless `exact` (the full decode: imagehash's bits, ~3x the cost)."""
    if not exact and (h := phash_draft(data)) is not None:
        return h
    return phash(decode(data))


def to_int64(h: int) -> int:
    """The hash as stored in an int64 column: the same 64 bits read as two's complement."""
    if not 0 <= h <= _MASK:
        raise ValueError(f"a 64-bit hash must be in [0, 2**64), got {h}")
    return h - (1 << BITS) if h >> (BITS - 1) else h


def from_int64(v: int) -> int:
    """The hash in [0, 2**64) from its int64 column value."""
    if not -(1 << (BITS - 1)) <= v < (1 << (BITS - 1)):
        raise ValueError(f"an int64 must be in [-2**63, 2**63), got {v}")
    return v & _MASK


def to_hex(h: int) -> str:
    """The 16-digit hex form, the same string as `str(imagehash.phash(img))`."""
    return f"{h:016x}"


def distance(a: int, b: int) -> int:
    """Hamming distance between two hashes (number of differing bits)."""
    return (a ^ b).bit_count()
