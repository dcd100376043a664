"""Device choice and seeding.

``get_device()`` returns CUDA when a GPU is present and CPU otherwise; every
kernel in tasknb takes a ``device`` argument that defaults to it.
``seed_everything(seed)`` seeds Python, NumPy and torch; ``generator(seed)``
returns an independent ``torch.Generator`` so that library code never depends
on global random state: same parameters + seed -> same numbers on a device.
"""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

from .validation import check_choice, check_seed

_DEVICE_CHOICES = ("auto", "cpu", "cuda")


def get_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``device``: ``"auto"``/None -> CUDA if available else CPU.

    The environment variable ``TASKNB_DEVICE`` (``cpu`` or ``cuda``) overrides
    ``"auto"``, so a whole batch run can be pinned to one device.
    """
    if isinstance(device, torch.device):
        return device
    if device is None:
        device = "auto"
    if isinstance(device, str) and device.startswith("cuda:"):
        return torch.device(device)
    check_choice("device", device, _DEVICE_CHOICES)
    if device == "auto":
        device = os.environ.get("TASKNB_DEVICE", "auto")
        check_choice("TASKNB_DEVICE", device, _DEVICE_CHOICES)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA); return the seed."""
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed`` on ``device``.

    Random draws in tasknb are made on the CPU generator and then moved, so that a
    seed gives the same numbers on CPU and GPU.
    """
    seed = check_seed("seed", seed)
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def _purpose_key(purpose: str) -> int:
    if not isinstance(purpose, str) or not purpose:
        raise ValueError(f"purpose must be a non-empty string naming the draw (e.g. 'chmm.source'), got {purpose!r}")
    return int.from_bytes(hashlib.sha256(purpose.encode("utf-8")).digest()[:8], "little")


def _index_keys(keys) -> tuple[int, ...]:
    out = []
    for i, k in enumerate(keys):
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or int(k) < 0:
            raise ValueError(f"stream keys must be non-negative integers (e.g. a realization index), "
                             f"got key {i} = {k!r}")
        out.append(int(k))
    return tuple(out)


def stream_seed_sequence(seed: int, purpose: str, *keys: int) -> np.random.SeedSequence:
    """The ``numpy.random.SeedSequence`` of one draw: the user's ``seed`` as entropy and the draw's
    ``purpose`` (a string such as ``"chmm.source"``, hashed with SHA-256), followed by optional
    non-negative integer ``keys`` (a realization index, a grid index...), as its spawn key.

    Two draws share a stream only if they share the seed, the purpose and the keys, so no seed
    passed for one purpose (or one realization) can replay the draws of another.
    """
    seed = check_seed("seed", seed)
    return np.random.SeedSequence(seed, spawn_key=(_purpose_key(purpose),) + _index_keys(keys))


def stream(seed: int, purpose: str, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for the draw named ``purpose`` (and ``keys``) under the user's
    ``seed`` (see :func:`stream_seed_sequence`); same (seed, purpose, keys) -> same numbers.

    Unlike :func:`generator`, whose stream is the seed itself, ``stream(s, "a")`` and
    ``stream(s, "b")`` are independent, and neither equals ``generator(s')`` for any seed the
    user is likely to pass.
    """
    g = torch.Generator(device="cpu")
    g.manual_seed(derived_seed(seed, purpose, *keys))
    return g


def numpy_stream(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """The NumPy counterpart of :func:`stream`: ``default_rng`` on the draw's seed sequence."""
    return np.random.default_rng(stream_seed_sequence(seed, purpose, *keys))


def derived_seed(seed: int, purpose: str, *keys: int) -> int:
    """An integer seed in [0, 2**63) for the draw named ``purpose`` (and ``keys``) under ``seed``:
    the first 63 bits of the draw's seed sequence (:func:`stream_seed_sequence`).

    Protocols hand it to a kernel that takes an int seed (``stack_samples``, ``init_two_layer``,
    ``train_stack``...), one per role: ``derived_seed(seed, "target.train", i)`` for the i-th
    target training set, ``derived_seed(seed, "init.rf")`` for the random features, so two roles
    never share numbers and ``seed + 1`` is unrelated to ``seed``.  The kernel hashes it again
    with its own purpose, so the same derived seed given to two kernels gives independent draws.
    """
    state = stream_seed_sequence(seed, purpose, *keys).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def describe_device(device=None) -> str:
    """A one-line human description of the device in use (for notebook headers)."""
    dev = get_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def resolve_device(device, *arrays) -> torch.device:
    """``get_device(device)`` when ``device`` is given; otherwise CUDA if any of ``arrays`` is a CUDA
    tensor, else tasknb's default device."""
    if device is not None:
        return get_device(device)
    for a in arrays:
        if torch.is_tensor(a) and a.device.type == "cuda":
            return a.device
    return get_device()


def as_tensor(x, device, dtype=torch.float64) -> torch.Tensor:
    """``x`` (NumPy array, sequence or tensor) as a tensor of ``dtype`` on ``device``; a NumPy input is
    copied (it may be a read-only view), a tensor is detached."""
    if torch.is_tensor(x):
        return x.detach().to(device=device, dtype=dtype)
    return torch.tensor(np.asarray(x), dtype=dtype, device=device)


def like_input(x: torch.Tensor, as_torch: bool):
    """Return a result the way the caller passed its input: the tensor itself, or a NumPy copy on the CPU."""
    return x if as_torch else x.cpu().numpy()
