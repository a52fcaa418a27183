"""Shared by the few-shot benchmarks: machine description, intervals, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from _common import TITLE, cpu_model, emit_json, write_section  # noqa: F401 (re-exported)

from learned_opt import fewshot


def machine_info() -> dict[str, Any]:
    """Where the benchmark ran: CPU, core count, backend, devices and versions."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def machine_line(machine: dict[str, Any]) -> str:
    """One markdown line describing ``machine_info()``."""
    load = ", ".join(f"{x:.1f}" for x in machine["load_average"])
    return (
        f"Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, backend "
        f"{machine['backend']} ({', '.join(machine['jax_devices'])}), "
        f"jax {machine['jax_version']}, "
        f"Python {machine['python']}; load average at start {load} (the CPU is shared, so "
        "timings are noisy)."
    )


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that runs ``script`` (a path) with ``argv`` (default: this process's)."""
    argv = sys.argv[1:] if argv is None else argv
    return "python " + shlex.join([script, *argv])


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
