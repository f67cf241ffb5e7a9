"""Learning curves with bootstrap confidence bands (matplotlib, the ``bench`` extra).

The drawing lives in :mod:`palaestra.plotting`, which ``palaestra plot`` uses too; this module keeps the benchmarks'
import path.
"""

from __future__ import annotations

from palaestra.plotting import plot_learning_curves

__all__ = ["plot_learning_curves"]
