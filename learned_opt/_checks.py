"""Argument checks shared by constructors: one clear ``ValueError``/``TypeError`` line each.

Every check names the argument and says what was expected, e.g.
``hidden_size: expected a positive int, got 4.0``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any


def check(condition: bool, message: str) -> None:
    """Raises ``ValueError(message)`` unless ``condition`` holds (for constructor validation)."""
    if not condition:
        raise ValueError(message)


def boolean(name: str, value: Any) -> bool:
    """Returns ``value`` if it is a ``bool`` (numpy bools too); ``1`` or ``"no"`` are refused.

    Example:
        >>> from learned_opt._checks import boolean
        >>> boolean("use_loss", True)
        True
        >>> boolean("use_loss", "no")
        Traceback (most recent call last):
        ...
        TypeError: use_loss: expected a bool, got 'no'
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {value!r}")


def integer(name: str, value: Any, *, minimum: int = 1) -> int:
    """Returns ``value`` as an ``int`` if it is an integer ``>= minimum`` (bools, floats refused).

    Example:
        >>> from learned_opt._checks import integer
        >>> integer("hidden_size", 4.0)
        Traceback (most recent call last):
        ...
        TypeError: hidden_size: expected a positive int, got 4.0
    """
    kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected {kind}, got {value!r}")
    check(value >= minimum, f"{name}: expected {kind}, got {value!r}")
    return int(value)


def real(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns ``value`` as a finite ``float`` within the given bounds (bools and strings refused).

    Example:
        >>> from learned_opt._checks import real
        >>> real("preprocess_p", 0.0, low=0.0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: preprocess_p: expected a finite number in (0, inf), got 0.0
    """
    left = "(" if low_open or low == -math.inf else "["
    right = ")" if high_open or high == math.inf else "]"
    interval = f"{left}{low:g}, {high:g}{right}"
    expected = f"{name}: expected a finite number in {interval}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(expected)
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    check(math.isfinite(value) and not too_low and not too_high, expected)
    return value


def choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``.

    Example:
        >>> from learned_opt._checks import choice
        >>> choice("preprocess", "log", ("log_sign", "none"))
        Traceback (most recent call last):
        ...
        ValueError: preprocess: expected one of ('log_sign', 'none'), got 'log'
    """
    check(value in tuple(choices), f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def positive_ints(name: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Normalises an int or a sequence of ints (e.g. a JSON list) to a tuple of positive ints."""
    try:
        values = tuple(value) if hasattr(value, "__iter__") else (value,)
        valid = not any(isinstance(v, bool) for v in values)
        values = tuple(operator.index(v) for v in values)
        valid = valid and (allow_empty or bool(values)) and all(v >= 1 for v in values)
    except TypeError:
        valid = False
    check(valid, f"{name}: expected positive integers, got {value!r}")
    return values


def reals(name: str, value: Any, **bounds: Any) -> tuple[float, ...]:
    """Normalises a sequence of numbers (e.g. a JSON list) to a tuple of floats within bounds.

    Example:
        >>> from learned_opt._checks import reals
        >>> reals("decays", [0.5, 0.9], low=0.0, high=1.0, high_open=True)
        (0.5, 0.9)
    """
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{name}: expected a sequence of numbers, got {value!r}")
    return tuple(real(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value))


def float_range(name: str, value: Any) -> tuple[float, float]:
    """Normalises a ``(low, high)`` pair (e.g. a JSON list) to floats with ``low <= high``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (low, high), got {value!r}") from None
    check(
        math.isfinite(low) and math.isfinite(high) and low <= high,
        f"{name}: need finite low <= high, got {value!r}",
    )
    return low, high
