"""The protocol of learned vs tuned hand-designed optimizers on held-out tasks: :func:`compare`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

import jax
import numpy as np
import optax

from learned_opt import _checks
from learned_opt.evaluation import baselines as _baselines
from learned_opt.evaluation import runs as _runs
from learned_opt.evaluation import stats as _stats
from learned_opt.evaluation import timing as _timing

if TYPE_CHECKING:
    from learned_opt.optimizers.base import LearnedOptimizer
    from learned_opt.tasks.base import TaskFamily

PyTree = Any

#: ``"learned"``: as given (its built-in step size); ``"learned_tuned_lr"``: its step size
#: tuned; ``"baseline"``: a tuned hand-designed optimizer; ``"default"``: Adam at 1e-3.
Kind = Literal["learned", "learned_tuned_lr", "baseline", "default"]

#: The baselines :func:`compare` tunes by default.
DEFAULT_BASELINES = ("adam", "adamw_cosine", "sgd", "momentum", "nag", "rmsprop")
#: Name of the untuned Adam run (learning rate 1e-3) of every comparison.
ADAM_DEFAULT = "adam (1e-3)"
#: Appended to a learned optimizer's name for its run with a tuned step size.
TUNED_SUFFIX = " (tuned lr)"

#: A learned optimizer to compare: ``(optimizer, meta_params)``, or a ready transformation.
Learned: TypeAlias = "tuple[LearnedOptimizer, PyTree] | optax.GradientTransformation"


def _enc(x: float) -> float | str:
    """A JSON value: +inf (a run that did not stay finite) becomes the string ``"inf"``."""
    return "inf" if math.isinf(x) else float(x)


def _dec(x: float | str) -> float:
    return math.inf if x == "inf" else float(x)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None:
        return "—"
    return "inf" if math.isinf(x) else format(x, spec)


class Run(NamedTuple):
    """One optimizer's results on the test tasks of a :class:`Comparison`.

    Attributes:
        kind: what the run is (see :data:`Kind`).
        final: the final loss of every test task, in the order of the test keys; +inf for a
            run that did not stay finite. Empty only in results converted from files that
            predate per-task losses.
        median: median of ``final``, non-finite runs counted as +inf.
        q05: its 5th percentile.
        q95: its 95th percentile.
        nonfinite: how many test runs ended non-finite.
        hyperparams: the tuned values (``{"lr": ..., "momentum": ...}``); a learned optimizer
            with a tuned step size also has ``"builtin_lr"``, its own.
        at_edge: whether the tuned learning rate is the smallest or largest of the grid.
        step_seconds: median wall-clock of one jitted training step, if timed.
        curve: ``(q05, median, q95)`` of the training loss before each step, if kept.
    """

    kind: Kind
    final: tuple[float, ...]
    median: float
    q05: float
    q95: float
    nonfinite: int
    hyperparams: dict[str, float]
    at_edge: bool = False
    step_seconds: float | None = None
    curve: tuple[tuple[float, ...], ...] | None = None

    @classmethod
    def of(
        cls,
        kind: Kind,
        curves: _runs.Curves,
        hyperparams: Mapping[str, float] | None = None,
        at_edge: bool = False,
        keep_curve: bool = False,
    ) -> Run:
        """The run of ``curves`` (from :func:`train_curves` or :func:`learned_curves`)."""
        final = _runs.as_inf(curves.final)
        q05, median, q95 = _runs.percentiles(final, [5, 50, 95])
        curve = None
        if keep_curve:
            bands = _runs.percentiles(curves.losses, [5, 50, 95])
            curve = tuple(tuple(float(v) for v in band) for band in bands)
        return cls(
            kind=kind,
            final=tuple(float(v) for v in final),
            median=float(median),
            q05=float(q05),
            q95=float(q95),
            nonfinite=int(np.isinf(final).sum()),
            hyperparams={k: float(v) for k, v in (hyperparams or {}).items()},
            at_edge=bool(at_edge),
            curve=curve,
        )

    def cell(self) -> str:
        """``"median [q05, q95]"`` with three significant digits."""
        return f"{_fmt(self.median)} [{_fmt(self.q05)}, {_fmt(self.q95)}]"

    def hyperparams_cell(self) -> str:
        """``"lr 3e-02, m 0.9"``; ``*`` marks a learning rate at the edge of the grid."""
        parts = []
        if "lr" in self.hyperparams:
            parts.append(f"lr {self.hyperparams['lr']:.0e}{'*' if self.at_edge else ''}")
        if "momentum" in self.hyperparams:
            parts.append(f"m {self.hyperparams['momentum']:g}")
        if "builtin_lr" in self.hyperparams:
            parts.append(f"built-in {self.hyperparams['builtin_lr']:.2g}")
        return ", ".join(parts) or "—"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; +inf is written ``"inf"``."""
        out = self._asdict()
        out.update({k: _enc(getattr(self, k)) for k in ("median", "q05", "q95")})
        out["final"] = [_enc(v) for v in self.final]
        out["curve"] = None if self.curve is None else [[_enc(v) for v in b] for b in self.curve]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """The inverse of :meth:`to_dict`."""
        values = dict(data)
        values.update({k: _dec(values[k]) for k in ("median", "q05", "q95")})
        values["final"] = tuple(_dec(v) for v in values["final"])
        if values.get("curve") is not None:
            values["curve"] = tuple(tuple(_dec(v) for v in band) for band in values["curve"])
        return cls(**values)


class Ratio(NamedTuple):
    """The ratio of medians of a learned optimizer to a baseline, with its paired interval.

    Attributes:
        learned: the learned run's name.
        baseline: the baseline run's name.
        ratio: ``median(learned) / median(baseline)``: below 1 the learned optimizer is better.
        low: lower end of the paired bootstrap interval (``None`` without per-task losses).
        high: its upper end.
        verdict: ``"win"``/``"loss"`` only where the interval excludes 1, else ``"tie"``;
            ``None`` without an interval.
    """

    learned: str
    baseline: str
    ratio: float
    low: float | None
    high: float | None
    verdict: _stats.Verdict | None

    def cell(self) -> str:
        """``"0.452x [0.401, 0.503] win"``, or ``"0.452x (no interval)"``."""
        if self.low is None or self.high is None:
            return f"{_fmt(self.ratio)}x (no interval)"
        return f"{_fmt(self.ratio)}x [{_fmt(self.low)}, {_fmt(self.high)}] {self.verdict}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; +inf is written ``"inf"``."""
        out = self._asdict()
        out.update({k: None if out[k] is None else _enc(out[k]) for k in ("low", "high")})
        out["ratio"] = _enc(self.ratio)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ratio:
        """The inverse of :meth:`to_dict`."""
        values = dict(data)
        values.update({k: None if values[k] is None else _dec(values[k]) for k in ("low", "high")})
        values["ratio"] = _dec(values["ratio"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: every optimizer's runs, paired by test task.

    Attributes:
        family: the family's ``config()``.
        num_steps: training steps of every run.
        num_tasks: test tasks (every run trains the same ones).
        num_tune_tasks: training tasks the baselines and step sizes were tuned on.
        grid: the learning rates tried.
        extra_grids: the other hyperparameters tried, per baseline.
        adamw_weight_decay: the fixed weight decay of ``"adamw_cosine"``.
        confidence_level: of the bootstrap intervals.
        runs: per optimizer name, its :class:`Run`; learned ones first, then the baselines,
            then :data:`ADAM_DEFAULT`.
        ratios: per learned run, its :class:`Ratio` to each reference and to the best tuned
            baseline.
        best_baseline: the tuned baseline with the lowest median on the test tasks.
    """

    family: dict[str, Any]
    num_steps: int
    num_tasks: int
    num_tune_tasks: int
    grid: tuple[float, ...]
    extra_grids: dict[str, dict[str, tuple[float, ...]]]
    adamw_weight_decay: float
    confidence_level: float
    runs: dict[str, Run]
    ratios: tuple[Ratio, ...]
    best_baseline: str

    def ratio(self, learned: str, baseline: str) -> Ratio:
        """The :class:`Ratio` of run ``learned`` to run ``baseline``.

        Raises:
            KeyError: if the comparison has no such ratio.
        """
        for r in self.ratios:
            if (r.learned, r.baseline) == (learned, baseline):
                return r
        known = [(r.learned, r.baseline) for r in self.ratios]
        raise KeyError(f"no ratio of {learned!r} to {baseline!r}; known: {known}")

    def step_ratio(self, name: str) -> float | None:
        """Run ``name``'s step time over tuned Adam's (``None`` if either was not timed)."""
        mine = self.runs[name].step_seconds
        adam = self.runs["adam"].step_seconds if "adam" in self.runs else None
        return None if mine is None or not adam else mine / adam

    def learned_names(self) -> list[str]:
        """Names of the learned runs (as given, then with tuned step sizes)."""
        return [n for n, r in self.runs.items() if r.kind in ("learned", "learned_tuned_lr")]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``json.dumps(..., allow_nan=False)`` works); see :meth:`from_dict`."""
        out = dataclasses.asdict(self)
        out["grid"] = list(self.grid)
        out["extra_grids"] = {
            b: {k: list(v) for k, v in g.items()} for b, g in self.extra_grids.items()
        }
        out["runs"] = {name: run.to_dict() for name, run in self.runs.items()}
        out["ratios"] = [r.to_dict() for r in self.ratios]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """The inverse of :meth:`to_dict`."""
        values = dict(data)
        values["grid"] = tuple(values["grid"])
        values["extra_grids"] = {
            b: {k: tuple(v) for k, v in g.items()} for b, g in values["extra_grids"].items()
        }
        values["runs"] = {name: Run.from_dict(run) for name, run in values["runs"].items()}
        values["ratios"] = tuple(Ratio.from_dict(r) for r in values["ratios"])
        return cls(**values)

    def table(self) -> str:
        """A plain-text table of the runs and the ratios, for the command line."""
        timed = any(r.step_seconds is not None for r in self.runs.values())
        width = max(12, *(len(n) for n in self.runs)) + 2
        lines = [
            f"final loss after {self.num_steps} steps on {self.num_tasks} held-out tasks of "
            f"{self.family.get('name', '?')} (tuned on {self.num_tune_tasks} training tasks)",
            f"{'optimizer':<{width}}{'hyperparameters':<32}{'median':>10}{'q05':>10}{'q95':>10}"
            f"{'non-finite':>12}" + (f"{'step vs adam':>14}" if timed else ""),
        ]
        for name, run in self.runs.items():
            line = (
                f"{name:<{width}}{run.hyperparams_cell():<32}{_fmt(run.median, '.4g'):>10}"
                f"{_fmt(run.q05, '.4g'):>10}{_fmt(run.q95, '.4g'):>10}{run.nonfinite:>12}"
            )
            if timed:
                ratio = self.step_ratio(name)
                line += f"{'—' if ratio is None else f'{ratio:.2f}x':>14}"
            lines.append(line)
        level = f"{100 * self.confidence_level:g}%"
        lines.append(f"ratio of medians, learned / baseline (paired bootstrap {level} interval):")
        for r in self.ratios:
            lines.append(f"  {r.learned + ' / ' + r.baseline:<{2 * width}}{r.cell()}")
        lines.append(f"best tuned baseline on the test tasks: {self.best_baseline}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """A Markdown table of the runs (one row each), then one of the ratios."""
        timed = any(r.step_seconds is not None for r in self.runs.values())
        head = ["optimizer", "hyperparameters", "final loss: median [5%, 95%]", "non-finite"]
        head += ["step time vs Adam"] if timed else []
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, run in self.runs.items():
            cells = [f"`{name}`", run.hyperparams_cell(), run.cell(), str(run.nonfinite)]
            if timed:
                ratio = self.step_ratio(name)
                cells.append("—" if ratio is None else f"{ratio:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| learned / baseline | ratio of medians [interval] verdict |", "|---|---|"]
        lines += [f"| `{r.learned}` / `{r.baseline}` | {r.cell()} |" for r in self.ratios]
        return "\n".join(lines)


def _key_rows(keys: jax.Array) -> set[bytes]:
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    return {bytes(k) for k in np.asarray(keys).reshape(len(keys), -1)}


def _check_disjoint(tune_keys: jax.Array, test_keys: jax.Array) -> None:
    tune, test = _key_rows(tune_keys), _key_rows(test_keys)
    if tune & test:
        raise ValueError(
            f"tune_keys, test_keys: {len(tune & test)} task(s) are in both; tune on "
            'task_keys(seed, n, "train") and test on task_keys(seed, n, "test")'
        )


def _check_inputs(learned, baselines, references, num_steps, tune_keys, test_keys):
    """Raises on bad arguments of :func:`compare`; returns the references to use."""
    unknown = [b for b in baselines if b not in _baselines.BASELINES]
    if unknown:
        raise ValueError(f"baselines: unknown {unknown}; known: {sorted(_baselines.BASELINES)}")
    reserved = {*_baselines.BASELINES, ADAM_DEFAULT}
    clashes = [n for n in learned if n in reserved or n.endswith(TUNED_SUFFIX)]
    if clashes:
        raise ValueError(
            f"learned: names {clashes} clash with the baselines' or end with {TUNED_SUFFIX!r}"
        )
    if references is None:
        references = ("adam",) if "adam" in baselines else ()
    missing = [r for r in references if r not in (*baselines, ADAM_DEFAULT)]
    if missing:
        raise ValueError(
            f"references: {missing} are not runs of this comparison; expected names from "
            f"{[*baselines, ADAM_DEFAULT]}"
        )
    _checks.integer("num_steps", num_steps, minimum=1)
    if len(test_keys) < 1:
        raise ValueError("test_keys: expected at least one test task, got none")
    _check_disjoint(tune_keys, test_keys)
    for name, entry in learned.items():
        pair = isinstance(entry, tuple) and len(entry) == 2
        if not (pair or isinstance(entry, optax.GradientTransformation)):
            raise TypeError(
                f"learned[{name!r}]: expected (optimizer, meta_params) or an optax "
                f"transformation, got {type(entry).__name__}"
            )
    return tuple(references)


def _learned_runs(family, num_steps, learned, test_keys, keep_curves):
    """The runs of the learned optimizers as given, and their transformations."""
    runs: dict[str, Run] = {}
    txs: dict[str, optax.GradientTransformation] = {}
    for name, entry in learned.items():
        if isinstance(entry, optax.GradientTransformation):
            curves = _runs.train_curves(family, entry, test_keys, num_steps)
            txs[name] = entry
        else:
            optimizer, meta_params = entry
            curves = _runs.learned_curves(family, optimizer, meta_params, test_keys, num_steps)
            txs[name] = optimizer.as_optax(meta_params)
        runs[name] = Run.of("learned", curves, keep_curve=keep_curves)
    return runs, txs


def compare(
    family: TaskFamily,
    num_steps: int,
    learned: Mapping[str, Learned],
    *,
    tune_keys: jax.Array,
    test_keys: jax.Array,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    grid: Sequence[float] = _baselines.DEFAULT_GRID,
    tune_learned: bool = True,
    references: Sequence[str] | None = None,
    time_steps: bool = False,
    keep_curves: bool = False,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Comparison:
    """Compares learned optimizers with tuned hand-designed ones on the same held-out tasks.

    The protocol:

    * each baseline (:data:`~learned_opt.evaluation.BASELINES`) is tuned on ``tune_keys``:
      learning rate over ``grid`` and, for SGD with momentum and NAG, momentum over
      :data:`~learned_opt.evaluation.EXTRA_GRIDS`; the lowest median final loss wins and a best
      learning rate at the edge of the grid is flagged. ``"adamw_cosine"`` decays its
      learning rate to 0 over the run, its weight decay fixed at
      :data:`~learned_opt.evaluation.ADAMW_WEIGHT_DECAY`. Adam at 1e-3 runs untuned
      (:data:`ADAM_DEFAULT`);
    * each learned optimizer runs as given (its built-in step size) and, with
      ``tune_learned``, also with its step size tuned on the same grid and tuning tasks as
      Adam's learning rate: ``optax.chain(opt.scale_by(meta_params),
      optax.scale_by_learning_rate(lr))`` (name + :data:`TUNED_SUFFIX`). A learned optimizer
      given as a ready optax transformation runs only as given;
    * every optimizer trains the same test tasks (``test_keys``: the same task,
      initialisation and minibatch order), so results are paired by task;
    * per learned run and per reference (and the best tuned baseline on the test tasks), the
      ratio of medians with a paired bootstrap interval; its verdict is ``"win"``/``"loss"``
      only where the interval excludes 1.

    A run that does not stay finite counts as +inf (the worst result) and is counted in
    :attr:`Run.nonfinite`, never dropped.

    Args:
        family: the problem.
        num_steps: training steps of every run.
        learned: ``{name: (optimizer, meta_params)}`` or ``{name: optax transformation}``.
        tune_keys: tasks to tune on, e.g. ``task_keys(seed, 20, "train")``.
        test_keys: tasks to report on, e.g. ``task_keys(seed, 100, "test")``; disjoint from
            ``tune_keys``. The ``"validation"`` split is for choosing checkpoints, not here.
        baselines: names of :data:`~learned_opt.evaluation.BASELINES` to tune.
        grid: learning rates (and learned step sizes) to try.
        tune_learned: also run each learned optimizer with its step size tuned.
        references: runs every learned run is compared with besides the best tuned baseline
            (default: ``("adam",)`` when Adam is among the baselines).
        time_steps: also time one jitted training step of each optimizer on the first test
            task, all the optimizers' steps interleaved in the same rounds
            (:func:`~learned_opt.evaluation.step_timings`).
        keep_curves: keep each run's per-step training-loss percentiles (:attr:`Run.curve`).
        confidence_level: of the bootstrap intervals.
        n_resamples: bootstrap resamples.
        seed: of the bootstrap.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: for an unknown baseline or reference, a learned name that clashes with a
            baseline's, overlapping ``tune_keys`` and ``test_keys``, ``num_steps`` < 1, or
            fewer than one test task.
        TypeError: for a ``learned`` value that is neither a transformation nor a pair.

    Example:
        >>> import optax
        >>> import learned_opt as lo
        >>> from learned_opt import evaluation
        >>> result = evaluation.compare(
        ...     lo.tasks.Quadratic(dim=4), 20, {"sgd 0.01": optax.sgd(0.01)},
        ...     tune_keys=evaluation.task_keys(0, 4, "train"),
        ...     test_keys=evaluation.task_keys(0, 8, "test"),
        ...     baselines=("adam",), grid=(0.01, 0.1, 1.0), n_resamples=999)
        >>> list(result.runs)
        ['sgd 0.01', 'adam', 'adam (1e-3)']
        >>> result.ratio("sgd 0.01", "adam").verdict
        'loss'
    """
    references = _check_inputs(learned, baselines, references, num_steps, tune_keys, test_keys)
    runs, txs = _learned_runs(family, num_steps, learned, test_keys, keep_curves)
    if tune_learned:
        pairs = {
            n: e for n, e in learned.items() if not isinstance(e, optax.GradientTransformation)
        }
        for name, (optimizer, meta_params) in pairs.items():
            tuned = _baselines.tune_step_size(
                family, optimizer, meta_params, tune_keys, num_steps, grid
            )
            losses, final = _baselines.run_scaled_learned(
                family, optimizer, meta_params, [tuned.learning_rate], test_keys, num_steps
            )
            hyper = {"lr": tuned.learning_rate, "builtin_lr": tuned.builtin}
            curves = _runs.Curves(losses[0], final[0])
            runs[name + TUNED_SUFFIX] = Run.of(
                "learned_tuned_lr", curves, hyper, tuned.at_edge, keep_curves
            )
            txs[name + TUNED_SUFFIX] = _baselines.scaled_learned(
                optimizer, meta_params, tuned.learning_rate
            )
    for name in baselines:
        tuned_baseline = _baselines.tune_baseline(family, name, tune_keys, num_steps, grid)
        txs[name] = tuned_baseline.transformation()
        curves = _runs.train_curves(family, txs[name], test_keys, num_steps)
        runs[name] = Run.of(
            "baseline", curves, tuned_baseline.hyperparams, tuned_baseline.at_edge, keep_curves
        )
    txs[ADAM_DEFAULT] = optax.adam(1e-3)
    curves = _runs.train_curves(family, txs[ADAM_DEFAULT], test_keys, num_steps)
    runs[ADAM_DEFAULT] = Run.of("default", curves, {"lr": 1e-3}, keep_curve=keep_curves)
    if time_steps:
        for name, timing in _timing.step_timings(family, txs, test_keys[0]).items():
            runs[name] = runs[name]._replace(step_seconds=timing.median)

    tuned_names = [n for n in runs if runs[n].kind == "baseline"]
    best = min(tuned_names, key=lambda n: runs[n].median) if tuned_names else ""
    ratios = []
    for name in [n for n, r in runs.items() if r.kind in ("learned", "learned_tuned_lr")]:
        for ref in dict.fromkeys([*references, *([best] if best else [])]):
            interval = _stats.paired_ratio_interval(
                runs[name].final, runs[ref].final, confidence_level, n_resamples, seed
            )
            ratios.append(Ratio(name, ref, *interval))
    return Comparison(
        family=family.config(),
        num_steps=num_steps,
        num_tasks=len(test_keys),
        num_tune_tasks=len(tune_keys),
        grid=tuple(float(g) for g in grid),
        extra_grids={
            b: dict(_baselines.EXTRA_GRIDS[b]) for b in baselines if b in _baselines.EXTRA_GRIDS
        },
        adamw_weight_decay=_baselines.ADAMW_WEIGHT_DECAY,
        confidence_level=confidence_level,
        runs=runs,
        ratios=tuple(ratios),
        best_baseline=best,
    )
