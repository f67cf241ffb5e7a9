"""Check an algorithm's keyword arguments before it is built: known names, value types and value ranges.

A hyperparameter from the command line is a Python literal (or a bare string), so three mistakes are common: a
misspelt name, a value of the wrong type (``learning_rate=abc``, ``length=True`` for a float) and a value out of
range (``gamma=1.5``, ``batch_size=0``). SB3 catches some of them with bare ``assert`` statements deep in its
constructors and accepts others silently; :func:`check_hyperparams` catches all three up front, from the
constructor's signature and type hints (and an offline agent's ``DEFAULTS``), and raises one :class:`ValueError`
that names the value and what was expected.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import math
import numbers
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["RANGES", "accepted_hyperparams", "check_hyperparams"]

#: Constructor arguments that are not hyperparameters: the CLI sets them from its own flags.
NOT_HYPERPARAMS = frozenset({"self", "env", "env_kwargs", "dataset", "seed", "verbose", "_init_setup_model"})


def _closed_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


#: Ranges of hyperparameters that mean the same thing in every algorithm that has them: name -> (test, expected).
#: A value that is not a real number (a schedule, ``"auto"``, ``None``) is left to the type check.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "gamma": (_closed_unit, "a number in [0, 1]"),
    "gae_lambda": (_closed_unit, "a number in [0, 1]"),
    "tau": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "expectile": (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"),
    "exploration_fraction": (_closed_unit, "a number in [0, 1]"),
    "exploration_initial_eps": (_closed_unit, "a number in [0, 1]"),
    "exploration_final_eps": (_closed_unit, "a number in [0, 1]"),
    "learning_rate": (lambda v: v > 0, "a number > 0"),
    "sft_learning_rate": (lambda v: v > 0, "a number > 0"),
    "clip_range": (lambda v: v > 0, "a number > 0"),
    "max_grad_norm": (lambda v: v > 0, "a number > 0"),
    "temperature": (lambda v: v > 0, "a number > 0"),
    "ent_coef": (lambda v: v >= 0, "a number >= 0"),
    "vf_coef": (lambda v: v >= 0, "a number >= 0"),
    "kl_coef": (lambda v: v >= 0, "a number >= 0"),
    "n_steps": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "n_epochs": (lambda v: v >= 1, "an integer >= 1"),
    "buffer_size": (lambda v: v >= 1, "an integer >= 1"),
    "learning_starts": (lambda v: v >= 0, "an integer >= 0"),
    "target_update_interval": (lambda v: v >= 1, "an integer >= 1"),
    "policy_delay": (lambda v: v >= 1, "an integer >= 1"),
    "group_size": (lambda v: v >= 1, "an integer >= 1"),
    "n_prompts": (lambda v: v >= 1, "an integer >= 1"),
    "max_new_tokens": (lambda v: v >= 1, "an integer >= 1"),
    "max_length": (lambda v: v >= 1, "an integer >= 1"),
    "sft_steps": (lambda v: v >= 0, "an integer >= 0"),
    "eval_freq": (lambda v: v >= 0, "an integer >= 0"),
}


def accepted_hyperparams(cls: type) -> dict[str, Any]:
    """The hyperparameters ``cls(...)`` accepts, mapped to their type hints (``Any`` where none can be read).

    Constructor arguments with a default are hyperparameters (those without one are what the builder passes);
    a ``**kwargs`` of an offline agent is read from its ``DEFAULTS``, whose values give the types. A class that
    takes other ``**kwargs`` accepts any name, and then only the values are checked.
    """
    accepted: dict[str, Any] = {}
    function = cls.__init__  # type: ignore[misc]
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            defaults = getattr(cls, "DEFAULTS", None)
            if not isinstance(defaults, Mapping):
                return {}  # open-ended: any name goes through to the class
            accepted.update({key: _type_of_default(value) for key, value in defaults.items()})
        elif parameter.default is not inspect.Parameter.empty and name not in NOT_HYPERPARAMS:
            accepted[name] = _resolve(parameter.annotation, function)
    return accepted


def check_hyperparams(algo: str, cls: type, hyperparams: Mapping[str, Any], extra: Iterable[str] = ()) -> None:
    """Raise one :class:`ValueError` line for the first unknown name, wrong type or out-of-range value.

    Args:
        algo: The algorithm's short name, for the message.
        cls: The class the hyperparameters are passed to.
        hyperparams: Name to value, as parsed from ``KEY=VALUE`` arguments.
        extra: Names the builder takes itself, on top of the constructor's (any type).
    """
    accepted = accepted_hyperparams(cls)
    accepted.update(dict.fromkeys(extra, Any))
    for name, value in hyperparams.items():
        if name in NOT_HYPERPARAMS:
            raise ValueError(f"{name!r} is not a hyperparameter of {algo}: palaestra sets it (use --{name} if it has one)")
        if accepted and name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"expected one of {sorted(accepted)}"
            raise ValueError(f"unknown hyperparameter {name!r} for {algo}; {hint}")
        expected = accepted.get(name, Any)
        if not fits(value, expected):
            raise ValueError(f"hyperparameter {name}={value!r} has the wrong type for {algo}: expected {_describe(expected)}")
        bounds = RANGES.get(name)
        if bounds is not None and _is_real(value) and not (math.isfinite(value) and bounds[0](value)):
            raise ValueError(f"hyperparameter {name}={value!r} is out of range for {algo}: expected {bounds[1]}")


def fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` can be passed where ``annotation`` is expected (lenient where a hint cannot be read)."""
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(fits(value, arm) for arm in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return callable(value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return _is_real(value)
    if origin is type:
        return isinstance(value, (type, str))
    if isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _type_of_default(value: Any) -> Any:
    if value is None:
        return Any
    if isinstance(value, bool):
        return bool
    if isinstance(value, float):
        return float
    if isinstance(value, (tuple, list)):
        return tuple | list
    return type(value)


def _resolve(annotation: Any, function: Any) -> Any:
    """A parameter's annotation as a type; a string annotation is evaluated in its module (``Any`` if it fails)."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        module = sys.modules.get(function.__module__)
        try:
            return eval(annotation, vars(module) if module else {})  # the library's own annotations
        except Exception:  # a name imported only for type checking
            return Any
    return annotation


def _describe(annotation: Any) -> str:
    if annotation is type(None) or annotation is None:
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(arm) for arm in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return "a schedule (a callable)"
    if isinstance(annotation, type):
        return {"float": "a number", "int": "an integer", "bool": "True or False", "str": "a string"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)
