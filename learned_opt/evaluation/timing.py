"""Wall-clock of jitted calls: the one timing loop of the evaluation harness and benchmarks."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import optax

if TYPE_CHECKING:
    from learned_opt.tasks.base import TaskFamily


class Timing(NamedTuple):
    """Seconds of each timed call, and the minor page faults per call.

    Attributes:
        seconds: wall-clock of each call, until its outputs were ready.
        page_faults: minor page faults per call (first touches of newly allocated memory).
    """

    seconds: tuple[float, ...]
    page_faults: int

    @property
    def median(self) -> float:
        """The median of :attr:`seconds`."""
        return statistics.median(self.seconds)


def time_calls(
    call: Callable[[], Any],
    repeats: int,
    min_time: float = 0.0,
    max_calls: int = 500,
    warmup: int = 0,
) -> Timing:
    """Times ``call()`` (blocking on its outputs) at least ``repeats`` times.

    Fast calls repeat until ``min_time`` seconds have passed, at most ``max_calls`` times.
    The first ``warmup`` calls (e.g. the one that compiles) are not timed.

    Raises:
        ValueError: if ``repeats`` < 1.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.evaluation import time_calls
        >>> f, x = jax.jit(jnp.sin), jnp.ones(8)
        >>> timing = time_calls(lambda: f(x), repeats=3, warmup=1)
        >>> len(timing.seconds), timing.median > 0
        (3, True)
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    for _ in range(warmup):
        jax.block_until_ready(call())
    times: list[float] = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_calls):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return Timing(tuple(times), faults // len(times))


def step_seconds(
    family: TaskFamily,
    tx: optax.GradientTransformation,
    key: jax.Array,
    repeats: int = 20,
) -> float:
    """Median wall-clock of one jitted training step on the task of ``key``.

    A step is what a user pays per iteration: the loss and gradient on one minibatch,
    ``tx.update`` (the loss passed as ``value=``) and ``optax.apply_updates``, the state fed
    back. Compilation and one warm-up call are not timed.

    Example:
        >>> import jax, optax
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import step_seconds
        >>> step_seconds(lo.tasks.Quadratic(), optax.adam(1e-3), jax.random.key(0), repeats=3) > 0
        True
    """
    tx = optax.with_extra_args_support(tx)
    k_task, k_init, k_data = jax.random.split(key, 3)
    task_params = family.sample(k_task)
    batch = family.batch(task_params, k_data)
    loss_and_grad = jax.value_and_grad(family.loss, argnums=1)

    @jax.jit
    def step(params, state):
        loss, grads = loss_and_grad(task_params, params, batch)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    carry = [family.init(task_params, k_init)]
    carry.append(tx.init(carry[0]))

    def call():
        carry[:] = step(*carry)
        return carry

    return time_calls(call, repeats, warmup=2).median
