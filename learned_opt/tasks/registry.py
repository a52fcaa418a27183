"""Task families by name, for command lines and saved configurations.

Example:
    >>> from learned_opt.tasks import FAMILIES, get_family
    >>> sorted(FAMILIES)  # doctest: +NORMALIZE_WHITESPACE
    ['autoencoder', 'char_transformer', 'conv', 'mlp', 'quadratic', 'regression', 'rosenbrock',
     'scaled_quadratic', 'sinusoid']
    >>> get_family("quadratic", dim=4)
    Quadratic(dim=4, init_scale=1.0)

Wrapper families (:data:`WRAPPERS`) take the family they wrap as the option ``family``: a
family, or its ``config()`` (as read from JSON).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from learned_opt.tasks.augment import RandomInitScale, RandomLossScale, RandomTensorScaling
from learned_opt.tasks.autoencoder import Autoencoder
from learned_opt.tasks.base import TaskFamily
from learned_opt.tasks.conv import ConvNet
from learned_opt.tasks.ill_conditioned import Rosenbrock, ScaledQuadratic
from learned_opt.tasks.language import CharTransformer
from learned_opt.tasks.mlp import MLP
from learned_opt.tasks.quadratic import Quadratic
from learned_opt.tasks.regression import Regression
from learned_opt.tasks.scaled import RandomScaling, ScaledLoss
from learned_opt.tasks.sinusoid import Sinusoid

#: The built-in task families by ``name`` (the ``--family`` of the command line).
FAMILIES: dict[str, type[TaskFamily]] = {
    family.name: family
    for family in (
        Quadratic,
        MLP,
        ConvNet,
        Sinusoid,
        ScaledQuadratic,
        Rosenbrock,
        Autoencoder,
        Regression,
        CharTransformer,
    )
}

#: The built-in wrapper families by ``name``: each transforms the family given as ``family``.
WRAPPERS: dict[str, type[TaskFamily]] = {
    family.name: family
    for family in (ScaledLoss, RandomScaling, RandomTensorScaling, RandomLossScale, RandomInitScale)
}


def family_options(name: str) -> dict[str, Any]:
    """Returns the options of the family called ``name`` with their default values.

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> from learned_opt.tasks import family_options
        >>> family_options("rosenbrock")
        {'dim': 2, 'a': 1.0, 'b': 100.0, 'box': (-2.0, 2.0)}
    """
    fields = _init_fields(_lookup(name))
    return {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}


def _init_fields(family: type[TaskFamily]) -> list[dataclasses.Field[Any]]:
    """The constructor's fields of ``family``: none for a family that is not a dataclass."""
    if not dataclasses.is_dataclass(family):
        return []
    return [f for f in dataclasses.fields(family) if f.init]


def _lookup(name: str) -> type[TaskFamily]:
    try:
        return FAMILIES[name] if name in FAMILIES else WRAPPERS[name]
    except KeyError:
        known = sorted(FAMILIES | WRAPPERS)
        raise ValueError(f"task family: unknown {name!r}; known: {known}") from None


def get_family(name: str, **options: Any) -> TaskFamily:
    """Builds the task family registered as ``name`` with keyword ``options``.

    ``get_family(**family.config())`` rebuilds ``family``; lists in ``options`` (as read from
    JSON) are accepted where the family expects tuples.

    Args:
        name: a key of :data:`FAMILIES` or :data:`WRAPPERS`.
        **options: the family's constructor arguments; a wrapper's ``family`` may be given as
            a ``config()`` dict.

    Raises:
        ValueError: for an unknown name or option, or an invalid option value.

    Example:
        >>> from learned_opt.tasks import RandomLossScale, RandomTensorScaling, get_family
        >>> family = get_family("mlp", hidden_sizes=[40, 40], activation="relu")
        >>> family.hidden_sizes, get_family(**family.config()) == family
        ((40, 40), True)
        >>> augmented = RandomLossScale(RandomTensorScaling(family))
        >>> get_family(**augmented.config()) == augmented
        True
        >>> get_family("quadratic", size=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: task family 'quadratic': unknown option(s) ['size']; accepted: [...]
    """
    family = _lookup(name)
    accepted = sorted(f.name for f in _init_fields(family))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"task family {name!r}: unknown option(s) {unknown}; accepted: {accepted}")
    if name in WRAPPERS and isinstance(options.get("family"), dict):
        options = {**options, "family": get_family(**options["family"])}
    return family(**options)
