"""Is this a measured number? One test for "a finite int or float" (numpy scalars included, bools and
None not), used wherever a value may be missing, NaN or infinite."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_NUMBER_TYPES = (int, float, np.integer, np.floating)


def is_number(x: Any) -> bool:
    """A finite int or float (or numpy scalar), not a bool and not None: a value that was measured."""
    return isinstance(x, _NUMBER_TYPES) and not isinstance(x, (bool, np.bool_)) and math.isfinite(x)


def as_number(x: Any) -> float | None:
    """`x` as a float when it is a finite number (see `is_number`), else None."""
    return float(x) if is_number(x) else None
