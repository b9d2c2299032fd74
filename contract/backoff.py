"""Exponential backoff with full jitter, for retrying against Redis."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays ``initial * 2**attempt`` capped at ``maximum``, each drawn uniformly below it.

    Full jitter spreads reconnecting processes apart so they do not retry in step.
    """

    initial: float = 0.05
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling)
