"""Input checks shared by every public function of tasknb.

Each check raises ``ValueError`` (or ``TypeError``) with a message that names
the offending parameter and states the allowed values, e.g.::

    ValueError: rho must be in [0, 1], got 1.5
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable

import numpy as np
import torch


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_real_in(name: str, value, low: float, high: float) -> float:
    """Return ``float(value)`` if ``low <= value <= high``, else raise naming ``name``."""
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")
    value = float(value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value:g}")
    return value


def check_positive_real(name: str, value, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is > 0 (or >= 0 with ``allow_zero``)."""
    bound = ">= 0" if allow_zero else "> 0"
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    value = float(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {bound}, got {value:g}")
    return value


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``int(value)`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if _is_real(value) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_seed(name: str, value) -> int:
    """Seeds are integers in [0, 2**63 - 1]."""
    return check_positive_int(name, value, minimum=0)


def check_bool(name: str, value) -> bool:
    """Return ``value`` if it is True or False (a number or a string is rejected)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value, allowed: Iterable) -> object:
    """Return ``value`` if it is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {shown}; got {value!r}")
    return value


def check_int_sequence(name: str, values, minimum: int = 0, maximum: int | None = None) -> list[int]:
    """Return a list of ints, each within [minimum, maximum]; non-empty, no duplicates."""
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a non-empty sequence of integers, got {values!r}") from None
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence of integers, got an empty one")
    out = []
    hi = "" if maximum is None else f", {maximum}"
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{name} must contain integers in [{minimum}{hi}], got {v!r}")
        if v < minimum or (maximum is not None and v > maximum):
            raise ValueError(f"{name} must contain integers in [{minimum}{hi}], got {v}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {out}")
    return out


def check_increasing_positive_reals(name: str, values) -> np.ndarray:
    """A non-empty 1-D array of finite numbers > 0, strictly increasing."""
    try:
        vals = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a non-empty increasing sequence of numbers > 0, got {values!r}") from None
    if not vals:
        raise ValueError(f"{name} must be a non-empty increasing sequence of numbers > 0, got an empty one")
    out = np.array([check_positive_real(name, v) for v in vals], dtype=float)
    if np.any(np.diff(out) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {vals}")
    return out


def check_parameters(values: dict, spec: dict) -> dict:
    """Validate a notebook's parameters in one call; return the checked values.

    ``values`` is usually ``globals()`` of the notebook; ``spec`` maps each
    parameter name to a rule:

    ``("int", minimum)``             integer >= minimum
    ``("real", low, high)``          float in [low, high]
    ``("positive",)``                float > 0
    ``("choice", allowed)``          one of ``allowed``
    ``("ints", minimum)``            non-empty sequence of distinct integers >= minimum
    ``("reals", low, high)``         non-empty sequence of floats in [low, high]

    The first failing parameter raises ``ValueError`` naming it and its allowed values,
    so a papermill run with a bad ``-p`` stops at once with a clear message.
    """
    out = {}
    for name, rule in spec.items():
        if name not in values:
            raise ValueError(f"parameter {name!r} is missing from the parameters cell")
        v, kind = values[name], rule[0]
        if kind == "int":
            out[name] = check_positive_int(name, v, minimum=rule[1])
        elif kind == "real":
            out[name] = check_real_in(name, v, rule[1], rule[2])
        elif kind == "positive":
            out[name] = check_positive_real(name, v)
        elif kind == "choice":
            out[name] = check_choice(name, v, rule[1])
        elif kind == "ints":
            out[name] = check_int_sequence(name, v, minimum=rule[1])
        elif kind == "reals":
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__") or len(list(v)) == 0:
                raise ValueError(f"{name} must be a non-empty list of numbers in [{rule[1]:g}, {rule[2]:g}], got {v!r}")
            out[name] = [check_real_in(name, x, rule[1], rule[2]) for x in v]
        else:
            raise ValueError(f"unknown rule {kind!r} for parameter {name!r}")
    return out


def check_finite_array(name: str, x) -> np.ndarray:
    """``x`` (array-like or tensor) as a float64 NumPy array; raise if it is not numeric or not finite."""
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def array_shape(name: str, x, what: str = "probabilities") -> tuple:
    """The shape of a NumPy array or torch tensor ``x``; raise naming ``name`` for anything else."""
    if isinstance(x, np.ndarray) or torch.is_tensor(x):
        return tuple(x.shape)
    raise ValueError(f"{name} must be a NumPy array or a torch tensor of {what}, got {type(x).__name__}")


def check_label_vector(labels, N: int, C: int, device, name: str = "labels") -> torch.Tensor:
    """``labels`` (N,) integer classes in [0, C - 1] (NumPy, list or tensor; integral floats accepted) as
    an int64 tensor on ``device``; raise naming ``name`` otherwise."""
    lab = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if lab.shape != (N,):
        raise ValueError(f"{name} must have shape (N,) = ({N},), got {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        if not (np.issubdtype(lab.dtype, np.floating) and np.all(lab == np.round(lab))):
            raise ValueError(f"{name} must be integers in [0, {C - 1}], got dtype {lab.dtype}")
    if lab.min() < 0 or lab.max() > C - 1:
        raise ValueError(f"{name} must be integers in [0, {C - 1}], got values from {lab.min()} to {lab.max()}")
    return torch.as_tensor(lab.astype(np.int64), device=device)


def check_label_tensor(name: str, y, n: int, n_classes: int) -> None:
    """``y`` must be an integer torch tensor of shape (n,) with values in [0, n_classes - 1]."""
    if not torch.is_tensor(y) or y.shape != (n,) or y.dtype.is_floating_point:
        raise ValueError(f"{name} must be an integer torch tensor of shape ({n},), got {getattr(y, 'shape', y)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name} must hold labels in [0, {n_classes - 1}]")
