"""Evaluating optimizers on held-out tasks: the protocol of learned vs tuned baselines.

:func:`compare` is the protocol every study uses: tune each hand-designed baseline on training
tasks (``task_keys(seed, n, "train")``), run every optimizer on the same held-out tasks
(``task_keys(seed, n, "test")``) and report the ratio of medians of each learned optimizer to
the baselines with a paired bootstrap interval. The ``"validation"`` split is for choosing a
learned optimizer's checkpoint during meta-training. The building blocks are public too:
:func:`train_curves`, :func:`learned_curves`, :func:`trace`, :func:`tune_baseline`,
:func:`tune_step_size`, :func:`paired_ratio_interval` and the timing helpers. Problem suites
(:class:`Problem`, :func:`adam_references`, :func:`score`) give a learned optimizer one number
against cached tuned-Adam references, for choosing between recipes quickly.

Example:
    >>> import optax
    >>> import learned_opt as lo
    >>> from learned_opt import evaluation
    >>> family = lo.tasks.Quadratic()
    >>> tuned = evaluation.tune_baseline(family, "adam", evaluation.task_keys(0, 4, "train"), 20)
    >>> test = evaluation.task_keys(0, 8, "test")
    >>> adam = evaluation.train_curves(family, tuned.transformation(), test, 20)
    >>> default = evaluation.train_curves(family, optax.adam(1e-3), test, 20)
    >>> median = lambda curves: evaluation.summarize(curves.final)["median"]
    >>> bool(median(adam) < median(default))
    True
"""

from learned_opt.evaluation.baselines import ADAMW_WEIGHT_DECAY as ADAMW_WEIGHT_DECAY
from learned_opt.evaluation.baselines import BASELINES as BASELINES
from learned_opt.evaluation.baselines import DEFAULT_GRID as DEFAULT_GRID
from learned_opt.evaluation.baselines import EXTRA_GRIDS as EXTRA_GRIDS
from learned_opt.evaluation.baselines import TUNING_FREE as TUNING_FREE
from learned_opt.evaluation.baselines import TunedBaseline as TunedBaseline
from learned_opt.evaluation.baselines import TunedStepSize as TunedStepSize
from learned_opt.evaluation.baselines import run_scaled_learned as run_scaled_learned
from learned_opt.evaluation.baselines import scaled_learned as scaled_learned
from learned_opt.evaluation.baselines import tune_baseline as tune_baseline
from learned_opt.evaluation.baselines import tune_learning_rate as tune_learning_rate
from learned_opt.evaluation.baselines import tune_step_size as tune_step_size
from learned_opt.evaluation.comparison import ADAM_DEFAULT as ADAM_DEFAULT
from learned_opt.evaluation.comparison import DEFAULT_BASELINES as DEFAULT_BASELINES
from learned_opt.evaluation.comparison import TUNED_SUFFIX as TUNED_SUFFIX
from learned_opt.evaluation.comparison import Comparison as Comparison
from learned_opt.evaluation.comparison import Kind as Kind
from learned_opt.evaluation.comparison import Learned as Learned
from learned_opt.evaluation.comparison import Ratio as Ratio
from learned_opt.evaluation.comparison import Run as Run
from learned_opt.evaluation.comparison import compare as compare
from learned_opt.evaluation.runs import SPLITS as SPLITS
from learned_opt.evaluation.runs import Curves as Curves
from learned_opt.evaluation.runs import Recorder as Recorder
from learned_opt.evaluation.runs import Split as Split
from learned_opt.evaluation.runs import as_inf as as_inf
from learned_opt.evaluation.runs import learned_curves as learned_curves
from learned_opt.evaluation.runs import percentiles as percentiles
from learned_opt.evaluation.runs import summarize as summarize
from learned_opt.evaluation.runs import task_keys as task_keys
from learned_opt.evaluation.runs import trace as trace
from learned_opt.evaluation.runs import train_curves as train_curves
from learned_opt.evaluation.stats import TIE_TOLERANCE as TIE_TOLERANCE
from learned_opt.evaluation.stats import RatioInterval as RatioInterval
from learned_opt.evaluation.stats import Verdict as Verdict
from learned_opt.evaluation.stats import paired_ratio_interval as paired_ratio_interval
from learned_opt.evaluation.stats import ratio_of_medians as ratio_of_medians
from learned_opt.evaluation.stats import verdict as verdict
from learned_opt.evaluation.suites import Problem as Problem
from learned_opt.evaluation.suites import adam_references as adam_references
from learned_opt.evaluation.suites import log_ratio as log_ratio
from learned_opt.evaluation.suites import score as score
from learned_opt.evaluation.timing import Timing as Timing
from learned_opt.evaluation.timing import step_seconds as step_seconds
from learned_opt.evaluation.timing import step_timings as step_timings
from learned_opt.evaluation.timing import time_calls as time_calls
from learned_opt.evaluation.timing import time_interleaved as time_interleaved
