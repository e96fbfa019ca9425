"""JSON round trip of a ``random.Random``'s state, for ``--state-dir`` persistence.

The emulator draws ids from seeded generators (deterministic under ``--seed``). Saving each
generator's state with the tenant lets a restarted emulator continue the sequence instead of
starting it again, which would reissue ids already in use.
"""

from __future__ import annotations

import random


def rng_state(rng: random.Random) -> list:
    """The generator's state as JSON-ready data."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_state(state: list) -> tuple:
    """The argument of ``random.Random.setstate`` for data made by :func:`rng_state`."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
