"""Checks of the course's exercises: each prints one line, a pass or what was expected, and returns a bool.

A check never raises on a wrong answer, so a student notebook with an unfinished exercise still runs to its end;
the lesson goes on with the library's own implementation. One module per lesson (``lesson01`` ...) holds that
lesson's checks, built from the helpers here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FAIL", "PASS", "as_number", "check_array", "check_number", "report"]

PASS = "[pass]"
FAIL = "[not yet]"


def report(name: str, ok: bool, detail: str = "") -> bool:
    """Print one line for exercise ``name`` and return ``ok``."""
    line = f"{PASS if ok else FAIL} {name}" + (f": {detail}" if detail else "")
    print(line)
    return ok


def check_array(name: str, answer: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5, hint: str = "") -> bool:
    """Compare an array answer with the expected one: shape first (said when it differs), then values."""
    if answer is None:
        return report(name, False, f"no answer yet; expected an array of shape {np.shape(expected)}")
    try:
        value = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return report(name, False, f"expected an array of numbers of shape {np.shape(expected)}, got {type(answer).__name__}")
    target = np.asarray(expected, dtype=np.float64)
    if value.shape != target.shape:
        return report(name, False, f"expected an array of shape {target.shape}, got shape {value.shape}")
    if not np.all(np.isfinite(value)):
        return report(name, False, "the answer holds NaN or infinite values")
    error = float(np.max(np.abs(value - target))) if value.size else 0.0
    if not np.allclose(value, target, atol=atol, rtol=rtol):
        return report(name, False, f"largest difference {error:.3g} from the expected values" + (f"; {hint}" if hint else ""))
    return report(name, True, f"matches (largest difference {error:.1g})")


def as_number(answer: Any) -> tuple[float | None, str]:
    """``(float(answer), "")`` for a single number (a 0-d array or tensor too), else ``(None, what was wrong)``."""
    if answer is None:
        return None, "no answer yet; expected a number"
    if isinstance(answer, bool) or np.ndim(answer) != 0:
        return None, f"expected a single number, got {type(answer).__name__} of shape {np.shape(answer)}"
    try:
        return float(answer), ""
    except (TypeError, ValueError):
        return None, f"expected a single number, got {type(answer).__name__}"


def check_number(name: str, answer: Any, expected: float, atol: float = 1e-6, hint: str = "") -> bool:
    """Compare a scalar answer with the expected number."""
    value, problem = as_number(answer)
    if value is None:
        return report(name, False, problem)
    if not abs(value - expected) <= atol:
        return report(name, False, f"got {value:.6g}, expected {expected:.6g}" + (f"; {hint}" if hint else ""))
    return report(name, True, f"{value:.6g}")
