"""Physical-parameter sets shared by the robust control envs and the perturbation rule that scales them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TypeVar

__all__ = ["PhysicalParams", "check_action_noise", "perturb"]

P = TypeVar("P", bound="PhysicalParams")


@dataclasses.dataclass(frozen=True)
class PhysicalParams:
    """Base class of a frozen set of strictly positive physical constants."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{type(self).__name__}.{field.name} must be a finite number > 0, got {value!r}")


def perturb(params: P, perturbation: Mapping[str, float] | None) -> P:
    """Scale named physical parameters by multiplicative factors.

    Args:
        params: The nominal parameters.
        perturbation: ``{parameter name: factor}``, e.g. ``{"length": 1.5}`` for a pole 50% longer.
            ``None`` or ``{}`` returns ``params`` unchanged.

    Returns:
        A new parameter set with each named field multiplied by its factor.

    Raises:
        ValueError: If a name is not a parameter of ``params`` or a factor is not a finite number > 0.
    """
    if not perturbation:
        return params
    if not isinstance(perturbation, Mapping):
        raise TypeError(f"perturbation must be a mapping of parameter name to factor, got {type(perturbation).__name__}")
    names = [field.name for field in dataclasses.fields(params)]
    changes = {}
    for name, factor in perturbation.items():
        if name not in names:
            raise ValueError(f"unknown perturbation parameter {name!r}; expected one of {names}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"perturbation factor for {name!r} must be a finite number > 0, got {factor!r}")
        changes[name] = getattr(params, name) * float(factor)
    return dataclasses.replace(params, **changes)


def check_action_noise(action_noise: float) -> float:
    """Validate the standard deviation of the actuator noise (a fraction of the nominal force/torque)."""
    if isinstance(action_noise, bool) or not isinstance(action_noise, (int, float)) or not 0 <= action_noise < math.inf:
        raise ValueError(f"action_noise must be a finite number >= 0, got {action_noise!r}")
    return float(action_noise)
