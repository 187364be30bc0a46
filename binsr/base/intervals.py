"""Interval: the numbers a setting accepts, checked when a config is made and when its command-line option is
parsed; and the intervals that model and training settings share."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """The finite numbers from `low` to `high` (integers only when `integer`); an open end excludes its bound. Only
    Python's int and float belong, not bool or numpy's scalars (which a weights-only checkpoint cannot hold)."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def __contains__(self, value: object) -> bool:
        if type(value) not in ((int,) if self.integer else (int, float)):
            return False
        if not self.integer and not abs(value) <= sys.float_info.max:  # NaN, inf, or an int no float can hold
            return False
        above = self.low < value if self.low_open else self.low <= value
        return above and (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low == -math.inf and self.high == math.inf:
            return kind
        left, right = "(" if self.low_open else "[", ")" if self.high_open or self.high == math.inf else "]"
        return f"{kind} in {left}{_text(self.low)}, {_text(self.high)}{right}"


def _text(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


FINITE = Interval(-math.inf, math.inf)
POSITIVE = Interval(0, low_open=True)
COUNT = Interval(0, integer=True)
POSITIVE_COUNT = Interval(1, integer=True)
