"""Character n-grams hashed in numpy: one 64-bit polynomial hash per window, no Python loop.

Used where a set of n-grams is compared or counted and no datatrove signature has to match:
repetition coverage (``curate.filters.japanese``), near-duplicate verification (``curate.dedup.near_duplicates``) and the
scorer's hashed n-gram features (``curate.scoring.shipped_scorer``). Each caller keeps its own coefficients.
"""

from __future__ import annotations

import numpy as np


def coefficients(seed: int, size: int = 64) -> np.ndarray:
    """Odd random 64-bit multipliers, one per position in a window (up to ``size``)."""
    return np.random.default_rng(seed).integers(1, 2**63, size=size, dtype=np.uint64) | np.uint64(1)


def char_codes(text: str) -> np.ndarray:
    """The code points of ``text`` as uint64."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def window_hashes(codes: np.ndarray, n: int, coeffs: np.ndarray) -> np.ndarray:
    """The hash of every window of ``n`` codes (wrapping arithmetic); ``len(codes) - n + 1`` values.

    >>> c = coefficients(0)
    >>> h = window_hashes(char_codes("あいうあい"), 2, c)
    >>> len(h), h[0] == h[3], h[0] == h[1]
    (4, np.True_, np.False_)
    """
    windows = np.lib.stride_tricks.sliding_window_view(codes, n)
    with np.errstate(over="ignore"):
        return (windows * coeffs[:n]).sum(axis=1)


def text_windows(texts: list[str], n: int, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every window of ``n`` characters of every text, text after text, hashed in one
    numpy pass over their concatenation (no window straddles two texts), and the number of windows
    per text (0 below ``n`` characters)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    return code_windows(char_codes("".join(texts)), lengths, n, coeffs)


def code_windows(codes: np.ndarray, lengths: np.ndarray, n: int, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``text_windows`` of texts given as their concatenated code points (uint64) and their lengths."""
    counts = np.maximum(lengths - n + 1, 0)
    width = codes.size - n + 1
    if width <= 0 or not counts.any():
        return np.zeros(0, dtype=np.uint64), counts
    with np.errstate(over="ignore"):
        windows = codes[:width] * coeffs[0]
        for k in range(1, n):
            windows += codes[k:k + width] * coeffs[k]
    starts = np.cumsum(lengths) - lengths
    offset_in_text = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return windows[np.repeat(starts, counts) + offset_in_text], counts
