"""Shared by the few-shot benchmarks: machine description, intervals, RESULTS.md sections."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from _common import (  # noqa: F401 (re-exported)
    TITLE,
    command_line,
    emit_json,
    peak_rss_mib,
    time_calls,
    write_section,
    xla_memory,
)
from _common import machine as machine_info  # noqa: F401 (re-exported)

from learned_opt import fewshot


def machine_line(machine: dict[str, Any]) -> str:
    """One markdown line describing ``machine_info()`` (``_common.machine()``)."""
    load = ", ".join(f"{x:.1f}" for x in machine["load_average"])
    return (
        f"Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, backend "
        f"{machine['backend']} ({', '.join(machine['jax_devices'])}), "
        f"jax {machine['jax_version']}, "
        f"Python {machine['python']}; load average at start {load} (the CPU is shared, so "
        "timings are noisy)."
    )


def mean_ci95(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of its 95% normal interval (1.96 standard errors) along ``axis``."""
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    return values.mean(axis), 1.96 * values.std(axis, ddof=1) / np.sqrt(n)


def train(
    learner: fewshot.FewShotLearner,
    state: fewshot.FewShotState,
    sample: Callable[[jax.Array], fewshot.Episodes],
    key: jax.Array,
    iterations: int,
    chunk: int,
    log: Callable[[str], None],
    name: str,
) -> tuple[fewshot.FewShotState, list[float], float]:
    """Meta-trains in compiled chunks; returns the state, the mean loss per chunk and seconds."""
    start, curve, done = time.perf_counter(), [], 0
    while done < iterations:
        n = min(chunk, iterations - done)
        state, losses = fewshot.fit(learner, state, sample, jax.random.fold_in(key, done), n)
        curve.append(float(losses.mean()))
        done += n
        log(f"{name}: {done}/{iterations} iterations, train loss {curve[-1]:.3f}")
    return state, curve, time.perf_counter() - start
