"""Inside the trained Meta-LSTM: its forget and input gates over a training run.

The Meta-LSTM (Ravi & Larochelle 2017) updates every coordinate as
``theta_t = f_t * theta_{t-1} - i_t * grad_t``: the forget gate ``f`` decays the parameter and
the input gate ``i`` is a learned per-coordinate learning rate. Their observation: after
meta-training the forget gate stays close to 1 and the learning rate changes over the run.

This script runs the shipped ``meta_lstm_digits`` optimizer (or ``--weights``) on held-out tasks
of the family it was trained on, records both gates at every step (the optimizer state keeps
them: ``MetaLSTMState.forget`` and ``.input``), and reports their distribution across all
coordinates of all tasks per step: median and 5-95% interval. For scale, it also compares the
optimizer with plain SGD tuned on training tasks of the same family (``lo.evaluation.compare``).

Usage:
    python benchmarks/meta_lstm_gates.py --plots-dir benchmarks/figures
    python benchmarks/meta_lstm_gates.py --quick --results-dir /tmp/smoke/results

It writes ``benchmarks/results/meta_lstm_gates.json`` (``--results-dir``); ``python
benchmarks/render.py`` then rewrites its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
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

SECTION = "meta_lstm_gates"
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
    name = "meta_lstm_digits"
    comparison = evaluation.compare(
        family,
        args.steps,
        {name: (optimizer, meta_params)},
        tune_keys=evaluation.task_keys(args.seed, args.tune_tasks, "train"),
        test_keys=test,
        baselines=("sgd",),
        tune_learned=False,
    )
    return {
        "command": common.command_line("benchmarks/meta_lstm_gates.py", args.argv),
        "machine": common.machine(),
        "optimizer": optimizer.config(),
        "family": family.config(),
        "tasks": args.tasks,
        "steps": args.steps,
        "quantiles": list(QUANTILES),
        "forget": forget.tolist(),
        "input": inputs.tolist(),
        "median_loss": np.median(losses, axis=0).tolist(),
        "tuned_sgd_lr": comparison.runs["sgd"].hyperparams["lr"],
        "comparison": comparison.to_dict(),
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


def family_line(family: dict[str, Any]) -> str:
    """``"MLP, hidden layers [20], relu, LeCun-normal initialisation, digits"``."""
    init = "LeCun-normal" if family["init_scale"] is None else f"N(0, {family['init_scale']}²)"
    return (
        f"MLP, hidden layers {family['hidden_sizes']}, {family['activation']}, {init} "
        f"initialisation, {family['dataset']}"
    )


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of this benchmark's section of RESULTS.md."""
    forget, inputs = np.asarray(doc["forget"]), np.asarray(doc["input"])
    steps = doc["steps"]
    shown = sorted({1, 2, 5, 10, 20, 50, steps // 2, steps} & set(range(1, steps + 1)))
    lines = [
        "## Inside the trained Meta-LSTM: forget and input gates (benchmarks/meta_lstm_gates.py)",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"{common.machine_line(doc['machine'])} The shipped `meta_lstm_digits` optimizer trains "
        f"{doc['tasks']} held-out tasks of its family ({family_line(doc['family'])}) for "
        f"{steps} steps; each cell pools every coordinate of every "
        "task at that step: median [5th, 95th percentile]. Plain SGD's tuned learning rate on "
        f"the same family is {doc['tuned_sgd_lr']:.3g}.",
        "",
        "| step | forget gate f | input gate i (learning rate) | median training loss |",
        "|---:|---|---|---:|",
    ]
    for s in shown:
        f, i = forget[:, s - 1], inputs[:, s - 1]
        lines.append(
            f"| {s} | {f[2]:.5f} [{f[0]:.5f}, {f[4]:.5f}] | {i[2]:.3g} [{i[0]:.3g}, {i[4]:.3g}] "
            f"| {doc['median_loss'][s - 1]:.3g} |"
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
    ]
    if doc.get("comparison"):
        c = evaluation.Comparison.from_dict(doc["comparison"])
        ratio = c.ratio("meta_lstm_digits", "sgd")
        lines += [
            "",
            f"Final loss on the same tasks: Meta-LSTM {c.runs['meta_lstm_digits'].cell()}, tuned "
            f"SGD {c.runs['sgd'].cell()}; ratio of medians {ratio.cell()}.",
        ]
    if doc.get("figure"):
        lines += ["", f"![Meta-LSTM gates]({doc['figure']})"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, help="a MetaLSTMOptimizer file instead of the shipped")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--tune-tasks", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 tasks, 20 steps")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--plots-dir", type=Path)
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.quick:
        args.tasks, args.tune_tasks, args.steps = 4, 2, 20
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    doc = run(args)
    if args.plots_dir:
        args.plots_dir.mkdir(parents=True, exist_ok=True)
        figure = args.plots_dir / "meta_lstm_gates.png"
        plot(doc, figure)
        doc["figure"] = os.path.relpath(figure, args.results_dir.parent)
    common.emit_json(doc, args.results_dir / f"{SECTION}.json", indent=None)
    return doc


if __name__ == "__main__":
    main()
