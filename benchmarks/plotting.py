"""Learning curves with bootstrap confidence bands (matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from palaestra.evaluation import bootstrap_ci

__all__ = ["plot_learning_curves"]


def plot_learning_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    xlabel: str = "env steps",
    ylabel: str = "return",
    title: str = "",
    confidence_level: float = 0.95,
    log_y: bool = False,
) -> Path:
    """Plot the mean over seeds of each curve with its bootstrap confidence band and save a PNG.

    Args:
        curves: ``{label: (x, y)}`` with ``x`` of shape ``(T,)`` and ``y`` of shape ``(n_seeds, T)``.
        path: Output PNG path.
        xlabel: Label of the x axis.
        ylabel: Label of the y axis.
        title: Figure title.
        confidence_level: Coverage of the band (a per-point bootstrap of the mean over seeds).
        log_y: Use a logarithmic y axis.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, (x, y) in curves.items():
        x, y = np.asarray(x), np.atleast_2d(np.asarray(y, dtype=np.float64))
        if y.shape[1] != x.shape[0]:
            raise ValueError(f"curve {label!r}: y has {y.shape[1]} points per seed but x has {x.shape[0]}")
        bands = np.array([bootstrap_ci(y[:, t], confidence_level) for t in range(y.shape[1])])
        axis.plot(x, y.mean(axis=0), label=f"{label} (n={y.shape[0]})")
        axis.fill_between(x, bands[:, 0], bands[:, 1], alpha=0.25)
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
