"""Support code of palaestra's RL course (the lessons live in the repository's ``course/`` folder).

A lesson calls :func:`budget` to scale its experiments (the fast setting ``PALAESTRA_COURSE_FAST=1`` is what CI
runs), :func:`require` before it imports an optional extra, and the checks of :mod:`palaestra.course.checks` on
the students' answers. :mod:`palaestra.course.build` turns the lesson sources into student notebooks.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TypeVar

__all__ = ["FAST_ENV_VAR", "MissingExtra", "budget", "is_fast", "require"]

FAST_ENV_VAR = "PALAESTRA_COURSE_FAST"
T = TypeVar("T")

#: The pip extra that brings each optional module a lesson may need.
EXTRAS = {"bm25s": "text", "textworld": "text", "transformers": "llm", "tokenizers": "llm", "rliable": "bench"}


class MissingExtra(SystemExit):
    """Raised by :func:`require`: exits a lesson run as a script with one line naming the ``pip install``."""


def is_fast() -> bool:
    """Whether the fast setting is on (``PALAESTRA_COURSE_FAST=1``; any other value or unset: off)."""
    value = os.environ.get(FAST_ENV_VAR, "0").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"{FAST_ENV_VAR} must be 0 or 1, got {value!r}")
    return value == "1"


def budget(default: T, fast: T) -> T:
    """Pick ``fast`` under the fast setting, else ``default`` (e.g. 50,000 steps by default and 5,000 in CI)."""
    return fast if is_fast() else default


def require(*modules: str) -> None:
    """Stop the lesson with one line naming the missing ``pip install`` if a module it needs is absent."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        extras = sorted({EXTRAS.get(module, module) for module in missing})
        names = ", ".join(f"'palaestra[{extra}]'" if extra in EXTRAS.values() else extra for extra in extras)
        raise MissingExtra(f"this lesson needs {', '.join(missing)}: pip install {names}")
