"""Type and range checks of task-family constructor arguments: one clear error line each.

Every check names the argument and says what was expected, e.g.
``num_features: expected a positive int, got 2.5``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from learned_opt._checks import check


def integer(name: str, value: Any, *, minimum: int = 1) -> int:
    """Returns ``value`` as an ``int`` if it is an integer ``>= minimum`` (bools, floats refused).

    Example:
        >>> from learned_opt.tasks._args import integer
        >>> integer("num_features", 2.0)
        Traceback (most recent call last):
        ...
        TypeError: num_features: expected a positive int, got 2.0
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
        >>> from learned_opt.tasks._args import real
        >>> real("target_scale", 0.0, low=0.0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: target_scale: expected a finite number in (0, inf), got 0.0
    """
    opening = "(" if low_open or math.isinf(low) else "["
    closing = ")" if high_open or math.isinf(high) else "]"
    expected = f"{name}: expected a finite number in {opening}{low:g}, {high:g}{closing}, got "
    expected += repr(value)
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
        >>> from learned_opt.tasks._args import choice
        >>> choice("kind", "ridge", ("least_squares", "logistic"))
        Traceback (most recent call last):
        ...
        ValueError: kind: expected one of ('least_squares', 'logistic'), got 'ridge'
    """
    check(value in tuple(choices), f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value
