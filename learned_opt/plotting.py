"""PNG figures of meta-training and evaluation (matplotlib, no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from learned_opt._files import atomic_write_bytes


def _figure(ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)


def _save(fig, path: str | Path) -> None:
    """Writes the figure atomically (a reader never sees half a PNG), in the suffix's format."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_meta_training(metrics: Sequence[Mapping[str, float]], path: str | Path) -> None:
    """Meta-loss and mean inner loss against meta-steps, from the metrics log."""
    fig, axes = _figure(2)
    steps = np.asarray([m["step"] for m in metrics])
    for ax, key in zip(axes[0], ("meta_loss", "inner_loss"), strict=True):
        ax.plot(steps, [m[key] for m in metrics], lw=0.8)
        ax.set_xlabel("meta-step")
        ax.set_ylabel(key.replace("_", " "))
        if all(m[key] > 0 for m in metrics):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle("meta-training")
    _save(fig, path)


def plot_loss_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: str | Path,
    title: str = "",
    log_scale: bool = True,
) -> None:
    """Median training loss per step with a 5-95% band across tasks, one line per optimizer.

    Args:
        curves: optimizer name -> ``(q05, median, q95)``, each a loss per step (the
            :attr:`~learned_opt.evaluation.Run.curve` of a comparison kept with
            ``keep_curves=True``).
        path: the PNG to write.
        title: figure title.
        log_scale: log y axis (when every median is positive).
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    medians = []
    for name, (q05, median, q95) in curves.items():
        steps = np.arange(len(median))
        medians.append(np.asarray(median, dtype=float))
        ax.plot(steps, median, label=name, lw=1.2)
        ax.fill_between(steps, q05, q95, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if log_scale and all(np.all(m > 0) for m in medians):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    _save(fig, path)
