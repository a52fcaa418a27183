"""Meta-trains the generalist LSTM optimizer ``lstm_general`` and selects it on validation tasks.

The recipe (the levers of Celo, Moudgil et al. 2025, on the coordinatewise LSTM of
Andrychowicz et al. 2016):

* the optimizer: a 16-unit one-layer coordinatewise LSTM fed scale-free inputs (momenta at four
  decays and the parameter, each divided by its RMS), whose output corrects Adam's direction
  and sets a bounded per-coordinate step-size factor; it needs no loss, so it works in
  ``tx.update(g, s, p)`` and flax ``TrainState.apply_gradients``;
* the meta-training distribution (:data:`generalization.TRAINING_DISTRIBUTION`): a mixture of
  nine task families on the bundled 8x8 digits (MLPs of 1-3 hidden layers and width 16-128
  with sigmoid, tanh, ReLU and GELU, a small conv net, an autoencoder, least squares and
  logistic regression, an ill-conditioned quadratic), each with random per-tensor
  reparameterisation, loss scale and initialisation scale;
* truncated backprop over unrolls of 20 steps, random horizons of 100-1,000 steps, mean-log
  meta-loss, meta-gradients clipped to norm 1.

Every ``--every`` meta-steps the meta-parameters are scored on the validation problems
(:data:`VALIDATION`: tasks drawn from the ``"validation"`` split, which no benchmark tests on
and no baseline is tuned on) as the mean over problems of log(final loss / tuned Adam's final
loss), each clipped to ±log(100); the best-scoring meta-parameters are written to
``--out`` (atomically, each time the score improves). The history goes to
``benchmarks/results/generalist.json``::

    python benchmarks/train_generalist.py                       # the shipped lstm_general
    python benchmarks/train_generalist.py --seed 1 --meta-steps 200 --out /tmp/g1.msgpack \\
        --results /tmp/g1.json                                  # a shortened run (seeds)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import learned_opt as lo
from learned_opt import evaluation, tasks

#: The optimizer's settings.
OPTIMIZER: dict[str, Any] = {
    "hidden_size": 16,
    "num_layers": 1,
    "preprocess": "omit",
    "use_loss": False,
    "normalized_inputs": True,
    "input_decays": (0.9, 0.5, 0.99, 0.999),
    "rms_decay": 0.999,
    "param_input": True,
    "base_direction": "adam",
    "magnitude_output": "coordinate",
    "magnitude_bound": 5.0,
    "output_scale": 1e-3,
}

#: Validation problems: in the training distribution, on validation-split tasks.
VALIDATION = {
    "mlp_tanh_64x2": (tasks.MLP(hidden_sizes=(64, 64), activation="tanh", init_scale=None), 300),
    "mlp_relu_128": (tasks.MLP(hidden_sizes=(128,), activation="relu", init_scale=None), 300),
    "quadratic_cond1e2": (tasks.ScaledQuadratic(dim=20, log10_condition=2.0), 300),
    "conv_8_16": (tasks.ConvNet(channels=(8, 16)), 200),
}
SUITE = tuple(evaluation.Problem(name, f, steps) for name, (f, steps) in VALIDATION.items())
SEED = 7
ADAM_GRID = tuple(float(x) for x in np.logspace(-4, 0, 9))


def mixture() -> tasks.Mixture:
    """The meta-training distribution: nine augmented families, ten tasks per meta-step."""
    relu: dict[str, Any] = {"activation": "relu", "init_scale": None}
    families = [
        (tasks.MLP(hidden_sizes=(32,), **relu), 2),
        (tasks.MLP(hidden_sizes=(64, 64), activation="tanh", init_scale=None), 1),
        (tasks.MLP(hidden_sizes=(16, 16, 16), activation="gelu", init_scale=None), 1),
        (tasks.MLP(hidden_sizes=(128,), activation="sigmoid"), 1),
        (tasks.ConvNet(channels=(4, 8), batch_size=32), 1),
        (tasks.Autoencoder(hidden_sizes=(32,), bottleneck=8), 1),
        (tasks.Regression("least_squares", num_features=16), 1),
        (tasks.Regression("logistic", num_features=16), 1),
        (tasks.ScaledQuadratic(dim=20, log10_condition=3.0), 1),
    ]

    def augment(family: tasks.TaskFamily) -> tasks.TaskFamily:
        family = tasks.RandomInitScale(family, 0.5)
        return tasks.RandomLossScale(tasks.RandomTensorScaling(family, 2.0), 2.0)

    return tasks.Mixture(tuple((augment(f), n) for f, n in families))


def adam_references(num_tasks: int) -> dict[str, dict[str, float]]:
    """Tuned Adam on each validation problem (tuned on 4 training-split tasks)."""
    return evaluation.adam_references(
        SUITE, seed=SEED, num_tasks=num_tasks, tune_tasks=4, grid=ADAM_GRID
    )


def validate(optimizer, meta_params, adam, num_tasks: int) -> dict[str, float]:
    """Median validation final loss per problem and the clipped mean log ratio to tuned Adam."""
    result = evaluation.score(SUITE, (optimizer, meta_params), adam, seed=SEED, num_tasks=num_tasks)
    out = {name: entry["final"] for name, entry in result["per_problem"].items()}
    return {**out, "score": result["score"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="meta-steps between validations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--meta-lr", type=float, default=3e-3)
    parser.add_argument("--validation-tasks", type=int, default=8)
    parser.add_argument("--out", default="learned_opt/weights/lstm_general.msgpack")
    parser.add_argument("--results", default="benchmarks/results/generalist.json")
    parser.add_argument("--checkpoints", default=None, help="checkpoint dir (resumable)")
    args = parser.parse_args(argv)

    optimizer = lo.LSTMOptimizer(**OPTIMIZER)
    estimator = lo.TruncatedBackprop(20, (100, 1000), "log_mean", task_chunk=1)
    trainer = lo.MetaTrainer(
        optimizer, mixture(), estimator, optax.adam(args.meta_lr), clip_norm=1.0
    )
    start = time.time()
    cpu_start = time.process_time()
    results = Path(args.results)
    previous = json.loads(results.read_text()) if results.exists() else {}
    state = trainer.init(jax.random.key(args.seed))
    restored = bool(args.checkpoints) and Path(args.checkpoints).exists()
    if restored:
        state = trainer.restore_checkpoint(args.checkpoints)
    step = int(state.step)
    adam = previous.get("adam_validation") or adam_references(args.validation_tasks)
    history = [h for h in previous.get("history", []) if h["meta_step"] < step]
    best = min(history, key=lambda h: h["score"]) if history else None
    meta_seconds = previous.get("meta_training_seconds", 0.0) if history else 0.0
    seconds = previous.get("seconds", 0.0) if history else 0.0
    cpu_seconds = previous.get("cpu_seconds", 0.0) if history else 0.0
    segments = [*previous.get("started_at_meta_steps", []), step] if restored else [0]
    while True:
        scores = validate(optimizer, jax.device_get(state.meta_params), adam, args.validation_tasks)
        history.append({"meta_step": int(state.step), **scores})
        print(json.dumps(history[-1]), flush=True)
        if best is None or scores["score"] < best["score"]:
            best = history[-1]
            lo.save(args.out, optimizer, jax.device_get(state.meta_params))
        document = {
            "command": common.command_line("benchmarks/train_generalist.py", argv),
            "machine": common.machine(),
            "optimizer": {k: list(v) if isinstance(v, tuple) else v for k, v in OPTIMIZER.items()},
            "seed": args.seed,
            "meta_steps": args.meta_steps,
            "complete": int(state.step) >= args.meta_steps,
            "started_at_meta_steps": segments,
            "adam_validation": adam,
            "history": history,
            "selected": best,
            "meta_training_seconds": meta_seconds,
            "seconds": seconds + time.time() - start,
            "cpu_seconds": cpu_seconds + time.process_time() - cpu_start,
        }
        common.write_atomic(results, json.dumps(document, indent=1) + "\n")
        if document["complete"]:
            break
        t = time.time()
        target = min(int(state.step) + args.every, args.meta_steps)
        state = trainer.run(
            state,
            target,
            checkpoint_dir=args.checkpoints,
            checkpoint_every=args.every,
            progress=False,
        )
        meta_seconds += time.time() - t


# --- rendering (benchmarks/render.py calls render) ---------------------------------------------


def render(doc: dict) -> str:
    """The Markdown body of the generalist section of RESULTS.md: the validation history."""
    names = list(VALIDATION)
    adam = doc["adam_validation"]
    selected = doc["selected"]["meta_step"]
    lines = [
        "## Meta-training the generalist `lstm_general` (benchmarks/train_generalist.py)",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"{common.machine_line(doc['machine'])} Meta-training "
        f"{doc['meta_training_seconds'] / 60:.0f} min for {doc['meta_steps']:,} meta-steps "
        f"(the whole command, validations included: {doc['seconds'] / 60:.0f} min, "
        f"{doc['cpu_seconds'] / 60:.0f} CPU-minutes); seed {doc['seed']}.",
        "",
        "Validation: median final loss over tasks of the validation split (no benchmark tests "
        "on it, no baseline is tuned on it). Score: the mean over problems of "
        "log(median / tuned Adam's median), each clipped to ±log(100); lower is better, "
        "negative beats tuned Adam on average. The shipped weights are those of the best "
        f"score, meta-step {selected:,}.",
        "",
        "| meta-step | " + " | ".join(f"`{n}`" for n in names) + " | score |",
        "|" + "---|" * (len(names) + 2),
        "| tuned Adam | "
        + " | ".join(f"{adam[n]['final']:.3g} (lr {adam[n]['learning_rate']:.2g})" for n in names)
        + " | 0 |",
    ]
    for h in doc["history"]:
        step = f"**{h['meta_step']:,}**" if h["meta_step"] == selected else f"{h['meta_step']:,}"
        cells = " | ".join(f"{h[n]:.3g}" for n in names)
        lines.append(f"| {step} | {cells} | {h['score']:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
