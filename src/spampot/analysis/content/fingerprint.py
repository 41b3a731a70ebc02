"""What makes two texts one campaign: a normalised hash, a fuzzy hash, MinHash LSH bands.

Bulk mailers vary each copy a little to defeat checksums ("hash busters": a greeting with the
recipient's name, a line of random words, numbers, links with a tracking id), so the text is
first normalised: case folded, punctuation to spaces, digits dropped, whitespace collapsed.

- ``body_hash``: SHA-256 of the normalised text (exact duplicates after normalisation).
- ``text_tlsh``: TLSH (Oliver et al., 2013) of the normalised text, compared by distance.
- MinHash bands: 64 min-wise hashes of the text's word 4-grams (Broder, 1997), cut into 8
  bands of 8. Two texts share a band with probability 1 − (1 − J⁸)⁸ for Jaccard similarity J:
  0.92 at J = 0.85 (copies of one campaign), 0.03 at J = 0.5, which is what lets campaigns be
  found on the whole corpus by equal band values, with no pairwise comparison.

The hash family is multiply-shift (Dietzfelbinger et al., 1997) on a hash of each shingle
made from its words' CRC-32, seeded with constants below: the same text gives the same bands
in every process and release.
"""

from __future__ import annotations

import hashlib
import string
import zlib

import numpy as np
import tlsh

NUM_PERM = 64
BANDS = 8
ROWS = NUM_PERM // BANDS
SHINGLE_WORDS = 4

# Punctuation becomes a space and digits go (bulk mailers vary numbers and tracking ids from
# copy to copy); str.translate does it in one pass, 20× faster than regular expressions.
# Normalising works on the UTF-8 bytes: ASCII punctuation becomes a space and digits go
# (bulk mailers vary numbers and tracking ids from copy to copy) in one bytes.translate, 10×
# faster than str.translate on CJK text; the common CJK punctuation is replaced first.
_FOLD = bytes.maketrans(
    (string.punctuation + string.digits).encode(),
    b" " * len(string.punctuation) + b"\x00" * len(string.digits),
)
_CJK_PUNCTUATION = tuple(p.encode() for p in "，。！？、；：「」『』（）【】《》“”‘’…·")

_SEEDS = np.random.Generator(np.random.PCG64(20061007)).integers(
    0, 2**63, size=(2, NUM_PERM), dtype=np.uint64
)
_A = (_SEEDS[0] << np.uint64(1)) | np.uint64(1)  # odd multipliers
_B = _SEEDS[1]
_MIX = (
    np.random.Generator(np.random.PCG64(20070918)).integers(
        0, 2**63, size=(BANDS * ROWS + SHINGLE_WORDS), dtype=np.uint64
    )
    << np.uint64(1)
) | np.uint64(1)
_BAND_MIX = _MIX[: BANDS * ROWS].reshape(BANDS, ROWS)
_WORD_MIX = _MIX[BANDS * ROWS :]
_SHIFT = np.uint64(32)


def normalise_text(text: str) -> bytes:
    """Case folded, punctuation to spaces, digits dropped, whitespace collapsed; UTF-8."""
    data = text.lower().encode("utf-8", "surrogatepass")
    if not text.isascii():
        for mark in _CJK_PUNCTUATION:
            if mark in data:
                data = data.replace(mark, b" ")
    return b" ".join(data.translate(_FOLD).replace(b"\x00", b"").split())


def words(normalised: bytes) -> list[bytes]:
    return normalised.split()


def shingle_hashes(tokens: list[bytes]) -> np.ndarray:
    """One 64-bit hash per word 4-gram (or one for the whole text when shorter).

    Each word is hashed once (CRC-32) and the 4-gram's hash combines its words' hashes with
    fixed odd multipliers, so no 4-gram string is built.
    """
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    h = np.fromiter(map(zlib.crc32, tokens), dtype=np.uint64, count=len(tokens))
    n = SHINGLE_WORDS
    if len(h) < n:
        h = np.concatenate([h, np.zeros(n - len(h), dtype=np.uint64)])
    with np.errstate(over="ignore"):
        m = len(h) - n + 1
        out = h[:m] * _WORD_MIX[0]
        out += h[1 : m + 1] * _WORD_MIX[1]
        out += h[2 : m + 2] * _WORD_MIX[2]
        out += h[3 : m + 3] * _WORD_MIX[3]
    return out


def signature(hashes: np.ndarray) -> np.ndarray:
    """The 64 min-hashes (uint32 values in uint64) of a text's shingle hashes."""
    if hashes.size == 0:
        return np.zeros(NUM_PERM, dtype=np.uint64)
    # In place: the shingles × 64 table is a few hundred kilobytes, and each temporary of
    # that size is a fresh mmap with its page faults (four times the arithmetic's cost).
    with np.errstate(over="ignore"):
        values = np.multiply.outer(hashes, _A)
        values += _B
        values >>= _SHIFT
    result: np.ndarray = values.min(axis=0)
    return result


def bands(sig: np.ndarray) -> list[int]:
    """One signed 64-bit key per band (the band's index is mixed in, so bands never collide)."""
    with np.errstate(over="ignore"):
        mixed = (sig.reshape(BANDS, ROWS) * _BAND_MIX).sum(axis=1, dtype=np.uint64)
    keys: list[int] = mixed.view(np.int64).tolist()
    return keys


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / NUM_PERM


def body_hash(normalised: bytes) -> str:
    return hashlib.sha256(normalised).hexdigest()


def fuzzy_hash(data: bytes) -> str | None:
    """TLSH of ``data``; None when it is too short or too uniform (TLSH needs 50 bytes)."""
    if len(data) < 50:
        return None
    digest = tlsh.hash(data)
    return None if not digest or digest == "TNULL" else str(digest)
