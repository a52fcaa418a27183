"""A mixture of task families meta-trained together, a fixed number of tasks of each."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from learned_opt import _checks
from learned_opt.tasks.base import TaskFamily


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Several task families in one meta-step: ``num_tasks`` tasks of each family.

    Tasks of different families have differently shaped parameters, so they cannot share one
    ``vmap``. :class:`~learned_opt.MetaTrainer` runs one ``vmap`` (or ``task_chunk`` map) per
    family, each family's task axis sharded over the mesh, and combines their meta-gradients
    into one meta-update, all in one jitted meta-step. The combined meta-gradient is the mean
    over every (unmasked) task of the mixture, so each family weighs in proportion to its
    number of tasks: ``(n_a * mean_a + n_b * mean_b) / (n_a + n_b)``. Metrics are reported for
    the whole mixture and per family (``meta_loss/<label>``, ...).

    A mixture is not itself a :class:`TaskFamily` (no single ``sample`` can draw tasks of
    several shapes); it is what ``MetaTrainer`` accepts in place of one.

    Args:
        components: ``((family, num_tasks), ...)``, at least one, ``num_tasks >= 1`` each.

    Example:
        >>> import jax
        >>> import learned_opt as lo
        >>> mixture = lo.tasks.Mixture(((lo.tasks.Quadratic(dim=3), 2), (lo.tasks.MLP(), 2)))
        >>> mixture.num_tasks, mixture.labels
        (4, ('quadratic', 'mlp'))
        >>> trainer = lo.MetaTrainer(lo.LearnedRule(), mixture,
        ...                          lo.TruncatedBackprop(unroll_length=2, horizon=4))
        >>> state, metrics = trainer.step(trainer.init(jax.random.key(0)))
        >>> [s.params.shape if i == 0 else len(s.params) for i, s in
        ...  enumerate(state.estimator_state)]  # quadratic (2, 3); MLP: a list of 2 layers
        [(2, 3), 2]
        >>> sorted(k for k in metrics if k.startswith("meta_loss"))
        ['meta_loss', 'meta_loss/mlp', 'meta_loss/quadratic']
    """

    components: tuple[tuple[TaskFamily, int], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.components, list | tuple) or not self.components:
            raise TypeError(
                f"components: expected a non-empty sequence of (family, num_tasks) pairs, "
                f"got {self.components!r}"
            )
        components = []
        for i, pair in enumerate(self.components):
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise TypeError(
                    f"components[{i}]: expected a (family, num_tasks) pair, got {pair!r}"
                )
            family, count = pair
            if not isinstance(family, TaskFamily):
                raise TypeError(
                    f"components[{i}]: expected a TaskFamily, got {type(family).__name__}"
                )
            components.append(
                (family, _checks.integer(f"components[{i}] num_tasks", count, minimum=1))
            )
        object.__setattr__(self, "components", tuple(components))

    @property
    def families(self) -> tuple[TaskFamily, ...]:
        """The task families, in order."""
        return tuple(family for family, _ in self.components)

    @property
    def counts(self) -> tuple[int, ...]:
        """Tasks of each family per meta-step."""
        return tuple(count for _, count in self.components)

    @property
    def num_tasks(self) -> int:
        """Tasks per meta-step, over all families."""
        return sum(self.counts)

    @property
    def labels(self) -> tuple[str, ...]:
        """A name per family for metrics: its ``name``, with ``_<index>`` where names repeat."""
        names = [family.name for family in self.families]
        repeated = {name for name, n in Counter(names).items() if n > 1}
        return tuple(f"{n}_{i}" if n in repeated else n for i, n in enumerate(names))

    def config(self) -> dict[str, Any]:
        """The families' configurations and task counts as plain values."""
        return {
            "name": "mixture",
            "components": [
                {"family": family.config(), "num_tasks": count} for family, count in self.components
            ],
        }
