"""Named random streams: every random choice in a study derives from the one config seed."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 32-bit seed for the stream named by ``keys`` (strings hashed stably with crc32)."""
    entropy = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
