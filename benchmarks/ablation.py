"""The generalist's ablation: one recipe variant per run, scored on a validation suite.

Each run meta-trains one variant of the generalist's recipe (``benchmarks/train_generalist.py``:
its mixture, estimator and optimizer, with the variant's changes), scores it on
:data:`SUITE` every ``RECIPE["every"]`` meta-steps at its built-in step size, keeps the best-scoring
meta-parameters, then scores those once more with the step size tuned per problem like Adam's
learning rate. The result (variant, seed, options, meta-training minutes, both scores and the
per-problem numbers) is appended to ``benchmarks/results/ablation.json`` whether it helped or
not; ``render.py`` renders the table.

:data:`SUITE` holds eight problems outside the meta-training distribution and different from
every problem of the generalisation benchmark and of the L2L grid: other architectures,
datasets, scales and horizons. Tuned Adam's references are computed once and cached in the
results document. The control ``adam`` is the untrained optimizer with its learned outputs at
zero, which is Adam exactly: with its step size tuned it must score 0 (1.00x tuned Adam).

Runs are resumable: meta-training checkpoints go to ``--checkpoints`` (outside the work tree;
default ``~/.cache/learned_opt/ablation``), and rerunning the same command continues::

    nice -n 5 python benchmarks/ablation.py adam                   # the control (and references)
    nice -n 5 python benchmarks/ablation.py adam_norm_bounded --seed 1   # one variant, one seed
    nice -n 5 python benchmarks/ablation.py --all   # the published plan, skipping finished runs
    python benchmarks/ablation.py --list                           # the variants
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import train_generalist as generalist

import learned_opt as lo
from learned_opt import evaluation, tasks
from learned_opt.meta.checkpoint import steps as checkpoint_steps

SCRIPT = "benchmarks/ablation.py"
SECTION = "ablation"

#: The validation suite: outside the meta-training distribution (8x8 digits, MLPs of 1-3 layers,
#: one small conv net, a 32-8-32 autoencoder, 16-feature regressions, a rotated quadratic of 20
#: dimensions, 100-1,000 steps) and unlike the generalisation benchmark's and the L2L grid's.
SUITE = (
    evaluation.Problem(
        "mlp_tanh_fashion_24x2",
        tasks.MLP("fashion_mnist", hidden_sizes=(24, 24), activation="tanh", init_scale=None),
        200,
        "Fashion-MNIST, 2 x 24 tanh",
    ),
    evaluation.Problem(
        "mlp_gelu_5x32",
        tasks.MLP(hidden_sizes=(32,) * 5, activation="gelu", init_scale=None),
        500,
        "5 hidden GELU layers",
    ),
    evaluation.Problem(
        "conv_8_16_16",
        tasks.ConvNet(channels=(8, 16, 16), batch_size=32),
        200,
        "3 conv layers of 8-16-16 channels",
    ),
    evaluation.Problem(
        "autoencoder_tanh_wide",
        tasks.Autoencoder(hidden_sizes=(128,), bottleneck=32, activation="tanh"),
        300,
        "tanh autoencoder 64-128-32-128-64 on digits",
    ),
    evaluation.Problem(
        "char_lm_2x16",
        tasks.CharTransformer(num_layers=2, d_model=16, num_heads=2, seq_len=16, batch_size=8),
        300,
        "2-block character transformer",
    ),
    evaluation.Problem(
        "sinusoid_mlp",
        tasks.Sinusoid(hidden_sizes=(40, 40)),
        500,
        "sine regression with an MLP",
    ),
    evaluation.Problem(
        "logistic_128",
        tasks.Regression("logistic", num_features=128, num_examples=1024, feature_log_scale=1.5),
        300,
        "logistic regression on 128 features",
    ),
    evaluation.Problem(
        "noisy_least_squares_64",
        tasks.Regression(
            "least_squares", num_features=64, num_examples=1024, noise_std=0.5, batch_size=16
        ),
        500,
        "least squares on 64 features from minibatches of 16",
    ),
)
SUITE_SETTINGS = {"seed": 0, "num_tasks": 6, "tune_tasks": 2}
GRID = tuple(float(x) for x in np.logspace(-4, 1, 11))

#: Each variant: changes to the generalist's optimizer (``optimizer``) and recipe (``recipe``).
VARIANTS: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": {"update_norm": "adam"}, "untrained": True},
    "shipped_recipe": {"optimizer": {}},
    "adam_norm_bounded": {"optimizer": {"update_norm": "adam", "correction_bound": 1.0}},
    "adam_norm_bounded_no_magnitude": {
        "optimizer": {"update_norm": "adam", "correction_bound": 1.0, "magnitude_output": "none"}
    },
    "adam_lr1e-2": {"optimizer": {"update_norm": "adam", "output_scale": 1e-2}, "untrained": True},
    "adam_norm_bounded_lr1e-2": {
        "optimizer": {"update_norm": "adam", "correction_bound": 1.0, "output_scale": 1e-2}
    },
    "adam_norm_bounded_no_magnitude_lr1e-2": {
        "optimizer": {
            "update_norm": "adam",
            "correction_bound": 1.0,
            "magnitude_output": "none",
            "output_scale": 1e-2,
        }
    },
}
RECIPE = {
    "meta_steps": 300,
    "every": 150,
    "meta_lr": 3e-3,
    "truncation": 20,
    "horizon": [100, 1000],
}


class Setup(NamedTuple):
    """What a run is measured with: the suite, its scoring tasks and the meta-training recipe."""

    suite: tuple[evaluation.Problem, ...]
    settings: dict[str, int]
    recipe: dict[str, Any]
    mixture: Callable[[], tasks.Mixture]


def _small_mixture() -> tasks.Mixture:
    """Two of the generalist's families, for the smoke test."""
    components = generalist.mixture().components
    return tasks.Mixture((components[0], components[6]))


FULL = Setup(SUITE, SUITE_SETTINGS, RECIPE, generalist.mixture)
#: The smoke test's setup: two small problems, two tasks, two meta-steps.
QUICK = Setup(
    tuple(p._replace(steps=10) for p in SUITE if p.name in ("mlp_gelu_5x32", "logistic_128")),
    {"seed": 0, "num_tasks": 2, "tune_tasks": 1},
    {**RECIPE, "meta_steps": 2, "every": 1, "horizon": [20, 40], "truncation": 10},
    _small_mixture,
)
#: The published runs, in the order they were run: ``--all`` runs those not yet in the results.
PLAN = (
    ("adam", 0),
    ("adam_norm_bounded", 0),
    ("shipped_recipe", 0),
    ("adam_norm_bounded", 1),
    ("shipped_recipe", 1),
    ("adam_norm_bounded_lr1e-2", 0),
    ("adam_lr1e-2", 0),
    ("adam_norm_bounded_no_magnitude", 0),
    ("adam_norm_bounded_lr1e-2", 1),
    ("adam_norm_bounded_no_magnitude", 1),
    ("adam_norm_bounded_no_magnitude_lr1e-2", 0),
    ("adam_norm_bounded_no_magnitude_lr1e-2", 1),
)


def optimizer_of(variant: str) -> lo.LSTMOptimizer:
    """The variant's optimizer: the generalist's settings with the variant's changes."""
    return lo.LSTMOptimizer(**{**generalist.OPTIMIZER, **VARIANTS[variant]["optimizer"]})


def zeroed(meta_params: Any) -> Any:
    """The meta-parameters with the output layer at zero: the learned outputs are 0."""
    return {**meta_params, "out": jax.tree.map(np.zeros_like, meta_params["out"])}


def references(document: dict[str, Any], setup: Setup) -> dict[str, dict[str, float]]:
    """Tuned Adam on the suite, from the document's cache when its settings are unchanged."""
    settings = {**setup.settings, "grid": list(GRID), "problems": [p.name for p in setup.suite]}
    cached = document.get("references")
    if cached and cached.get("settings") == settings:
        return cached["adam"]
    adam = evaluation.adam_references(
        setup.suite,
        seed=setup.settings["seed"],
        num_tasks=setup.settings["num_tasks"],
        tune_tasks=setup.settings["tune_tasks"],
        grid=GRID,
    )
    document["references"] = {"settings": settings, "adam": adam}
    return adam


def window(adam_lr: float, builtin: float) -> tuple[float, ...]:
    """Step sizes tried when tuning: half-decades within a decade of tuned Adam's, and the
    optimizer's built-in step size (a third of the full grid's cost; the control, which is Adam,
    still finds Adam's learning rate)."""
    return tuple(sorted({adam_lr * 10 ** (k / 2) for k in range(-2, 3)} | {builtin}))


def suite_score(setup: Setup, optimizer, meta_params, adam, tuned: bool) -> dict[str, Any]:
    """The suite's score at the built-in step size, or with the step size tuned per problem."""
    per_problem: dict[str, Any] = {}
    for problem in setup.suite:
        reference = adam[problem.name]
        result = evaluation.score(
            (problem,),
            (optimizer, meta_params),
            {problem.name: reference},
            seed=setup.settings["seed"],
            num_tasks=setup.settings["num_tasks"],
            tune_tasks=setup.settings["tune_tasks"] if tuned else None,
            grid=window(reference["learning_rate"], optimizer.output_scale),
        )
        per_problem.update(result["per_problem"])
    score = float(np.mean([e["log_ratio"] for e in per_problem.values()]))
    return {"score": score, "per_problem": per_problem}


def meta_train(setup, variant, optimizer, seed, adam, checkpoints: Path, log) -> dict[str, Any]:
    """Meta-trains ``variant``, scoring every ``every`` steps; returns the run's record."""
    recipe = {**setup.recipe, **VARIANTS[variant].get("recipe", {})}
    estimator = lo.TruncatedBackprop(
        recipe["truncation"], tuple(recipe["horizon"]), "log_mean", task_chunk=1
    )
    trainer = lo.MetaTrainer(
        optimizer,
        setup.mixture(),
        estimator,
        optax.adam(recipe["meta_lr"]),
        clip_norm=1.0,
    )
    progress = checkpoints / "progress.json"
    record = json.loads(progress.read_text()) if progress.exists() else {"history": []}
    state = trainer.init(jax.random.key(seed))
    if checkpoint_steps(checkpoints):
        state = trainer.restore_checkpoint(checkpoints)
    record["history"] = [h for h in record["history"] if h["meta_step"] <= int(state.step)]
    minutes = record.get("meta_training_minutes", 0.0)
    while True:
        step = int(state.step)
        if step > 0 and not any(h["meta_step"] == step for h in record["history"]):
            meta_params = jax.device_get(state.meta_params)
            value = suite_score(setup, optimizer, meta_params, adam, False)["score"]
            log(f"{variant} seed {seed}: meta-step {step}, score {value:+.3f}")
            if all(value < h["score"] for h in record["history"]):
                lo.save(checkpoints / "best.msgpack", optimizer, meta_params)
            record["history"].append({"meta_step": step, "score": value})
        record["meta_training_minutes"] = minutes
        common.write_atomic(progress, json.dumps(record))
        if step >= recipe["meta_steps"]:
            break
        start = time.time()
        target = min(step + recipe["every"], recipe["meta_steps"])
        state = trainer.run(
            state,
            target,
            checkpoint_dir=checkpoints,
            checkpoint_every=recipe["every"],
            progress=False,
        )
        minutes += (time.time() - start) / 60
    record["recipe"] = recipe
    return record


def run(
    setup: Setup, variant: str, seed: int, checkpoints: Path, results: Path, argv
) -> dict[str, Any]:
    """Runs one variant at one seed end to end and appends its entry to ``results``."""
    document = json.loads(results.read_text()) if results.exists() else {"runs": []}
    wall, cpu = time.time(), time.process_time()
    adam = references(document, setup)
    common.write_atomic(results, json.dumps(document, indent=1) + "\n")
    optimizer = optimizer_of(variant)
    entry: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "optimizer": VARIANTS[variant]["optimizer"],
        "recipe_changes": VARIANTS[variant].get("recipe", {}),
        "command": common.command_line(SCRIPT, argv),
    }
    if VARIANTS[variant].get("untrained"):
        meta_params = zeroed(optimizer.init(jax.random.key(seed)))
        entry.update(meta_steps=0, selected_meta_step=0, meta_training_minutes=0.0, history=[])
    else:
        folder = checkpoints / f"{variant}-seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        record = meta_train(setup, variant, optimizer, seed, adam, folder, print)
        best = min(record["history"], key=lambda h: h["score"])
        _, meta_params = lo.load(folder / "best.msgpack")
        entry.update(
            recipe=record["recipe"],
            meta_steps=record["recipe"]["meta_steps"],
            selected_meta_step=best["meta_step"],
            meta_training_minutes=record["meta_training_minutes"],
            history=record["history"],
        )
    untuned = suite_score(setup, optimizer, meta_params, adam, tuned=False)
    print(f"{variant} seed {seed}: scored untuned at {time.time() - wall:.0f} s", flush=True)
    tuned = suite_score(setup, optimizer, meta_params, adam, tuned=True)
    print(f"{variant} seed {seed}: scored tuned at {time.time() - wall:.0f} s", flush=True)
    entry.update(
        score=untuned["score"],
        tuned_score=tuned["score"],
        per_problem={"untuned": untuned["per_problem"], "tuned": tuned["per_problem"]},
        seconds=time.time() - wall,
        cpu_seconds=time.process_time() - cpu,
        load_average=os.getloadavg()[0],
        machine=common.machine(),
    )
    document = json.loads(results.read_text()) if results.exists() else document
    document["runs"] = [
        r for r in document.get("runs", []) if (r["variant"], r["seed"]) != (variant, seed)
    ] + [entry]
    document.update(command=common.command_line(SCRIPT, ["--all"]), machine=entry["machine"])
    common.write_atomic(results, json.dumps(document, indent=1) + "\n")
    print(json.dumps({k: entry[k] for k in ("variant", "seed", "score", "tuned_score")}))
    return entry


# --- rendering (benchmarks/render.py calls render) ---------------------------------------------


def _variant_rows(
    by_variant: dict[str, list[dict[str, Any]]],
    names: list[str],
    part: str,
    score_key: str,
    with_count: bool,
) -> list[str]:
    """One table row per variant: its mean score and, per problem, the ratio of medians to tuned
    Adam (the mean over seeds of the log ratios, as a ratio)."""
    rows = []
    for variant, group in by_variant.items():
        cells = []
        for n in names:
            logs = [r["per_problem"][part][n]["log_ratio"] for r in group]
            cells.append(f"{float(np.exp(np.mean(logs))):.2f}x")
        mean = float(np.mean([r[score_key] for r in group]))
        label = f"`{variant}` (n = {len(group)})" if with_count else f"`{variant}`"
        rows.append(f"| {label} | {mean:+.3f} | " + " | ".join(cells) + " |")
    return rows


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of the ablation section of RESULTS.md."""
    order = {run: i for i, run in enumerate(PLAN)}
    runs = sorted(doc["runs"], key=lambda r: order.get((r["variant"], r["seed"]), len(PLAN)))
    names = doc["references"]["settings"]["problems"]
    adam = doc["references"]["adam"]
    lines = [
        "## The generalist's ablation (benchmarks/ablation.py)",
        "",
        "Each variant of the generalist's recipe (`benchmarks/train_generalist.py`: its mixture, "
        "truncated backprop and optimizer, with the variant's changes) is meta-trained for "
        "the meta-steps shown, scored every 150 meta-steps on the validation suite below at its "
        "built-in step size, and the best-scoring meta-parameters are scored again with the step "
        "size tuned per problem like Adam's learning rate (on training-split tasks, over the "
        "half-decades within a decade of tuned Adam's learning rate and the built-in step "
        "size). Score: the "
        "mean over the suite's 8 problems of log(median final loss / tuned Adam's), each clipped "
        "to ±log(100), on 6 validation-split tasks per problem; lower is better, 0 is tuned "
        "Adam, and the control `adam` (the untrained optimizer, which is Adam) must read 0 "
        "tuned. Every run is kept, whether it helped or not. A trained variant's checkpoint is "
        "chosen on the same suite and tasks that score it (of 2 candidates, meta-steps 150 and "
        "300), so its scores lean optimistic; the controls have no such choice.",
        "",
        "| variant | seed | changes | meta-steps (selected) | meta-training min | "
        "score (built-in step) | score (tuned step) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        changed = {**r["optimizer"], **r.get("recipe_changes", {})}
        changes = ", ".join(f"{k}={v}" for k, v in changed.items()) or "none"
        lines.append(
            f"| `{r['variant']}` | {r['seed']} | {changes} | {r['meta_steps']} "
            f"({r['selected_meta_step']}) | {r['meta_training_minutes']:.1f} | "
            f"{r['score']:+.3f} | {r['tuned_score']:+.3f} |"
        )
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    lines += [
        "",
        "Per problem, the ratio of medians to tuned Adam with the step size tuned (mean of the "
        "log ratios over seeds, as a ratio); tuned Adam's learning rate and median in the first "
        "row:",
        "",
        "| variant | mean score | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|" + "---|" * (len(names) + 2),
        "| tuned Adam | 0 | "
        + " | ".join(f"{adam[n]['final']:.3g} (lr {adam[n]['learning_rate']:.2g})" for n in names)
        + " |",
    ]
    lines += _variant_rows(by_variant, names, "tuned", "tuned_score", with_count=True)
    rival_runs = doc.get("rivals", {})
    lines += [
        "",
        "Untuned, each at its built-in step size, against the optimizers a user who does not "
        "want to tune would pick (Adam at 1e-3 and optax's tuning-free optimizers at their "
        "defaults; `schedule_free_adamw` is scored at its training iterate), ratio of medians to "
        "tuned Adam:",
        "",
        "| optimizer | score | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|" + "---|" * (len(names) + 2),
    ]
    lines += _variant_rows(by_variant, names, "untuned", "score", with_count=False)
    for name, r in rival_runs.items():
        cells = [f"{float(np.exp(r['per_problem'][n]['log_ratio'])):.2f}x" for n in names]
        lines.append(f"| {name} | {r['score']:+.3f} | " + " | ".join(cells) + " |")
    machines = {common.machine_line(r["machine"]) for r in runs}
    loads = [r["load_average"] for r in runs]
    lines += [
        "",
        " ".join(sorted(machines))
        + f" Load average at the end of each run: {min(loads):.1f}-{max(loads):.1f} on 2 "
        "cores (other work ran beside them, so minutes are upper bounds).",
    ]
    return "\n".join(lines) + "\n"


def rivals(setup: Setup, results: Path, argv) -> None:
    """Scores the untuned rivals on the suite: Adam at 1e-3 and each tuning-free optimizer."""
    document = json.loads(results.read_text()) if results.exists() else {"runs": []}
    adam = references(document, setup)
    named = {"adam (1e-3)": lambda: optax.adam(1e-3), **evaluation.TUNING_FREE}
    document["rivals"] = {
        name: evaluation.score(
            setup.suite,
            make(),
            adam,
            seed=setup.settings["seed"],
            num_tasks=setup.settings["num_tasks"],
        )
        for name, make in named.items()
    }
    document["rivals_command"] = common.command_line(SCRIPT, argv)
    common.write_atomic(results, json.dumps(document, indent=1) + "\n")
    print(json.dumps({name: r["score"] for name, r in document["rivals"].items()}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?", choices=sorted(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print the variants and stop")
    parser.add_argument(
        "--rivals",
        action="store_true",
        help="score Adam at 1e-3 and the tuning-free optimizers instead of a variant",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=Path.home() / ".cache" / "learned_opt" / "ablation",
        help="folder of the resumable meta-training checkpoints",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="run the rivals and every run of PLAN not yet in the results, one at a time",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{SECTION}.json")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    if args.all:
        document = json.loads(args.results.read_text()) if args.results.exists() else {}
        if "rivals" not in document:
            rivals(setup, args.results, argv)
        done = {(r["variant"], r["seed"]) for r in document.get("runs", [])}
        plan = PLAN[:2] if args.quick else PLAN
        for variant, seed in plan:
            if (variant, seed) not in done:
                run(setup, variant, seed, args.checkpoints, args.results, argv)
        return
    if args.rivals:
        rivals(setup, args.results, argv)
        return
    if args.list or args.variant is None:
        print(json.dumps(VARIANTS, indent=1))
        return
    run(setup, args.variant, args.seed, args.checkpoints, args.results, argv)


if __name__ == "__main__":
    main()
