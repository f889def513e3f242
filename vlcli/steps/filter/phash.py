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
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlcli.images import decode

HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
SAMPLE_SIZE = 32  # the image is reduced to 32x32 before the DCT (imagehash's highfreq_factor 4)
BITS = HASH_SIZE * HASH_SIZE
_MASK = (1 << BITS) - 1
# JPEGs decode at the smallest scale whose short side is still >= this (1/4 for 1600x1200). On the
# benchmark photos (benchmarks/phash.py) that keeps 86% of hashes bit-identical to a full-size decode,
# the rest 2-4 bits apart, at 2.3-3x imagehash's speed; the 1/8 scale (just covering 32x32) keeps 78%
# at ~3.1x. Entropy decoding, which no scale skips, is most of the cost.
DRAFT_MIN_SIDE = 8 * SAMPLE_SIZE


def _dct2(pixels: np.ndarray) -> np.ndarray:
    """Unnormalised 2-D DCT-II, down the columns then along the rows."""
    # scipy's pocketfft: the same transform imagehash calls, so coefficients (and their rounding noise,
    # which decides bits in flat or symmetric images) match to the last bit.
    from scipy.fft import dct

    return np.asarray(dct(dct(pixels, type=2, axis=0), type=2, axis=1))


def bits_to_int(bits: np.ndarray) -> int:
    """The int whose binary digits, most significant first, are `bits` (64 booleans)."""
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def phash(img: Image.Image) -> int:
    """The 64-bit perceptual hash of `img` as an int in [0, 2**64), bit for bit `imagehash.phash(img)`."""
    small = img.convert("L").resize((SAMPLE_SIZE, SAMPLE_SIZE), Image.Resampling.LANCZOS)
    low = _dct2(np.asarray(small, dtype=np.float64))[:HASH_SIZE, :HASH_SIZE]
    return bits_to_int(low > np.median(low))


def phash_bytes(data: bytes, *, min_side: int | None = DRAFT_MIN_SIDE) -> int:
    """The pHash of encoded image bytes, decoded upright in RGB; JPEGs decode at a reduced scale
    (draft mode) whose short side is still at least `min_side` (None: full size)."""
    # Draft decoding scales in the JPEG's DCT domain, so pixels differ slightly from a full-size decode
    # and coefficients near the median can swap sides (benchmarks/phash.py measures how often). `decode`
    # also applies EXIF orientation and puts transparency on white, as every other step sees the image.
    return phash(decode(data, min_side=min_side, reduce=False))  # other formats: exact pixels


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
