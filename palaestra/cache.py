"""palaestra's cache on disk: ``$PALAESTRA_CACHE`` or ``~/.cache/palaestra``, one folder per kind of file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """``$PALAESTRA_CACHE/<kind>``, or ``~/.cache/palaestra/<kind>`` (``kind``: ``"textworld"``, ``"models"``)."""
    root = os.environ.get("PALAESTRA_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "palaestra") / kind
