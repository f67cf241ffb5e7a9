"""The default SB3 logger of palaestra's own agents: stdout or silent, and no log folder on disk."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["console_logger"]


def console_logger(verbose: bool) -> Any:
    """An SB3 :class:`~stable_baselines3.common.logger.Logger` printing to stdout when ``verbose``, else silent.

    Unlike ``configure(None, ...)``, it creates no ``SB3-<date>`` folder in the temporary directory.
    """
    from stable_baselines3.common.logger import HumanOutputFormat, Logger

    return Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if verbose else [])
