"""Constructor argument checks shared by task families and optimizers (clear ``ValueError``s)."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np


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


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """Returns ``value`` as an ``int`` (``bool`` is refused), at least ``minimum`` if given.

    Raises ``TypeError`` for a non-integer and ``ValueError`` for one below ``minimum``.
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    value = operator.index(value)
    check(minimum is None or value >= minimum, f"{name}: must be >= {minimum}, got {value}")
    return value


def real(name: str, value: Any, minimum: float | None = None, *, strict: bool = False) -> float:
    """Returns ``value`` as a finite ``float``, at least ``minimum`` (above it if ``strict``).

    Raises ``TypeError`` for a non-number (``bool`` included) and ``ValueError`` for a
    non-finite value or one out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    check(math.isfinite(value), f"{name}: must be finite, got {value}")
    if minimum is not None:
        ok = value > minimum if strict else value >= minimum
        check(ok, f"{name}: must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def one_of(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Returns ``value`` if it is one of ``choices``; raises ``ValueError`` otherwise."""
    check(value in choices, f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """Returns ``value`` if it is a ``bool``; raises ``TypeError`` otherwise."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)
