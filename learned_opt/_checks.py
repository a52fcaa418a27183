"""Constructor argument checks shared by task families, optimizers and the meta-training engine.

Each check raises one clear error naming the argument: :class:`ArgumentTypeError` (a
``TypeError`` and a ``ValueError``) for a value of the wrong type (a string where a number is
expected, a bool where an integer is), ``ValueError`` for a value out of range.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Collection
from typing import Any


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type; also a ``ValueError``, so one ``except ValueError`` catches
    every bad argument value."""


def check(condition: bool, message: str) -> None:
    """Raises ``ValueError(message)`` unless ``condition`` holds (for constructor validation)."""
    if not condition:
        raise ValueError(message)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Checks that ``value`` is an integer (not a bool) of at least ``minimum``; returns it.

    Example:
        >>> from learned_opt._checks import integer
        >>> integer("dim", 4, minimum=1)
        4
        >>> integer("dim", "four", minimum=1)
        Traceback (most recent call last):
        ...
        learned_opt._checks.ArgumentTypeError: dim: expected an integer >= 1, got 'four'
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if not _is_integer(value):
        raise ArgumentTypeError(f"{name}: expected an integer{bound}, got {value!r}")
    check(minimum is None or value >= minimum, f"{name}: expected an integer{bound}, got {value}")
    return int(value)


def real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    inclusive: bool = True,
    inclusive_maximum: bool = True,
) -> float:
    """Checks that ``value`` is a finite real number (not a bool) within the bounds; returns it.

    ``inclusive=False`` excludes ``minimum`` itself (``> minimum`` instead of ``>=``), and
    ``inclusive_maximum=False`` excludes ``maximum``.

    Example:
        >>> from learned_opt._checks import real
        >>> real("scale", 2, minimum=0.0, inclusive=False)
        2.0
        >>> real("scale", 0.0, minimum=0.0, inclusive=False)
        Traceback (most recent call last):
        ...
        ValueError: scale: expected a finite number > 0.0, got 0.0
        >>> real("decay", 1.0, minimum=0.0, maximum=1.0, inclusive_maximum=False)
        Traceback (most recent call last):
        ...
        ValueError: decay: expected a finite number >= 0.0 and < 1.0, got 1.0
    """
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>=' if inclusive else '>'} {minimum}")
    if maximum is not None:
        bounds.append(f"{'<=' if inclusive_maximum else '<'} {maximum}")
    expected = f"{name}: expected a finite number{' ' if bounds else ''}{' and '.join(bounds)}"
    if not _is_real(value):
        raise ArgumentTypeError(f"{expected}, got {value!r}")
    value = float(value)
    low_ok = minimum is None or (value >= minimum if inclusive else value > minimum)
    high_ok = maximum is None or (value <= maximum if inclusive_maximum else value < maximum)
    check(math.isfinite(value) and low_ok and high_ok, f"{expected}, got {value}")
    return value


def reals(name: str, value: Any, **bounds: Any) -> tuple[float, ...]:
    """Checks a sequence of numbers (e.g. a JSON list) with :func:`real`'s bounds; a tuple.

    Example:
        >>> from learned_opt._checks import reals
        >>> reals("decays", [0.5, 0.9], minimum=0.0, maximum=1.0, inclusive_maximum=False)
        (0.5, 0.9)
    """
    if not isinstance(value, list | tuple):
        raise ArgumentTypeError(f"{name}: expected a sequence of numbers, got {value!r}")
    return tuple(real(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value))


def boolean(name: str, value: Any) -> bool:
    """Checks that ``value`` is a bool (``1`` or ``"no"`` are not); returns it.

    Example:
        >>> from learned_opt._checks import boolean
        >>> boolean("rotate", "no")
        Traceback (most recent call last):
        ...
        learned_opt._checks.ArgumentTypeError: rotate: expected True or False, got 'no'
    """
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected True or False, got {value!r}")
    return value


def choice(name: str, value: Any, options: Collection[Any]) -> Any:
    """Checks that ``value`` is one of ``options``; returns it.

    Example:
        >>> from learned_opt._checks import choice
        >>> choice("meta_loss", "max", ("sum", "log_mean"))
        Traceback (most recent call last):
        ...
        ValueError: meta_loss: expected one of ('sum', 'log_mean'), got 'max'
    """
    try:
        ok = value in options
    except TypeError:  # an unhashable value tested against a set
        ok = False
    check(ok, f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def positive_ints(name: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Normalises an int or a sequence of ints (e.g. a JSON list) to a tuple of positive ints."""
    values = tuple(value) if isinstance(value, list | tuple) else (value,)
    valid = (allow_empty or bool(values)) and all(_is_integer(v) and v >= 1 for v in values)
    if not valid:
        kind = ArgumentTypeError if not all(_is_integer(v) for v in values) else ValueError
        raise kind(f"{name}: expected positive integers, got {value!r}")
    return tuple(operator.index(v) for v in values)


def float_range(name: str, value: Any) -> tuple[float, float]:
    """Normalises a ``(low, high)`` pair (e.g. a JSON list) to floats with ``low <= high``."""
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_real, value))):
        raise ArgumentTypeError(f"{name}: expected (low, high), got {value!r}")
    low, high = (float(v) for v in value)
    check(
        math.isfinite(low) and math.isfinite(high), f"{name}: expected finite values, got {value!r}"
    )
    check(low <= high, f"{name}: need low <= high, got {value!r}")
    return low, high
