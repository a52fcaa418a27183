"""Paired bootstrap intervals on ratios of medians, and the verdicts they allow."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import stats

from learned_opt.evaluation.runs import as_inf

Verdict = Literal["win", "loss", "tie"]


def ratio_of_medians(a: Any, b: Any, axis: int = -1) -> np.ndarray:
    """``median(a) / median(b)`` along ``axis``, non-finite runs counted as +inf.

    Equal medians (both 0 or both +inf included) give exactly 1; a finite median over +inf
    gives 0 and +inf over a finite one gives +inf.

    Example:
        >>> import numpy as np
        >>> from learned_opt.evaluation import ratio_of_medians
        >>> float(ratio_of_medians([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]))
        0.5
        >>> float(ratio_of_medians([np.inf] * 2, [np.nan] * 2))
        1.0
    """
    ma = np.median(as_inf(a), axis=axis)
    mb = np.median(as_inf(b), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ma == mb, 1.0, ma / mb)


def _share(a, b, axis=-1):
    # The ratio r mapped to r / (1 + r) in [0, 1] (1 <-> 1/2): a finite statistic even when a
    # median is +inf, so the bootstrap's percentiles never subtract infinities.
    r = ratio_of_medians(a, b, axis)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(r), 1.0, r / (1.0 + r))


def _from_share(share: float) -> float:
    return float("inf") if share >= 1.0 else float(share / (1.0 - share))


class RatioInterval(NamedTuple):
    """A ratio of medians with its paired bootstrap interval.

    Attributes:
        ratio: ``median(a) / median(b)``.
        low: lower end of the interval (``None`` with fewer than two paired tasks).
        high: upper end of the interval (``None`` likewise).
        verdict: ``"win"`` if the interval lies below 1 (``a`` is lower), ``"loss"`` if above,
            ``"tie"`` if it contains 1 or lies within :data:`TIE_TOLERANCE` of it, ``None``
            without an interval.
    """

    ratio: float
    low: float | None
    high: float | None
    verdict: Verdict | None


#: Intervals within this relative distance of 1 are ties: two optimizers that compute the same
#: updates in another order (the untrained control and Adam) differ by float32 rounding, which can
#: lean one way on every task and so give an interval of width ~1e-6 that excludes 1.
TIE_TOLERANCE = 1e-4


def verdict(low: float, high: float) -> Verdict:
    """``"win"`` if ``high < 1 - TIE_TOLERANCE``, ``"loss"`` if ``low > 1 + TIE_TOLERANCE``,
    else ``"tie"``.

    Example:
        >>> from learned_opt.evaluation import verdict
        >>> verdict(0.8, 0.95), verdict(0.8, 1.0), verdict(1.01, 2.0), verdict(0.99999, 0.999995)
        ('win', 'tie', 'loss', 'tie')
    """
    return "win" if high < 1 - TIE_TOLERANCE else "loss" if low > 1 + TIE_TOLERANCE else "tie"


def paired_ratio_interval(
    a: Any,
    b: Any,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> RatioInterval:
    """The ratio of medians ``median(a) / median(b)`` and its paired bootstrap interval.

    ``a[i]`` and ``b[i]`` are the final losses of two optimizers on the same task ``i``; the
    bootstrap resamples tasks, keeping each pair together (``scipy.stats.bootstrap`` with
    ``paired=True``, the percentile method, a fixed seed). Non-finite losses count as +inf.

    Args:
        a: final losses of the optimizer under test, one per task.
        b: final losses of the reference on the same tasks.
        confidence_level: of the two-sided interval.
        n_resamples: bootstrap resamples.
        seed: of the resampling.

    Raises:
        ValueError: if ``a`` and ``b`` are not 1-d of the same length, or for a
            ``confidence_level`` outside (0, 1).

    References:
        Efron & Tibshirani 1993, "An Introduction to the Bootstrap", chapter 13 (percentile
        intervals).

    Example:
        >>> from learned_opt.evaluation import paired_ratio_interval
        >>> paired_ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        RatioInterval(ratio=1.0, low=1.0, high=1.0, verdict='tie')
        >>> paired_ratio_interval([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]).verdict
        'win'
    """
    a, b = as_inf(a), as_inf(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"a, b: expected 1-d arrays of the same length, got shapes {a.shape} and {b.shape}"
        )
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level: expected a value in (0, 1), got {confidence_level}")
    ratio = float(ratio_of_medians(a, b))
    if a.size < 2:
        return RatioInterval(ratio, None, None, None)
    result = stats.bootstrap(
        (a, b),
        _share,
        paired=True,
        vectorized=True,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low = _from_share(float(result.confidence_interval.low))
    high = _from_share(float(result.confidence_interval.high))
    return RatioInterval(ratio, low, high, verdict(low, high))
