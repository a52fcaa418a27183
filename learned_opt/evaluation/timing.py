"""Wall-clock of jitted calls: the one timing loop of the evaluation harness and benchmarks."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Mapping
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

    def ratio(self, reference: Timing) -> float:
        """The median over rounds of this call's seconds over ``reference``'s in the same round.

        Both timings must come from the same :func:`time_interleaved` (one entry per round), so
        that each ratio compares two calls made moments apart, under the same load.

        Raises:
            ValueError: if the two timings have different numbers of calls.
        """
        if len(self.seconds) != len(reference.seconds):
            raise ValueError(
                f"reference: expected {len(self.seconds)} timed calls (one per round), got "
                f"{len(reference.seconds)}"
            )
        return statistics.median(
            a / b for a, b in zip(self.seconds, reference.seconds, strict=True)
        )


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
    faults = _page_faults()
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_calls):
        times.append(_timed(call, time.perf_counter))
    return Timing(tuple(times), (_page_faults() - faults) // len(times))


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    rounds: int,
    warmup: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Times several calls round-robin: each round calls every one once.

    Timing each call in its own loop lets the machine's load change between them (the same
    Adam step measured 0.54 ms in one run and 3.57 ms in another); interleaved, every call sees
    the same conditions, so ratios (:meth:`Timing.ratio`) compare like with like. Round ``r``
    starts with call ``r`` (modulo their number) and goes on in order, so no call is always
    the one after the slowest or the first of a round. Every call is first made ``warmup``
    times (e.g. to compile), untimed, before the first round.

    Args:
        calls: the calls by name; each is blocked on (its outputs ready) before the clock stops.
        rounds: rounds of calls; each call's :class:`Timing` has one entry per round.
        warmup: untimed calls of each before the rounds.
        clock: seconds, monotonic (a fake one in tests).

    Returns:
        ``{name: Timing}`` in the order of ``calls``.

    Raises:
        ValueError: if ``rounds`` < 1.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.evaluation import time_interleaved
        >>> sin, cos, x = jax.jit(jnp.sin), jax.jit(jnp.cos), jnp.ones(64)
        >>> calls = {"sin": lambda: sin(x), "cos": lambda: cos(x)}
        >>> timings = time_interleaved(calls, rounds=3, warmup=1)
        >>> [len(t.seconds) for t in timings.values()], timings["sin"].ratio(timings["cos"]) > 0
        ([3, 3], True)
    """
    if rounds < 1:
        raise ValueError(f"rounds: expected at least 1, got {rounds}")
    if not calls:
        raise ValueError("calls: expected at least one call to time, got none")
    for call in calls.values():
        for _ in range(warmup):
            jax.block_until_ready(call())
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    faults = dict.fromkeys(names, 0)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            before = _page_faults()
            times[name].append(_timed(calls[name], clock))
            faults[name] += _page_faults() - before
    return {name: Timing(tuple(times[name]), faults[name] // rounds) for name in calls}


def _timed(call: Callable[[], Any], clock: Callable[[], float]) -> float:
    """Seconds of one call of ``call``, until its outputs are ready."""
    t0 = clock()
    jax.block_until_ready(call())
    return clock() - t0


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


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
    return time_calls(_step_call(family, tx, key), repeats, warmup=2).median


def step_timings(
    family: TaskFamily,
    txs: Mapping[str, optax.GradientTransformation],
    key: jax.Array,
    rounds: int = 20,
) -> dict[str, Timing]:
    """Interleaved timings of one jitted training step of each of ``txs`` on the task of ``key``.

    The step is :func:`step_seconds`'s; the steps of all the optimizers are timed round-robin
    (:func:`time_interleaved`, ``rounds`` rounds, compilation and one warm-up call untimed), so
    their ratios (:meth:`Timing.ratio`) come from the same rounds.

    Example:
        >>> import jax, optax
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import step_timings
        >>> txs = {"adam": optax.adam(1e-3), "sgd": optax.sgd(1e-2)}
        >>> t = step_timings(lo.tasks.Quadratic(), txs, jax.random.key(0), rounds=3)
        >>> t["sgd"].ratio(t["adam"]) > 0
        True
    """
    calls = {name: _step_call(family, tx, key) for name, tx in txs.items()}
    return time_interleaved(calls, rounds, warmup=2)


def _step_call(
    family: TaskFamily, tx: optax.GradientTransformation, key: jax.Array
) -> Callable[[], Any]:
    """A call that makes one jitted training step with ``tx``, the state fed back."""
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

    return call
