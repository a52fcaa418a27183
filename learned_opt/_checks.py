"""Constructor argument checks shared by task families and optimizers (clear ``ValueError``s)."""

from __future__ import annotations

import operator
from typing import Any


def check(condition: bool, message: str) -> None:
    """Raises ``ValueError(message)`` unless ``condition`` holds (for constructor validation)."""
    if not condition:
        raise ValueError(message)


def positive_ints(name: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Normalises an int or a sequence of ints (e.g. a JSON list) to a tuple of positive ints."""
    try:
        values = tuple(value) if hasattr(value, "__iter__") else (value,)
        values = tuple(operator.index(v) for v in values)
        valid = (allow_empty or bool(values)) and all(v >= 1 for v in values)
    except TypeError:
        valid = False
    check(valid, f"{name}: expected positive integers, got {value!r}")
    return values


def float_range(name: str, value: Any) -> tuple[float, float]:
    """Normalises a ``(low, high)`` pair (e.g. a JSON list) to floats with ``low <= high``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (low, high), got {value!r}") from None
    check(low <= high, f"{name}: need low <= high, got {value!r}")
    return low, high
