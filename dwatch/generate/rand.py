"""Counter-based randomness: the value for draw ``i`` of stream ``s`` depends only on
(seed, s, i), never on how many draws came before.

That is what makes the generator's output independent of its chunk size: a chunk of
background events [a, b) draws exactly the values the one-chunk run drew for those indices.
SplitMix64 is used as the mixing function; it is plain integer arithmetic, so results are
identical across numpy versions and platforms.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53


def stream_key(seed: int, name: str) -> int:
    """A 64-bit key for a named stream (stable across runs and Python versions)."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x ^ (x >> np.uint64(30))
        z = z * _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def bits(key: int, idx: np.ndarray) -> np.ndarray:
    """64 random bits per index."""
    with np.errstate(over="ignore"):
        x = idx.astype(np.uint64) * _GOLDEN + np.uint64(key)
    return mix(x)


def uniform(key: int, idx: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) doubles, one per index."""
    return (bits(key, idx) >> np.uint64(11)).astype(np.float64) * _TO_UNIT


class Streams:
    """Named uniform streams for one generator seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._keys: dict[str, int] = {}

    def key(self, name: str) -> int:
        if name not in self._keys:
            self._keys[name] = stream_key(self.seed, name)
        return self._keys[name]

    def u(self, name: str, idx: np.ndarray) -> np.ndarray:
        return uniform(self.key(name), idx)

    def bits(self, name: str, idx: np.ndarray) -> np.ndarray:
        return bits(self.key(name), idx)

    def rng(self, name: str) -> np.random.Generator:
        """A sequential generator for the small, Python-built parts (scenarios, schedules)."""
        return np.random.Generator(np.random.PCG64(self.key(name)))
