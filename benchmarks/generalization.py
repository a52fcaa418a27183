"""Generalisation: learned optimizers on problems outside their meta-training distribution.

Every problem lies outside the meta-training distribution of the generalist optimizer (the
distribution is written down in :data:`TRAINING_DISTRIBUTION`; each problem says why it is
outside it): deeper and wider MLPs, a conv net on 28x28 Fashion-MNIST, a character-level
transformer language model, a deep autoencoder, least squares at loss scales 1e-3 and 1e4, a
logistic regression with its loss scaled by 1e3 and a wide one on 512 features, ill-conditioned
quadratics beyond 1e4, a Rosenbrock valley, extreme per-tensor scales, and horizons from 100 to
5,000 steps. No two problems differ only in the scale of their loss (a scale-invariant
optimizer would score the same on both).

Each problem is compared by ``lo.evaluation.compare``, the one protocol of learned vs tuned
baselines, in three parts:

* the baselines (Adam, AdamW with cosine decay, SGD, SGD with momentum, NAG, RMSprop; Adam at
  1e-3 untuned), each tuned on ``--tune-tasks`` training tasks and run on ``--tasks`` held-out
  test tasks (``compare`` with no learned optimizer);
* each learned optimizer (``--optimizers``, default every ``lo.list_pretrained()`` name), as
  shipped and with its step size tuned on the same grid and tuning tasks as Adam's learning
  rate, next to tuned Adam and Adam at 1e-3 on the same test tasks (one ``compare`` per
  optimizer, so its ratios to tuned Adam and their paired bootstrap intervals come from the
  protocol itself; tuned Adam is re-run there, which is cheap, and must reproduce the
  baselines' Adam exactly);
* the untuned rivals (``--rivals``): the tuning-free optimizers of optax at their defaults
  (``evaluation.TUNING_FREE``), each run as given on the same test tasks, and the untrained
  control ``untrained`` (:func:`control`: the generalist's optimizer with its output layer at
  zero, which is Adam), run like a learned optimizer; it must read 1.00x Adam at 1e-3 as
  shipped and 1.00x tuned Adam with its step size tuned. Their ratios to tuned Adam, and each
  learned run's to each tuning-free optimizer, are paired by test task across the
  comparisons (:func:`cross_ratios`).

The steps of all the optimizers of a problem are timed interleaved in one process
(``evaluation.step_timings``: round-robin, 20 rounds, the median per optimizer), and each
ratio to tuned Adam's step comes from the same rounds. On the problems marked for it, the
wall-clock each optimizer needs to reach tuned Adam's final training loss is its number of
steps to get there times that step time.

The baselines' part is cached in the results document: with ``--reuse-baselines`` a problem
whose settings are unchanged keeps its baselines, the learned optimizers that are not re-run
and the rivals it has, so adding an optimizer costs only its own runs (and a new timing of
the problem's steps)::

    nice -n 10 python benchmarks/generalization.py                       # everything (1-2 h)
    python benchmarks/generalization.py --reuse-baselines --optimizers lstm_general
    python benchmarks/generalization.py --resume     # continue an interrupted run
    python benchmarks/generalization.py --quick --results-dir /tmp/gen   # smoke test

The document goes to ``benchmarks/results/generalization.json`` (``--results-dir``);
``python benchmarks/render.py`` renders it into RESULTS.md. MNIST and Fashion-MNIST problems
are skipped, and the skip reported, where the data is not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import ablation

import learned_opt as lo
from learned_opt import evaluation
from learned_opt.tasks import (
    MLP,
    Autoencoder,
    CharTransformer,
    ConvNet,
    RandomTensorScaling,
    Regression,
    Rosenbrock,
    ScaledLoss,
    ScaledQuadratic,
    TaskFamily,
    datasets,
)

SCRIPT = "benchmarks/generalization.py"
SECTION = "generalization"
BASELINES = evaluation.DEFAULT_BASELINES
ADAM_DEFAULT = evaluation.ADAM_DEFAULT
#: The tuning-free optimizers of optax at their defaults (``evaluation.TUNING_FREE``): the
#: rivals of an untuned learned optimizer.
TUNING_FREE = tuple(evaluation.TUNING_FREE)
#: The untrained control: the generalist's optimizer with its output layer at zero (Adam).
CONTROL = "untrained"
CONTROL_LABEL = "untrained (= Adam)"
#: Every optimizer run besides the baselines and the learned ones, cached per problem.
RIVALS = (*TUNING_FREE, CONTROL)
#: Rounds of the interleaved step timing (``--quick``: 5).
TIMING_ROUNDS = 20

#: The meta-training distribution of the generalist optimizer as configured: every problem
#: of this benchmark lies outside it.
TRAINING_DISTRIBUTION = {
    "data": "the bundled 8x8 digits only",
    "mlp": "classifiers with 1-3 hidden layers of width 16-128; sigmoid, tanh, ReLU or GELU",
    "conv": "one conv net with 2 conv layers of 4 and 8 channels, batch 32",
    "autoencoder": "an MLP autoencoder 32-8-32",
    "regression": "least squares and logistic regression on 16 features",
    "quadratic": "an ill-conditioned quadratic of dimension 20, condition number 1e3",
    "augmentation": "per-tensor reparameterisation exp(U[-2, 2]), loss scale exp(U[-2, 2]) "
    "and initialisation scale exp(U[-0.5, 0.5])",
    "horizon": "100 to 1,000 steps (truncations of 20)",
}


class Problem(NamedTuple):
    """One problem of the benchmark.

    Attributes:
        name: identifier (the ``--problems`` value).
        label: what it is, in words.
        family: the task family.
        steps: training steps.
        why: why it lies outside :data:`TRAINING_DISTRIBUTION`.
        time_to_target: report the wall-clock to tuned Adam's final loss.
    """

    name: str
    label: str
    family: TaskFamily
    steps: int
    why: str
    time_to_target: bool = False


def _regression(
    kind: Literal["least_squares", "logistic"], scale: float, **options: Any
) -> TaskFamily:
    """A regression problem of 32 features, 512 examples with feature scales exp(U[-2, 2])."""
    family = Regression(kind, num_features=32, num_examples=512, feature_log_scale=2.0, **options)
    return family if scale == 1.0 else ScaledLoss(family, scale)


def problems() -> list[Problem]:
    """The problems, cheapest model first within each kind; sized for about an hour on 2 cores."""
    relu: dict[str, Any] = {"activation": "relu", "init_scale": None}
    return [
        Problem(
            "mlp_deep",
            "MLP, 8 hidden layers of 16, ReLU, digits",
            MLP(hidden_sizes=(16,) * 8, **relu),
            1000,
            "8 hidden layers (training: 1-3)",
            time_to_target=True,
        ),
        Problem(
            "mlp_wide",
            "MLP, 1 hidden layer of 512, ReLU, digits",
            MLP(hidden_sizes=(512,), **relu),
            100,
            "512 hidden units (training: ≤ 128)",
        ),
        Problem(
            "mlp_fashion",
            "MLP, 1 hidden layer of 32, ReLU, Fashion-MNIST",
            MLP("fashion_mnist", hidden_sizes=(32,), **relu),
            100,
            "28x28 Fashion-MNIST images (training: 8x8 digits)",
        ),
        Problem(
            "mlp_tensor_scaled",
            "MLP 32-32 ReLU on digits, each tensor scaled by exp(U[-5, 5])",
            RandomTensorScaling(MLP(hidden_sizes=(32, 32), **relu), max_log_scale=5.0),
            1000,
            "per-tensor scales up to e^±5 (training: e^±2)",
        ),
        Problem(
            "conv_fashion",
            "conv net, 3 layers of 4-8-8 channels (stride 2), Fashion-MNIST, batch 16",
            ConvNet("fashion_mnist", channels=(4, 8, 8), batch_size=16),
            300,
            "3 conv layers on 28x28 Fashion-MNIST (training: 2 layers on 8x8 digits)",
            time_to_target=True,
        ),
        Problem(
            "char_lm",
            "character transformer LM (1 block, d 32, 2 heads), pydoc text, 8 x 32 characters",
            CharTransformer(d_model=32, num_heads=2, d_ff=64, seq_len=32, batch_size=8),
            300,
            "attention, embeddings and text (training: none of them)",
            time_to_target=True,
        ),
        Problem(
            "autoencoder_deep",
            "autoencoder 64-32-16-4-16-32-64, GELU, digits",
            Autoencoder(hidden_sizes=(32, 16), bottleneck=4, activation="gelu"),
            500,
            "bottleneck of 4 behind 3 hidden layers (training: 32-8-32)",
        ),
        Problem(
            "least_squares_1e4",
            "least squares, 32 features, loss 1e4 at the start",
            _regression("least_squares", 1.0, target_scale=100.0),
            500,
            "loss ~1e4 (training: loss scales within e^±2)",
        ),
        Problem(
            "least_squares_1e-3",
            "least squares, 32 features, loss 1e-3 at the start",
            _regression("least_squares", 1.0, target_scale=0.03),
            500,
            "loss ~1e-3 (training: loss scales within e^±2)",
        ),
        Problem(
            "logistic_1e3",
            "logistic regression, minibatches of 32, loss x 1e3",
            _regression("logistic", 1e3, batch_size=32),
            500,
            "loss ~7e2 (training: loss scales within e^±2)",
        ),
        Problem(
            "logistic_wide",
            "logistic regression, 512 features with scales exp(U[-3, 3]), 1,024 examples, "
            "noisy labels (a third disagree with the true classifier), minibatches of 32",
            Regression(
                "logistic",
                num_features=512,
                num_examples=1024,
                feature_log_scale=3.0,
                batch_size=32,
            ),
            500,
            "512 features (training: 16) with scales up to e^±3",
        ),
        Problem(
            "quadratic_1e6_5000",
            "rotated quadratic, dimension 100, condition 1e6, 5,000 steps",
            ScaledQuadratic(dim=100, log10_condition=6.0),
            5000,
            "condition number 1e6 (training: 1e3) and 5,000 steps (training: ≤ 1,000)",
        ),
        Problem(
            "quadratic_1e5_d500",
            "rotated quadratic, dimension 500, condition 1e5",
            ScaledQuadratic(dim=500, log10_condition=5.0),
            1000,
            "dimension 500 (training: 20) and condition number 1e5 (training: 1e3)",
        ),
        Problem(
            "rosenbrock",
            "Rosenbrock function, 10 dimensions, start U[-2, 2]",
            Rosenbrock(dim=10),
            1000,
            "a curved non-convex valley (training: no such family)",
        ),
    ]


def num_params(family: TaskFamily) -> int:
    """Parameters of one task of ``family``."""
    key = jax.random.key(0)
    params = jax.eval_shape(family.init, jax.eval_shape(family.sample, key), key)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def missing_dataset(family: TaskFamily) -> str | None:
    """The name of a dataset ``family`` needs that is not installed, else ``None``."""
    while hasattr(family, "family"):
        family = family.family
    name = getattr(family, "dataset", None)
    if name is None:
        return None
    try:
        datasets.load_raw(name, "train")
    except FileNotFoundError:
        return name
    return None


# --- wall-clock to target ----------------------------------------------------------------------


def smoothed(curve: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean of ``curve`` over ``window`` steps (fewer at the start); non-finite: +inf."""
    values = np.asarray(curve, np.float64)
    values = np.where(np.isfinite(values), values, np.inf)
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    return np.nanmean(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def steps_to_target(curve: Sequence[float], target: float, window: int) -> int | None:
    """Steps after which the smoothed ``curve`` is first at or below ``target``.

    ``curve[i]`` is the training loss before step ``i``, that is after ``i`` steps.
    """
    below = np.flatnonzero(smoothed(curve, window) <= target)
    return int(below[0]) if below.size else None


def _median_curve(comparison: evaluation.Comparison, name: str) -> tuple[float, ...]:
    """The median training-loss curve of run ``name``; refused if ``comparison`` kept none."""
    curve = comparison.runs[name].curve
    if curve is None:
        raise ValueError(f"run {name!r} kept no curve (compare with keep_curves=True)")
    return curve[1]


def time_to_target(
    comparison: evaluation.Comparison, window: int, target: float | None = None
) -> dict[str, Any]:
    """Steps and seconds each run of ``comparison`` needs to reach tuned Adam's final loss.

    The target is tuned Adam's median training loss at the end, smoothed over ``window`` steps
    (minibatch losses are noisy); a run reaches it at the first step where its own smoothed
    median training loss is at or below it. Seconds are steps times the run's step time
    (``None`` where it was not timed; :func:`add_seconds` fills them in). ``target`` is given
    for a comparison without tuned Adam (a tuning-free rival's): the baselines' target.
    """
    if target is None:
        target = float(smoothed(_median_curve(comparison, "adam"), window)[-1])
    out = {}
    for name, run in comparison.runs.items():
        steps = steps_to_target(_median_curve(comparison, name), target, window)
        seconds = None if steps is None or run.step_seconds is None else steps * run.step_seconds
        out[name] = {"steps": steps, "step_seconds": run.step_seconds, "seconds": seconds}
    return {"target": target, "window": window, "runs": out}


def add_seconds(ttt: dict[str, Any], step_seconds: dict[str, float]) -> None:
    """Sets each run's step time and seconds to target in ``ttt`` from ``step_seconds``."""
    for name, run in ttt["runs"].items():
        seconds = step_seconds.get(name)
        run["step_seconds"] = seconds
        run["seconds"] = None if run["steps"] is None or seconds is None else run["steps"] * seconds


# --- the untuned rivals and the control --------------------------------------------------------


def control() -> tuple[lo.LSTMOptimizer, Any]:
    """The untrained control: the generalist's optimizer (``train_generalist.OPTIMIZER``, its
    direction normalised per tensor to Adam's step, ``update_norm="adam"``) with its output
    layer's weights and bias at zero, which makes it exactly Adam at its built-in step size."""
    optimizer = ablation.optimizer_of("adam")
    return optimizer, ablation.zeroed(optimizer.init(jax.random.key(0)))


def rival(name: str) -> evaluation.Learned:
    """The optimizer ``name`` of :data:`RIVALS`, as ``compare`` takes it."""
    return control() if name == CONTROL else evaluation.TUNING_FREE[name]()


def transformations(
    entry: dict[str, Any], optimizers: dict[str, Any]
) -> dict[str, optax.GradientTransformation]:
    """Every optimizer that ran on the problem of ``entry``, as it ran: the tuned baselines,
    Adam at 1e-3, each learned optimizer as shipped and with its tuned step size, the rivals
    and the control. ``optimizers`` holds loaded learned optimizers; others are loaded."""
    baselines = evaluation.Comparison.from_dict(entry["baselines"])
    txs: dict[str, optax.GradientTransformation] = {}
    for name, run in baselines.runs.items():
        if run.kind == "baseline":
            tuned = evaluation.TunedBaseline(
                name, run.hyperparams, {}, run.at_edge, baselines.num_steps
            )
            txs[name] = tuned.transformation()
    txs[ADAM_DEFAULT] = optax.adam(1e-3)
    for name, data in [*entry["learned"].items(), *entry.get("rivals", {}).items()]:
        c = evaluation.Comparison.from_dict(data)
        if name in evaluation.TUNING_FREE:
            txs[name] = evaluation.TUNING_FREE[name]()
            continue
        pair = control() if name == CONTROL else optimizers.get(name) or lo.load_pretrained(name)
        optimizer, meta_params = pair
        for run_name in c.learned_names():
            run = c.runs[run_name]
            txs[run_name] = (
                optimizer.as_optax(meta_params)
                if run.kind == "learned"
                else evaluation.scaled_learned(optimizer, meta_params, run.hyperparams["lr"])
            )
    return txs


def _runs_of(comparisons: dict[str, Any]) -> dict[str, evaluation.Run]:
    """The learned runs (as given and with tuned step sizes) of stored comparisons."""
    out = {}
    for data in comparisons.values():
        c = evaluation.Comparison.from_dict(data)
        out.update({n: c.runs[n] for n in c.learned_names()})
    return out


def cross_ratios(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Paired ratios across the comparisons of one problem (they share its test tasks): Adam
    at 1e-3, each rival and the control to tuned Adam and to Adam at 1e-3, and each learned run
    to each tuning-free optimizer."""
    base = evaluation.Comparison.from_dict(entry["baselines"])
    learned, rivals = _runs_of(entry["learned"]), _runs_of(entry.get("rivals", {}))
    runs = {**base.runs, **learned, **rivals}
    pairs = [(ADAM_DEFAULT, "adam")]
    pairs += [(name, ref) for name in rivals for ref in ("adam", ADAM_DEFAULT)]
    pairs += [(name, ref) for name in learned for ref in rivals if ref in TUNING_FREE]
    ratios = []
    for name, ref in pairs:
        interval = evaluation.paired_ratio_interval(
            runs[name].final, runs[ref].final, base.confidence_level
        )
        ratios.append(evaluation.Ratio(name, ref, *interval).to_dict())
    return ratios


def time_steps(
    problem: Problem,
    entry: dict[str, Any],
    optimizers: dict[str, Any],
    test_keys: jax.Array,
    rounds: int,
) -> dict[str, Any]:
    """Times the steps of every optimizer of the problem interleaved, in the same rounds.

    Returns:
        ``{"rounds": ..., "seconds": {name: median}, "vs_adam": {name: ratio}}``: each ratio
        is the median over rounds of the step's seconds over tuned Adam's in the same round.
    """
    txs = transformations(entry, optimizers)
    timings = evaluation.step_timings(problem.family, txs, test_keys[0], rounds)
    return {
        "rounds": rounds,
        "seconds": {name: t.median for name, t in timings.items()},
        "vs_adam": {name: t.ratio(timings["adam"]) for name, t in timings.items()},
    }


# --- running -----------------------------------------------------------------------------------


def settings_of(problem: Problem, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """What a problem's results depend on: cached baselines are reused only if it is equal."""
    return {
        "family": problem.family.config(),
        "steps": steps,
        "seed": args.seed,
        "tasks": args.tasks,
        "tune_tasks": args.tune_tasks,
        "grid": list(args.grid),
        "baselines": list(BASELINES),
    }


def _stripped(comparison: evaluation.Comparison) -> dict[str, Any]:
    """The comparison as JSON, without the per-step curves."""
    runs = {name: run._replace(curve=None) for name, run in comparison.runs.items()}
    return dataclasses.replace(comparison, runs=runs).to_dict()


def run_problem(
    problem: Problem,
    args: argparse.Namespace,
    optimizers: dict[str, Any],
    previous: dict[str, Any] | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Runs one problem: its baselines (or reuses them), each learned optimizer, the rivals
    and the control that are not cached yet, their ratios and the interleaved step timing."""
    steps = problem.steps if not args.quick else max(10, problem.steps // 50)
    settings = settings_of(problem, steps, args)
    keys: dict[str, Any] = {
        "tune_keys": evaluation.task_keys(args.seed, args.tune_tasks, "train"),
        "test_keys": evaluation.task_keys(args.seed, args.tasks, "test"),
    }
    options: dict[str, Any] = {"grid": args.grid, "keep_curves": problem.time_to_target}
    window = max(1, steps // 20)
    entry: dict[str, Any] = {
        "name": problem.name,
        "label": problem.label,
        "why": problem.why,
        "steps": steps,
        "params": num_params(problem.family),
        "settings": settings,
    }
    reused = (
        previous
        if (args.reuse_baselines or args.resume)
        and previous is not None
        and previous["settings"] == settings
        else None
    )
    reuse = reused is not None
    if reused is not None:
        log(f"{problem.name}: reusing the baselines of the previous run")
        cached = ("baselines", "baselines_seconds", "time_to_target", "adam_reproduced")
        for key in (*cached, "ratios", "step_times"):
            if key in reused:
                entry[key] = reused[key]
        for key in ("learned", "learned_seconds", "rivals", "rivals_seconds"):
            entry[key] = dict(reused.get(key, {}))
    else:
        t0 = time.perf_counter()
        comparison = evaluation.compare(
            problem.family, steps, {}, baselines=BASELINES, **keys, **options
        )
        entry["baselines"] = _stripped(comparison)
        entry["baselines_seconds"] = time.perf_counter() - t0
        entry["learned"], entry["learned_seconds"] = {}, {}
        entry["rivals"], entry["rivals_seconds"] = {}, {}
        if problem.time_to_target:
            entry["time_to_target"] = time_to_target(comparison, window)
        adam = comparison.runs["adam"]
        log(
            f"{problem.name}: baselines in {entry['baselines_seconds']:.0f} s; tuned Adam "
            f"{adam.median:.4g} (lr {adam.hyperparams['lr']:.0e})"
        )
    baseline_adam = evaluation.Comparison.from_dict(entry["baselines"]).runs["adam"]
    jobs = []
    for name, learned in optimizers.items():
        if args.resume and reuse and name in entry["learned"]:
            log(f"{problem.name}: {name} already done")
        else:
            jobs.append(("learned", name, learned))
    jobs += [("rivals", n, rival(n)) for n in args.rivals if n not in entry["rivals"]]
    for part, name, optimizer in jobs:
        t0 = time.perf_counter()
        tuning_free = name in evaluation.TUNING_FREE
        comparison = evaluation.compare(
            problem.family,
            steps,
            {name: optimizer},
            baselines=() if tuning_free else ("adam",),
            references=(ADAM_DEFAULT,) if tuning_free else ("adam", ADAM_DEFAULT),
            tune_learned=args.tune_learned,
            **keys,
            **options,
        )
        entry[part][name] = _stripped(comparison)
        entry[f"{part}_seconds"][name] = time.perf_counter() - t0
        if not tuning_free:
            entry.setdefault("adam_reproduced", {})[name] = (
                comparison.runs["adam"].final == baseline_adam.final
            )
        if problem.time_to_target:
            runs = entry["time_to_target"]["runs"]
            ttt = time_to_target(comparison, window, entry["time_to_target"]["target"])
            runs.update({n: v for n, v in ttt["runs"].items() if n in comparison.learned_names()})
        log(
            f"{problem.name}: {name} in {entry[f'{part}_seconds'][name]:.0f} s; median "
            f"{comparison.runs[name].median:.4g} (tuned Adam {baseline_adam.median:.4g})"
        )
    if jobs or "ratios" not in entry:
        entry["ratios"] = cross_ratios(entry)
    if jobs or "step_times" not in entry:
        rounds = 5 if args.quick else TIMING_ROUNDS
        entry["step_times"] = time_steps(problem, entry, optimizers, keys["test_keys"], rounds)
        log(
            f"{problem.name}: step time of tuned Adam {entry['step_times']['seconds']['adam']:.2g}"
            f" s; every optimizer's step timed in the same {rounds} rounds"
        )
        if "time_to_target" in entry:
            add_seconds(entry["time_to_target"], entry["step_times"]["seconds"])
    return entry


def load_optimizers(names: list[str]) -> dict[str, Any]:
    """``{name: (optimizer, meta_params)}`` of the shipped optimizers ``names``."""
    return {name: lo.load_pretrained(name) for name in names}


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Runs the benchmark and returns its results document.

    The document is rewritten after every problem (marked incomplete until the last), so an
    interrupted run continues with ``--resume``.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    path = args.results_dir / f"{SECTION}.json"
    keep = args.reuse_baselines or args.resume or args.problems
    previous_doc = json.loads(path.read_text()) if keep and path.exists() else None
    previous = {p["name"]: p for p in (previous_doc or {}).get("problems", [])}
    optimizers = load_optimizers(args.optimizers)
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []

    def document(complete: bool) -> dict[str, Any]:
        doc = {
            "command": common.command_line(SCRIPT, args.argv),
            "machine": common.machine(),
            "settings": {
                "seed": args.seed,
                "tasks": args.tasks,
                "tune_tasks": args.tune_tasks,
                "grid": list(args.grid),
                "baselines": list(BASELINES),
                "tune_learned": args.tune_learned,
                "rivals": list(args.rivals),
                "quick": args.quick,
            },
            "training_distribution": TRAINING_DISTRIBUTION,
            "optimizers": sorted({n for e in entries for n in e["learned"]}, key=_optimizer_order),
            "problems": entries,
            "skipped": skipped,
            "complete": complete,
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - cpu0,
        }
        if previous_doc is not None:
            doc["previous_command"] = previous_doc["command"]
        return doc

    for problem in problems():
        if args.problems and problem.name not in args.problems:
            if problem.name in previous:  # kept as it was
                entries.append(previous[problem.name])
            continue
        if (missing := missing_dataset(problem.family)) is not None:
            skipped.append(f"{problem.name}: dataset {missing!r} is not installed")
            log(f"{problem.name}: skipped, {missing} is not installed")
            continue
        entries.append(run_problem(problem, args, optimizers, previous.get(problem.name), log))
        common.write_atomic(path, json.dumps(document(complete=False), indent=2) + "\n")
    return document(complete=True)


def _optimizer_order(name: str) -> tuple[int, str]:
    shipped = lo.list_pretrained()
    return (shipped.index(name) if name in shipped else len(shipped), name)


# --- rendering (benchmarks/render.py calls render) ---------------------------------------------


def _learned(entry: dict[str, Any], optimizer: str) -> evaluation.Comparison | None:
    """The comparison of ``optimizer`` on the problem of ``entry``, if it ran there."""
    data = entry["learned"].get(optimizer)
    return None if data is None else evaluation.Comparison.from_dict(data)


def _cross(entry: dict[str, Any]) -> dict[tuple[str, str], evaluation.Ratio]:
    """The ratios across the comparisons of ``entry`` (:func:`cross_ratios`), by pair."""
    ratios = (evaluation.Ratio.from_dict(r) for r in entry.get("ratios", []))
    return {(r.learned, r.baseline): r for r in ratios}


def _step_ratio(entry: dict[str, Any], name: str) -> float | None:
    """Run ``name``'s step time over tuned Adam's, from the interleaved timing of ``entry``;
    documents that predate it: from the comparison that ran it (timed separately)."""
    if "step_times" in entry:
        return entry["step_times"]["vs_adam"].get(name)
    c = _learned(entry, name.removesuffix(evaluation.TUNED_SUFFIX))
    return None if c is None or name not in c.runs else c.step_ratio(name)


def rival_runs(doc: dict[str, Any]) -> list[str]:
    """The runs of the rivals and the control present in the document, in :data:`RIVALS`
    order (the control as shipped, then with its tuned step size)."""
    present = {
        run
        for entry in doc["problems"]
        for data in entry.get("rivals", {}).values()
        for run in evaluation.Comparison.from_dict(data).learned_names()
    }
    order = [*TUNING_FREE, CONTROL, CONTROL + evaluation.TUNED_SUFFIX]
    return [name for name in order if name in present]


def _baseline_adam(entry: dict[str, Any]) -> evaluation.Run:
    return evaluation.Comparison.from_dict(entry["baselines"]).runs["adam"]


def _label(run_name: str) -> str:
    return run_name.replace(CONTROL, CONTROL_LABEL, 1) if run_name.startswith(CONTROL) else run_name


def learned_runs(doc: dict[str, Any]) -> list[str]:
    """Every learned run of the document: each optimizer as shipped, then with a tuned step
    size where that ran."""
    names = []
    for name in doc["optimizers"]:
        names.append(name)
        tuned = name + evaluation.TUNED_SUFFIX
        if any(tuned in e["learned"].get(name, {}).get("runs", {}) for e in doc["problems"]):
            names.append(tuned)
    return names


def summary(doc: dict[str, Any]) -> list[str]:
    """One line per learned run: wins, ties and losses against tuned Adam, worst ratio,
    against Adam at 1e-3, non-finite runs and step cost, all counted from the document."""
    lines = []
    for run_name in learned_runs(doc):
        optimizer = run_name.removesuffix(evaluation.TUNED_SUFFIX)
        verdicts, default_wins, nonfinite, total, step_ratios = [], 0, 0, 0, []
        worst: tuple[float, str] | None = None
        rival_wins: dict[str, list[bool]] = {}
        for entry in doc["problems"]:
            c = _learned(entry, optimizer)
            if c is None or run_name not in c.runs:
                continue
            ratio = c.ratio(run_name, "adam")
            verdicts.append(ratio.verdict)
            if worst is None or ratio.ratio > worst[0]:
                worst = (ratio.ratio, entry["name"])
            default_wins += c.ratio(run_name, ADAM_DEFAULT).verdict == "win"
            nonfinite += c.runs[run_name].nonfinite
            total += c.num_tasks
            if (step := _step_ratio(entry, run_name)) is not None:
                step_ratios.append(step)
            for (name, ref), r in _cross(entry).items():
                if name == run_name and ref in TUNING_FREE:
                    rival_wins.setdefault(ref, []).append(r.verdict == "win")
        n = len(verdicts)
        if worst is None:  # no problem has a result of this run
            continue
        wins, losses = verdicts.count("win"), verdicts.count("loss")
        step_time = f"{statistics.median(step_ratios):.2g}x" if step_ratios else "—"
        rivals = ""
        if rival_wins and run_name == optimizer:
            counts = ", ".join(f"`{r}` {sum(w)} of {len(w)}" for r, w in rival_wins.items())
            rivals = f"; beats each tuning-free optimizer at its defaults on: {counts}"
        lines.append(
            f"- `{run_name}`: beats tuned Adam on **{wins} of {n}** problems (interval below 1), "
            f"loses on {losses}, ties on {n - wins - losses}; worst ratio to tuned Adam "
            f"{_fmt(worst[0])}x ({worst[1]}), never worse than 1.5x: "
            f"{'yes' if worst[0] <= 1.5 else 'no'}; beats Adam at 1e-3 on {default_wins} of {n}"
            f"{rivals}; non-finite runs: {nonfinite} of {total}; "
            f"median step time {step_time} Adam's."
        )
    return lines


def rivals_summary(doc: dict[str, Any]) -> list[str]:
    """One line per rival and for the control, counted from the document's ratios: against
    tuned Adam and Adam at 1e-3; the control must read 1.00x (as shipped against Adam at 1e-3,
    with its step size tuned against tuned Adam)."""
    lines = []
    for run_name in rival_runs(doc):
        ratios = [c for e in doc["problems"] if (c := _cross(e)) and (run_name, "adam") in c]
        n = len(ratios)
        if run_name.startswith(CONTROL):
            reference = ADAM_DEFAULT if run_name == CONTROL else "adam"
            values = [c[run_name, reference].ratio for c in ratios]
            exact = sum(abs(v - 1.0) < 0.005 for v in values)
            what = "Adam at 1e-3" if run_name == CONTROL else "tuned Adam"
            lines.append(
                f"- control `{_label(run_name)}`: reads 1.00x {what} on **{exact} of {n}** "
                f"problems (ratios {_fmt(min(values))}x to {_fmt(max(values))}x); the harness "
                "is fair where it does."
            )
            continue
        verdicts = [c[run_name, "adam"].verdict for c in ratios]
        default_wins = sum(c[run_name, ADAM_DEFAULT].verdict == "win" for c in ratios)
        wins, losses = verdicts.count("win"), verdicts.count("loss")
        lines.append(
            f"- `{run_name}` (tuning-free, at its defaults): beats tuned Adam on {wins} of {n} "
            f"problems, loses on {losses}; beats Adam at 1e-3 on {default_wins} of {n}."
        )
    return lines


def rivals_table(doc: dict[str, Any]) -> list[str]:
    """Per problem: Adam at 1e-3, each tuning-free optimizer and the control over tuned Adam."""
    names = rival_runs(doc)
    rows = []
    for entry in doc["problems"]:
        cross = _cross(entry)
        row = [f"`{entry['name']}`", _fmt(_baseline_adam(entry).median, ".4g")]
        for name in [ADAM_DEFAULT, *names]:
            r = cross.get((name, "adam"))
            row.append("not run" if r is None else f"{_fmt(r.ratio)}x {r.verdict}")
        rows.append(row)
    header = ["problem", "tuned Adam", *[f"`{_label(n)}`" for n in [ADAM_DEFAULT, *names]]]
    return _table(header, rows)


def step_time_table(doc: dict[str, Any]) -> list[str]:
    """Per optimizer: its step time over tuned Adam's, median and range over the problems."""
    entries = [e for e in doc["problems"] if "step_times" in e]
    names = [*BASELINES, ADAM_DEFAULT, *learned_runs(doc), *rival_runs(doc)]
    rows = []
    for name in names:
        ratios = [
            e["step_times"]["vs_adam"][name] for e in entries if name in e["step_times"]["vs_adam"]
        ]
        if ratios:
            rows.append(
                [
                    f"`{_label(name)}`",
                    f"{statistics.median(ratios):.2f}x",
                    f"{min(ratios):.2f}x to {max(ratios):.2f}x",
                    str(len(ratios)),
                ]
            )
    return _table(["optimizer", "step time / tuned Adam's", "range", "problems"], rows)


def render_card(doc: dict[str, Any], optimizer: str) -> str:
    """The generalisation block of ``optimizer``'s model card: its summary lines and table."""
    runs = (optimizer, optimizer + evaluation.TUNED_SUFFIX)
    lines = [line for line in summary(doc) if line.startswith(tuple(f"- `{r}`:" for r in runs))]
    return "\n".join(
        [
            f"On the generalisation benchmark (`{doc['command']}`, "
            f"{len(doc['problems'])} problems outside the training distribution; "
            "[`benchmarks/RESULTS.md`](../benchmarks/RESULTS.md)):",
            "",
            *lines,
            "",
            *learned_table(doc, optimizer),
        ]
    )


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None:
        return "—"
    return "inf" if math.isinf(x) else format(x, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _seconds(entry: dict[str, Any]) -> float:
    """Wall-clock spent on one problem: its baselines, every learned optimizer and rival."""
    learned = sum(entry["learned_seconds"].values())
    return (
        entry.get("baselines_seconds", 0.0)
        + learned
        + sum(entry.get("rivals_seconds", {}).values())
    )


def problems_table(doc: dict[str, Any]) -> list[str]:
    """The problems: what each is, its size, why it is out of distribution and its cost."""
    rows = []
    for entry in doc["problems"]:
        seconds = _seconds(entry)
        rows.append(
            [
                f"`{entry['name']}`",
                entry["label"],
                f"{entry['steps']:,}",
                f"{entry['params']:,}",
                entry["why"],
                f"{seconds / 60:.1f}",
            ]
        )
    header = ["problem", "what", "steps", "parameters", "outside the training distribution"]
    return _table([*header, "minutes"], rows)


def learned_table(doc: dict[str, Any], optimizer: str) -> list[str]:
    """Per problem: tuned Adam, the optimizer as shipped and with its step size tuned."""
    tuned = optimizer + evaluation.TUNED_SUFFIX
    with_tuned = tuned in learned_runs(doc)
    header = ["problem", "tuned Adam", "as shipped", "/ tuned Adam", "/ Adam 1e-3"]
    if with_tuned:
        header += ["tuned step size", "/ tuned Adam"]
    tuning_free = [n for n in rival_runs(doc) if n in TUNING_FREE]
    if tuning_free:
        header += ["beats tuning-free"]
    header += ["non-finite", "step vs Adam"]
    rows = []
    for entry in doc["problems"]:
        c = _learned(entry, optimizer)
        if c is None:
            continue
        run = c.runs[optimizer]
        row = [
            f"`{entry['name']}`",
            _fmt(c.runs["adam"].median, ".4g"),
            _fmt(run.median, ".4g"),
            c.ratio(optimizer, "adam").cell(),
            c.ratio(optimizer, ADAM_DEFAULT).cell(),
        ]
        nonfinite = str(run.nonfinite)
        if with_tuned and tuned in c.runs:
            t = c.runs[tuned]
            row += [
                f"{_fmt(t.median, '.4g')} ({t.hyperparams_cell()})",
                c.ratio(tuned, "adam").cell(),
            ]
            nonfinite += f" / {t.nonfinite}"
        elif with_tuned:
            row += ["—", "—"]
        if tuning_free:
            cross = _cross(entry)
            verdicts = [
                r.verdict for (n, ref), r in cross.items() if n == optimizer and ref in TUNING_FREE
            ]
            row.append(f"{verdicts.count('win')} of {len(verdicts)}" if verdicts else "not run")
        row += [nonfinite, f"{_fmt(_step_ratio(entry, optimizer), '.2f')}x"]
        rows.append(row)
    return _table(header, rows)


def baselines_table(doc: dict[str, Any]) -> list[str]:
    """Per problem: every tuned baseline's median final loss and hyperparameters."""
    names = [*BASELINES, ADAM_DEFAULT]
    rows = []
    for entry in doc["problems"]:
        c = evaluation.Comparison.from_dict(entry["baselines"])
        row = [f"`{entry['name']}`"]
        for name in names:
            run = c.runs[name]
            cell = f"{_fmt(run.median, '.4g')} ({run.hyperparams_cell()})"
            row.append(f"**{cell}**" if name == c.best_baseline else cell)
        row.append(str(sum(c.runs[n].nonfinite for n in names)))
        rows.append(row)
    return _table(["problem", *[f"`{n}`" for n in names], "non-finite"], rows)


def time_to_target_table(doc: dict[str, Any]) -> list[str]:
    """Seconds (and steps) each optimizer needs to reach tuned Adam's final training loss."""
    entries = [e for e in doc["problems"] if "time_to_target" in e]
    if not entries:
        return []
    names = [*BASELINES, ADAM_DEFAULT, *learned_runs(doc), *rival_runs(doc)]
    rows = []
    for entry in entries:
        ttt = entry["time_to_target"]
        row = [f"`{entry['name']}`", _fmt(ttt["target"], ".4g")]
        for name in names:
            r = ttt["runs"].get(name)
            if r is None:
                row.append("—")
            elif r["steps"] is None:
                row.append("not reached")
            else:
                row.append(f"{_fmt(r['seconds'], '.2g')} s ({r['steps']})")
        rows.append(row)
    return _table(["problem", "target", *[f"`{_label(n)}`" for n in names]], rows)


def protocol(doc: dict[str, Any]) -> str:
    """The protocol paragraph, from the settings and the first comparison."""
    s = doc["settings"]
    c = evaluation.Comparison.from_dict(doc["problems"][0]["baselines"])
    momentum = sorted({m for g in c.extra_grids.values() for m in g.get("momentum", ())})
    learned = "as shipped"
    if any(n.endswith(evaluation.TUNED_SUFFIX) for n in learned_runs(doc)):
        learned += " and with its step size tuned on the same grid and tuning tasks as Adam's"
    rivals = [n for n in rival_runs(doc) if n in TUNING_FREE]
    if rivals:
        learned += (
            "; the tuning-free optimizers of optax ("
            + ", ".join(f"`{n}`" for n in rivals)
            + ") at their defaults, untuned"
        )
    if CONTROL in rival_runs(doc):
        learned += (
            f"; the control `{CONTROL_LABEL}`, the generalist's optimizer untrained (its "
            "output layer at zero, which is Adam exactly), run like a learned optimizer"
        )
    timing = (
        "Step time: median wall-clock of one jitted training step (loss, gradient, update) on "
        "the first test task."
    )
    rounds = {e["step_times"]["rounds"] for e in doc["problems"] if "step_times" in e}
    if rounds:
        timing = (
            "Step time: one jitted training step (loss, gradient, update) on the first test "
            "task; the steps of all the optimizers of a problem are timed round-robin in one "
            f"process ({'/'.join(str(r) for r in sorted(rounds))} rounds), each optimizer's "
            "ratio to tuned Adam the median over rounds of its step over Adam's in the same "
            "round."
        )
    return (
        f"Protocol (`lo.evaluation.compare`): every baseline is tuned per problem on "
        f"{s['tune_tasks']} training tasks, learning rate over {c.grid[0]:g} … {c.grid[-1]:g} "
        f"({len(c.grid)} log-spaced values), momentum over {momentum} for SGD with momentum and "
        f"NAG, AdamW decaying to 0 by a cosine with weight decay {c.adamw_weight_decay:g}; Adam "
        f"at 1e-3 untuned; each learned optimizer {learned}. Every optimizer trains the same "
        f"{s['tasks']} held-out test tasks (disjoint from the tuning tasks). Final loss: the "
        "family's `eval_loss` after the last step (median over the test tasks; a non-finite run "
        "counts as +inf). Ratios: learned median over tuned Adam's with a paired bootstrap "
        f"{100 * c.confidence_level:g}% interval over the test tasks; *win*/*loss* only where "
        f"it excludes 1. {timing}"
    )


def _not_in_step(doc: dict[str, Any]) -> str:
    """One line naming the benchmark's problems this document lacks (not run, not skipped)
    and its problems no longer in the benchmark; empty if there are none."""
    ran = {e["name"] for e in doc["problems"]}
    skipped = {s.split(":")[0] for s in doc["skipped"]}
    current = [p.name for p in problems()]
    missing = [n for n in current if n not in ran | skipped]
    retired = [n for n in ran if n not in current]
    parts = []
    if missing:
        parts.append("not run in this document: " + ", ".join(f"`{n}`" for n in missing))
    if retired:
        parts.append("no longer in the benchmark: " + ", ".join(f"`{n}`" for n in retired))
    return ("Problems " + "; ".join(parts) + ".") if parts else ""


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of the generalisation section of RESULTS.md."""
    compute = sum(_seconds(e) for e in doc["problems"])
    reused = ""
    if "previous_command" in doc:
        reused = f" (results of `{doc['previous_command']}` reused where unchanged)"
    lines = [
        "## Generalisation: problems outside the meta-training distribution "
        "(benchmarks/generalization.py)",
        "",
        f"Command: `{doc['command']}`{reused}",
        "",
        f"{common.machine_line(doc['machine'])} Wall-clock {compute / 60:.0f} min over all "
        f"problems (this command: {doc['seconds'] / 60:.0f} min, "
        f"{doc.get('cpu_seconds', 0.0) / 60:.0f} CPU-minutes, load average "
        f"{doc['machine'].get('load_average', ['?'])[0]} at its start).",
        "",
    ]
    if not doc.get("complete", True):
        lines += [
            f"**Incomplete run: {len(doc['problems'])} problems so far** (continue it with "
            "`--resume`).",
            "",
        ]
    if doc["settings"].get("quick"):
        lines += ["**`--quick` smoke run: shrunk settings, not benchmark figures.**", ""]
    if not doc["problems"]:
        return "\n".join([*lines, "No problem ran: " + "; ".join(doc["skipped"]) + "."])
    dist = "; ".join(f"{k}: {v}" for k, v in doc["training_distribution"].items())
    lines += [
        f"The meta-training distribution these problems lie outside: {dist}.",
        "",
        protocol(doc),
        "",
        "**Summary** (counted from the tables below):",
        "",
        *summary(doc),
        *rivals_summary(doc),
        "",
        "**Problems** (minutes: this run's time for the problem, baselines, learned "
        "optimizers, rivals and the control together):",
        "",
        *problems_table(doc),
    ]
    for optimizer in doc["optimizers"]:
        lines += [
            "",
            f"**`{optimizer}`** (median final loss; ratios with their interval and verdict; "
            "non-finite: test runs as shipped / with the tuned step size):",
            "",
            *learned_table(doc, optimizer),
        ]
    if rival_runs(doc):
        lines += [
            "",
            "**Untuned rivals and the control** (each run's median final loss over tuned "
            "Adam's, with the verdict of its paired interval; the tuning-free optimizers at "
            f"their defaults; `{CONTROL_LABEL}` must read 1.00x Adam at 1e-3 as shipped and "
            "1.00x tuned Adam with its step size tuned):",
            "",
            *rivals_table(doc),
        ]
    else:
        lines += ["", "No tuning-free optimizer or untrained control in this document."]
    lines += [
        "",
        "**Tuned baselines** (median final loss and the tuned hyperparameters; bold: the best "
        "tuned baseline; `*`: a learning rate at the edge of the grid):",
        "",
        *baselines_table(doc),
    ]
    if ttt := time_to_target_table(doc):
        window = "; ".join(
            f"{e['name']}: {e['time_to_target']['window']}"
            for e in doc["problems"]
            if "time_to_target" in e
        )
        lines += [
            "",
            "**Wall-clock to tuned Adam's final loss**: seconds (steps) until an optimizer's "
            "median training loss, averaged over a trailing window of steps "
            f"({window}), is at or below tuned Adam's at the end of the run; the steps times "
            "that optimizer's measured step time, so its own step cost is included.",
            "",
            *ttt,
        ]
    if any("step_times" in e for e in doc["problems"]):
        lines += [
            "",
            "**Step time** over tuned Adam's (timed in the same rounds; median and range over "
            "the problems):",
            "",
            *step_time_table(doc),
        ]
    if doc["skipped"]:
        lines += ["", "Skipped (data not installed): " + "; ".join(doc["skipped"]) + "."]
    if line := _not_in_step(doc):
        lines += ["", line]
    reproduced = [
        f"{e['name']}/{n}"
        for e in doc["problems"]
        for n, ok in e.get("adam_reproduced", {}).items()
        if not ok
    ]
    if reproduced:
        lines += ["", "Tuned Adam was not reproduced exactly in: " + ", ".join(reproduced) + "."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    shipped = lo.list_pretrained()
    names = [p.name for p in problems()]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--optimizers",
        nargs="*",
        choices=shipped,
        default=shipped,
        help="shipped learned optimizers to evaluate (default: all; none: only the baselines)",
    )
    p.add_argument("--problems", nargs="+", choices=names, help="run only these problems")
    p.add_argument(
        "--rivals",
        nargs="*",
        choices=RIVALS,
        default=list(RIVALS),
        help="tuning-free optimizers and the untrained control to run where the document does "
        f"not have them yet (default: all; none: none; {CONTROL!r} is the control)",
    )
    p.add_argument(
        "--reuse-baselines",
        action="store_true",
        help="keep the baselines (and other optimizers) of the existing results "
        "document for problems whose settings are unchanged",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="like --reuse-baselines, and also keep the requested optimizers' results where the "
        "document has them (continues an interrupted run)",
    )
    p.add_argument("--tasks", type=int, default=8, help="held-out test tasks per problem")
    p.add_argument("--tune-tasks", type=int, default=3, help="training tasks for tuning")
    p.add_argument(
        "--no-tune-learned",
        dest="tune_learned",
        action="store_false",
        help="do not also run each learned optimizer with its step size tuned",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 3 tasks, 1/50 of the steps, 4 learning rates",
    )
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    if args.tasks < 5 and not args.quick:
        p.error("--tasks: the benchmark needs at least 5 test tasks per problem")
    args.argv = sys.argv[1:] if argv is None else argv
    args.grid = evaluation.DEFAULT_GRID
    if args.quick:
        args.tasks, args.tune_tasks, args.grid = 3, 2, (1e-3, 1e-2, 1e-1, 1.0)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    doc = run(args, log)
    common.emit_json(doc, args.results_dir / f"{SECTION}.json")
    return doc


if __name__ == "__main__":
    main()
