"""Inside the trained Meta-LSTM: its forget and input gates over a training run.

The Meta-LSTM (Ravi & Larochelle 2017) updates every coordinate as
``theta_t = f_t * theta_{t-1} - i_t * grad_t``: the forget gate ``f`` decays the parameter and
the input gate ``i`` is a learned per-coordinate learning rate. Their observation: after
meta-training the forget gate stays close to 1 and the learning rate changes over the run.

This script runs the shipped ``meta_lstm_digits`` optimizer (or ``--weights``) on held-out tasks
of the family it was trained on, records both gates at every step (the optimizer state keeps
them: ``MetaLSTMState.forget`` and ``.input``), and reports their distribution across all
coordinates of all tasks per step: median and 5-95% interval. For scale, it also tunes plain
SGD's learning rate on training tasks of the same family.

Usage:
    python benchmarks/meta_lstm_gates.py --plots-dir benchmarks/figures \
        --results-md benchmarks/RESULTS.md --json-out benchmarks/meta_lstm_gates.json
    python benchmarks/meta_lstm_gates.py --quick

One JSON document goes to stdout (and to ``--json-out``); ``--results-md`` rewrites this
benchmark's section of the file, between ``<!-- meta_lstm_gates:begin -->`` and
``<!-- meta_lstm_gates:end -->``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import learned_opt as lo
from learned_opt import evaluation

BEGIN_MARKER = "<!-- meta_lstm_gates:begin -->"
END_MARKER = "<!-- meta_lstm_gates:end -->"
QUANTILES = (5, 25, 50, 75, 95)


def record_gates(optimizer, meta_params, family, keys: jax.Array, num_steps: int):
    """Trains one task per key; returns losses and gate quantiles per step.

    Returns:
        ``(losses (tasks, steps), forget (len(QUANTILES), steps), input (same))``: the gate
        quantiles pool every coordinate of every task.
    """

    def gates(params, grads, updates, state):  # every coordinate of every layer, flattened
        return tuple(ravel_pytree(g)[0] for g in (state.forget, state.input))

    tx = optimizer.as_optax(meta_params)
    losses, (forget, inputs) = evaluation.trace(family, tx, keys, num_steps, gates)

    def per_step(values):  # (tasks, steps, coords) -> (quantiles, steps)
        steps = np.moveaxis(values, 1, 0).reshape(num_steps, -1)
        return np.percentile(steps, QUANTILES, axis=1)

    return losses, per_step(forget), per_step(inputs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.weights:
        optimizer, meta_params = lo.load(args.weights)
    else:
        optimizer, meta_params = lo.load_pretrained("meta_lstm_digits")
    if not isinstance(optimizer, lo.MetaLSTMOptimizer):
        raise SystemExit(f"--weights: expected a MetaLSTMOptimizer file, got {optimizer}")
    family = lo.tasks.MLP(activation="relu", init_scale=None)  # its training family
    test = evaluation.task_keys(args.seed, args.tasks, "test")
    losses, forget, inputs = record_gates(optimizer, meta_params, family, test, args.steps)
    sgd = evaluation.tune_baseline(
        family, "sgd", evaluation.task_keys(args.seed, args.tune_tasks, "train"), args.steps
    )
    return {
        "machine": {"cpu": common.cpu_model(), "backend": jax.default_backend()},
        "optimizer": optimizer.config(),
        "family": family.config(),
        "tasks": args.tasks,
        "steps": args.steps,
        "quantiles": list(QUANTILES),
        "forget": forget.tolist(),
        "input": inputs.tolist(),
        "median_loss": np.median(losses, axis=0).tolist(),
        "tuned_sgd_lr": sgd.hyperparams["lr"],
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = np.arange(1, result["steps"] + 1)
    for ax, key, title in (
        (axes[0], "forget", "forget gate f"),
        (axes[1], "input", "input gate i (learning rate)"),
    ):
        q = np.asarray(result[key])
        ax.fill_between(steps, q[0], q[4], alpha=0.2, label="5-95%")
        ax.fill_between(steps, q[1], q[3], alpha=0.35, label="25-75%")
        ax.plot(steps, q[2], color="k", lw=1.2, label="median")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].axhline(result["tuned_sgd_lr"], color="r", ls=":", label="tuned SGD lr")
    axes[1].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    axes[2].plot(steps - 1, result["median_loss"], color="k")
    axes[2].set_yscale("log")
    axes[2].set_title("training loss (median)")
    axes[2].set_xlabel("step")
    axes[2].grid(alpha=0.3)
    fig.suptitle(
        f"trained Meta-LSTM on {result['tasks']} held-out digits ReLU-MLP tasks: gate distribution "
        "across all coordinates per step"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(result: dict[str, Any], command: str, figure: Path | None) -> str:
    forget, inputs = np.asarray(result["forget"]), np.asarray(result["input"])
    steps = result["steps"]
    shown = sorted({1, 2, 5, 10, 20, 50, steps // 2, steps} & set(range(1, steps + 1)))
    lines = [
        BEGIN_MARKER,
        "## Inside the trained Meta-LSTM: forget and input gates (benchmarks/meta_lstm_gates.py)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {result['machine']['cpu']}, backend {result['machine']['backend']}. "
        f"The shipped `meta_lstm_digits` optimizer trains {result['tasks']} held-out tasks of "
        "its family (MLP 64-20-10, ReLU, LeCun-normal initialisation, digits) for "
        f"{steps} steps; each cell pools every coordinate of every task at that step: median "
        "[5th, 95th percentile]. Plain SGD's tuned learning rate on the same family is "
        f"{result['tuned_sgd_lr']:.3g}.",
        "",
        "| step | forget gate f | input gate i (learning rate) | median training loss |",
        "|---:|---|---|---:|",
    ]
    for s in shown:
        f, i = forget[:, s - 1], inputs[:, s - 1]
        lines.append(
            f"| {s} | {f[2]:.5f} [{f[0]:.5f}, {f[4]:.5f}] | {i[2]:.3g} [{i[0]:.3g}, {i[4]:.3g}] "
            f"| {result['median_loss'][s - 1]:.3g} |"
        )
    lo_f = float(forget[0].min())
    i_med, i_q25, i_q05 = inputs[2], inputs[1], inputs[0]
    lines += [
        "",
        f"What it shows: the forget gate never drops below {lo_f:.4f} on any step (5th "
        "percentile), so the optimizer barely decays its parameters, as Ravi & Larochelle "
        f"observed. The median learning rate moves from {i_med[0]:.3g} at step 1 to "
        f"{i_med.max():.3g} at its largest (step {int(i_med.argmax()) + 1}) and {i_med[-1]:.3g} "
        "at the last step; below the median the rates fall over the run (25th percentile "
        f"{i_q25[0]:.3g} at step 1, {i_q25[-1]:.3g} at the last step; 5th percentile "
        f"{i_q05[0]:.3g} to {i_q05[-1]:.3g}): a learned, per-coordinate annealing schedule.",
        "",
    ]
    if figure is not None:
        lines += [f"![Meta-LSTM gates](figures/{figure.name})", ""]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, help="a MetaLSTMOptimizer file instead of the shipped")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--tune-tasks", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 tasks, 20 steps")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--plots-dir", type=Path)
    p.add_argument("--results-md", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.tune_tasks, args.steps = 4, 2, 20
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    common.emit_json(result, args.json_out, indent=None)
    figure = None
    if args.plots_dir:
        args.plots_dir.mkdir(parents=True, exist_ok=True)
        figure = args.plots_dir / "meta_lstm_gates.png"
        plot(result, figure)
    if args.results_md:
        command = "python benchmarks/meta_lstm_gates.py " + " ".join(argv or sys.argv[1:])
        common.write_section(
            args.results_md, render_markdown(result, command, figure), BEGIN_MARKER, END_MARKER
        )
    return result


if __name__ == "__main__":
    main()
