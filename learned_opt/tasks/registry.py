"""Task families by name, for command lines and saved configurations.

Example:
    >>> from learned_opt.tasks import FAMILIES, get_family
    >>> sorted(FAMILIES)
    ['conv', 'mlp', 'quadratic', 'rosenbrock', 'scaled_quadratic', 'sinusoid']
    >>> get_family("quadratic", dim=4)
    Quadratic(dim=4, init_scale=1.0)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from learned_opt.tasks.base import TaskFamily
from learned_opt.tasks.conv import ConvNet
from learned_opt.tasks.ill_conditioned import Rosenbrock, ScaledQuadratic
from learned_opt.tasks.mlp import MLP
from learned_opt.tasks.quadratic import Quadratic
from learned_opt.tasks.sinusoid import Sinusoid

#: The built-in task families by ``name`` (the ``--family`` of the command line).
FAMILIES: dict[str, type[TaskFamily]] = {
    family.name: family
    for family in (Quadratic, MLP, ConvNet, Sinusoid, ScaledQuadratic, Rosenbrock)
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
    fields = dataclasses.fields(_lookup(name))
    return {f.name: f.default for f in fields if f.init and f.default is not dataclasses.MISSING}


def _lookup(name: str) -> type[TaskFamily]:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"task family: unknown {name!r}; known: {sorted(FAMILIES)}") from None


def get_family(name: str, **options: Any) -> TaskFamily:
    """Builds the task family registered as ``name`` with keyword ``options``.

    ``get_family(**family.config())`` rebuilds ``family``; lists in ``options`` (as read from
    JSON) are accepted where the family expects tuples.

    Args:
        name: one of ``"quadratic"``, ``"mlp"``, ``"conv"``, ``"sinusoid"``,
            ``"scaled_quadratic"`` and ``"rosenbrock"``.
        **options: the family's constructor arguments.

    Raises:
        ValueError: for an unknown name or option, or an invalid option value.

    Example:
        >>> from learned_opt.tasks import get_family
        >>> family = get_family("mlp", hidden_sizes=[40, 40], activation="relu")
        >>> family.hidden_sizes, get_family(**family.config()) == family
        ((40, 40), True)
        >>> get_family("quadratic", size=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: task family 'quadratic': unknown option(s) ['size']; accepted: [...]
    """
    family = _lookup(name)
    accepted = sorted(f.name for f in dataclasses.fields(family) if f.init)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"task family {name!r}: unknown option(s) {unknown}; accepted: {accepted}")
    return family(**options)
