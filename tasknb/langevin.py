"""Overdamped Langevin dynamics for ensembles of particles, path actions, effective potentials and
first passages.

The stochastic differential equation is

    dw = -grad U(w) dt + sqrt(2 D) dW,

(drift f = -grad U, so div f = -Laplacian U), integrated by Euler-Maruyama for all particles at once
in torch float64 (CUDA when present).  Its stationary density is proportional to exp(-U / D).

Pieces
------
Landscapes     ``DoubleWell`` (1-D, U = dU ((x/a)^2 - 1)^2), ``SharpFlatWells`` (2-D, U = a(u) + b(u) v^2 / 2,
               a sharp deep minimum and a flat shallow one), ``AutogradLandscape`` (any U through
               torch.func); each has ``dim``, ``U``, ``grad``, ``hessian``, ``laplacian`` on (n, d) tensors.
Dynamics       ``simulate`` (trajectories), ``first_passage_times`` (one arrival time per particle, inf
               for those that never arrive; a ``PassageTimes`` array carrying the counts),
               ``mean_first_passage`` (mean and SE, refusing censored samples unless asked) and
               ``censored_rate_mle`` (events / total observed time).
Actions        ``onsager_machlup_action`` (the discretised Onsager-Machlup action, Stratonovich midpoint),
               ``path_factors`` (its split into the static part dU / 2D and the reachability action with
               V = |grad U|^2 / 2 - D Laplacian U), ``most_probable_path`` (the instanton by L-BFGS).
Potentials     ``log_det_positive`` (log of the product of positive Hessian eigenvalues) and
               ``effective_potential`` (U + coefficient * D * log det).
Rates          ``kramers_rate`` (overdamped Kramers law) and ``mean_first_passage_1d`` (the exact 1-D mean
               first-passage time by quadrature).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .device import derived_seed, get_device
from .seed_runs import progress_bar
from .validation import check_bool, check_positive_int, check_positive_real, check_real_in, check_seed

__all__ = [
    "Landscape", "DoubleWell", "SharpFlatWells", "AutogradLandscape", "simulate", "first_passage_times",
    "PassageTimes", "mean_first_passage", "censored_rate_mle", "onsager_machlup_action", "path_factors",
    "most_probable_path", "freidlin_wentzell_action", "log_det_positive", "effective_potential", "kramers_rate", "mean_first_passage_1d",
    "noise_generator",
]

DTYPE = torch.float64


def _points(x, dim: int, name: str = "x") -> torch.Tensor:
    if not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if x.dtype != DTYPE:
        x = x.to(DTYPE)
    if x.ndim == 1 and dim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {tuple(x.shape)}")
    return x


# ----------------------------------------------------------------------------------------------- landscapes
class Landscape:
    """A potential U on R^dim with analytic or autograd derivatives; every method takes (n, dim) points."""

    dim: int = 1

    def U(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def hessian(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def laplacian(self, x) -> torch.Tensor:
        return torch.diagonal(self.hessian(x), dim1=-2, dim2=-1).sum(-1)

    def __call__(self, x) -> torch.Tensor:
        return self.U(x)


class DoubleWell(Landscape):
    """U(x) = barrier * ((x / width)^2 - 1)^2 in 1-D: minima at +-width, saddle (barrier top) at 0.

    Curvatures: U''(+-width) = 8 barrier / width^2 (``curvature_min``), U''(0) = -4 barrier / width^2
    (``curvature_saddle``); the barrier height is ``barrier`` from either minimum.
    """

    dim = 1

    def __init__(self, barrier: float = 1.0, width: float = 1.0):
        self.barrier = check_positive_real("barrier", barrier)
        self.width = check_positive_real("width", width)

    @property
    def curvature_min(self) -> float:
        return 8.0 * self.barrier / self.width**2

    @property
    def curvature_saddle(self) -> float:
        return -4.0 * self.barrier / self.width**2

    def U(self, x):
        s = _points(x, 1)[:, 0] / self.width
        return self.barrier * (s * s - 1.0) ** 2

    def grad(self, x):
        if not (torch.is_tensor(x) and x.dtype == DTYPE and x.ndim == 2 and x.shape[1] == 1):
            x = _points(x, 1)
        k2 = 4.0 * self.barrier / self.width**2
        return torch.mul(x, x).mul_(k2 / self.width**2).sub_(k2).mul_(x)   # 4 dU x (x^2 / a^2 - 1) / a^2

    def hessian(self, x):
        s = _points(x, 1) / self.width
        return (4.0 * self.barrier * (3.0 * s * s - 1.0) / self.width**2)[:, :, None]


class SharpFlatWells(Landscape):
    """U(u, v) = a(u) + b(u) v^2 / 2 in 2-D (the expansion of section 5.2 of Achille et al. 2019).

    a(u) = barrier (u^2 - 1)^2 + (gap / 2) p(u), p(u) = u (3 - u^2) / 2, has minima at exactly u = -1
    (depth a = -gap/2, the deep one) and u = +1 (a = +gap/2) and its saddle at u_s = 3 gap / (16 barrier)
    (requires |u_s| < 1).  The transverse curvature interpolates in log between ``b_sharp`` at u -> -inf
    and ``b_flat`` at u -> +inf: log b(u) = log b_flat + (log b_sharp - log b_flat) (1 - tanh(k u)) / 2,
    k = ``steepness``.  So the deep minimum (u = -1) is the sharp one when b_sharp > b_flat.

    Integrating exp(-U / D) over v exactly gives the marginal density of u,
    p(u) proportional to exp(-[a(u) + (D / 2) log b(u)] / D)  (``marginal_free_energy``).
    """

    dim = 2

    def __init__(self, barrier: float = 0.5, gap: float = 0.2, b_sharp: float = 20.0, b_flat: float = 1.0,
                 steepness: float = 2.0):
        self.barrier = check_positive_real("barrier", barrier)
        self.gap = check_real_in("gap", gap, -1e6, 1e6)
        self.b_sharp = check_positive_real("b_sharp", b_sharp)
        self.b_flat = check_positive_real("b_flat", b_flat)
        self.steepness = check_positive_real("steepness", steepness)
        if abs(self.saddle) >= 1.0:
            raise ValueError(f"gap must satisfy |3 gap / (16 barrier)| < 1 (two minima), got gap={gap:g}, "
                             f"barrier={barrier:g}")

    @property
    def saddle(self) -> float:
        return 3.0 * self.gap / (16.0 * self.barrier)

    # 1-D pieces along the valley floor (u as a tensor of any shape)
    def a(self, u):
        u = torch.as_tensor(u, dtype=DTYPE)
        return self.barrier * (u * u - 1.0) ** 2 + 0.25 * self.gap * u * (3.0 - u * u)

    def da(self, u):
        return 4.0 * self.barrier * u * (u * u - 1.0) + 0.75 * self.gap * (1.0 - u * u)

    def d2a(self, u):
        return 4.0 * self.barrier * (3.0 * u * u - 1.0) - 1.5 * self.gap * u

    def log_b(self, u):
        u = torch.as_tensor(u, dtype=DTYPE)
        lo, hi = math.log(self.b_flat), math.log(self.b_sharp)
        return lo + (hi - lo) * 0.5 * (1.0 - torch.tanh(self.steepness * u))

    def b(self, u):
        return torch.exp(self.log_b(u))

    def db(self, u):
        lo, hi = math.log(self.b_flat), math.log(self.b_sharp)
        sech2 = 1.0 - torch.tanh(self.steepness * u) ** 2
        return self.b(u) * (hi - lo) * (-0.5 * self.steepness * sech2)

    def d2b(self, u):
        lo, hi = math.log(self.b_flat), math.log(self.b_sharp)
        c = (hi - lo) * (-0.5 * self.steepness)
        t = torch.tanh(self.steepness * u)
        dlog = c * (1.0 - t * t)
        d2log = c * (-2.0 * t * (1.0 - t * t) * self.steepness)
        return self.b(u) * (dlog * dlog + d2log)

    def marginal_free_energy(self, u, D: float):
        """a(u) + (D / 2) log b(u): minus D log of the exact marginal density of u at temperature D."""
        return self.a(u) + 0.5 * D * self.log_b(u)

    def U(self, x):
        x = _points(x, 2)
        u, v = x[:, 0], x[:, 1]
        return self.a(u) + 0.5 * self.b(u) * v * v

    def grad(self, x):
        x = _points(x, 2)
        u, v = x[:, 0], x[:, 1]
        return torch.stack([self.da(u) + 0.5 * self.db(u) * v * v, self.b(u) * v], dim=1)

    def hessian(self, x):
        x = _points(x, 2)
        u, v = x[:, 0], x[:, 1]
        huu = self.d2a(u) + 0.5 * self.d2b(u) * v * v
        huv = self.db(u) * v
        hvv = self.b(u)
        return torch.stack([torch.stack([huu, huv], -1), torch.stack([huv, hvv], -1)], -2)


class AutogradLandscape(Landscape):
    """Any potential ``U_fn`` mapping one point (dim,) to a scalar (torch ops), with gradient, Hessian and
    Laplacian by torch.func (vmapped over the points)."""

    def __init__(self, U_fn: Callable[[torch.Tensor], torch.Tensor], dim: int):
        if not callable(U_fn):
            raise ValueError(f"U_fn must be a callable on one point of shape (dim,), got {type(U_fn).__name__}")
        self.dim = check_positive_int("dim", dim)
        self._U = U_fn
        self._vU = torch.func.vmap(U_fn)
        self._vgrad = torch.func.vmap(torch.func.grad(U_fn))
        self._vhess = torch.func.vmap(torch.func.hessian(U_fn))

    def U(self, x):
        return self._vU(_points(x, self.dim))

    def grad(self, x):
        return self._vgrad(_points(x, self.dim))

    def hessian(self, x):
        return self._vhess(_points(x, self.dim))


# ------------------------------------------------------------------------------------------------- dynamics
def noise_generator(seed: int, device, purpose: str = "langevin.noise") -> torch.Generator:
    """The generator of the Langevin noise: a generator on ``device`` seeded with
    ``derived_seed(seed, purpose)`` (one stream per purpose; same seed and device -> same noise)."""
    g = torch.Generator(device=device)
    g.manual_seed(derived_seed(check_seed("seed", seed), purpose))
    return g


def _grad_fn(grad_U):
    if isinstance(grad_U, Landscape):
        return grad_U.grad
    if not callable(grad_U):
        raise ValueError(f"grad_U must be a Landscape or a callable (n, d) -> (n, d), got {type(grad_U).__name__}")
    return grad_U


def _start(x0, n_particles, dev):
    x0 = torch.as_tensor(np.asarray(x0.detach().cpu() if torch.is_tensor(x0) else x0, dtype=np.float64))
    if x0.ndim == 0:
        x0 = x0.reshape(1)
    if x0.ndim == 1:
        if n_particles is None:
            raise ValueError("n_particles is needed when x0 is one point of shape (d,)")
        x0 = x0[None, :].expand(n_particles, -1)
    elif x0.ndim != 2:
        raise ValueError(f"x0 must have shape (d,) or (n_particles, d), got {tuple(x0.shape)}")
    elif n_particles is not None and x0.shape[0] != n_particles:
        raise ValueError(f"x0 has {x0.shape[0]} rows but n_particles={n_particles}")
    return x0.to(dev, DTYPE).clone()


def _diffusion(D, n, dev):
    """D as a float or an (n, 1) tensor (one diffusion constant per particle)."""
    if np.ndim(D) == 0:
        return check_positive_real("D", float(D))
    d = np.asarray(D, dtype=np.float64)
    if d.shape != (n,) or not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"D must be a number > 0 or an array of n_particles={n} numbers > 0, got shape {d.shape}")
    return torch.as_tensor(d, device=dev, dtype=DTYPE)[:, None]


def simulate(grad_U, x0, D, dt, n_steps, n_particles=None, seed=0, record_every=1, device="auto"):
    """Euler-Maruyama for all particles at once: x <- x - grad U(x) dt + sqrt(2 D dt) xi.

    ``grad_U`` a Landscape or a callable on (n, d) tensors; ``x0`` of shape (d,) (with ``n_particles``) or
    (n, d); ``D`` a number > 0 or one per particle; xi from ``noise_generator(seed, device)``.  Returns the
    trajectory, a tensor (n_records, n, d) holding x0 and every ``record_every``-th state.
    """
    dt = check_positive_real("dt", dt)
    n_steps = check_positive_int("n_steps", n_steps, minimum=0)
    record_every = check_positive_int("record_every", record_every)
    if n_particles is not None:
        n_particles = check_positive_int("n_particles", n_particles)
    dev = get_device(device)
    g = _grad_fn(grad_U)
    x = _start(x0, n_particles, dev)
    Dv = _diffusion(D, x.shape[0], dev)
    amp = torch.sqrt(2.0 * Dv * dt) if torch.is_tensor(Dv) else math.sqrt(2.0 * Dv * dt)
    gen = noise_generator(seed, dev)
    out = [x.clone()]
    for k in range(1, n_steps + 1):
        x = x - g(x) * dt + amp * torch.randn(x.shape, generator=gen, device=dev, dtype=DTYPE)
        if k % record_every == 0:
            out.append(x.clone())
    return torch.stack(out)


class PassageTimes(np.ndarray):
    """First-passage times (one per particle, ``inf`` where the particle never arrived) as a NumPy array,
    with ``n_arrived``, ``n_not_arrived``, ``dt``, ``max_steps`` (and ``horizon`` = dt * max_steps)."""

    def __new__(cls, times, dt, max_steps):
        obj = np.asarray(times, dtype=np.float64).view(cls)
        obj.dt = float(dt)
        obj.max_steps = int(max_steps)
        return obj

    def __array_finalize__(self, obj):
        self.dt = getattr(obj, "dt", float("nan"))
        self.max_steps = getattr(obj, "max_steps", 0)

    @property
    def n_arrived(self) -> int:
        return int(np.isfinite(np.asarray(self)).sum())

    @property
    def n_not_arrived(self) -> int:
        return int(np.size(self) - self.n_arrived)

    @property
    def horizon(self) -> float:
        return self.dt * self.max_steps

    def describe(self) -> str:
        return (f"{self.n_arrived} of {np.size(self)} particles arrived within {self.max_steps} steps "
                f"(t <= {self.horizon:g}); {self.n_not_arrived} never arrived")


def first_passage_times(grad_U, x0, target, D, dt, n_particles, max_steps, seed, *, device="auto",
                        compact_every=200, block=64, progress=False):
    """The time at which each particle first satisfies ``target`` under dx = -grad U dt + sqrt(2 D) dW.

    Euler-Maruyama with step ``dt`` for ``n_particles`` particles at once, in any dimension.  ``target`` maps
    (n, d) positions to a boolean mask of arrived particles; time = dt * (first step at which it is true);
    a particle that starts inside the target still needs one step.  Arrived particles are dropped from the
    simulation every ``compact_every`` steps, so the cost follows the survivors.  ``D`` is a number > 0 or one
    per particle.  The noise for ``block`` steps is drawn at once from ``noise_generator(seed, device)``.

    Returns a :class:`PassageTimes` array of shape (n_particles,) with ``inf`` for particles that did not arrive
    within ``max_steps`` (counted in ``n_not_arrived``; a UserWarning gives the counts).
    """
    dt = check_positive_real("dt", dt)
    n_particles = check_positive_int("n_particles", n_particles)
    max_steps = check_positive_int("max_steps", max_steps)
    check_seed("seed", seed)
    compact_every = check_positive_int("compact_every", compact_every)
    block = check_positive_int("block", block)
    check_bool("progress", progress)
    if not callable(target):
        raise ValueError(f"target must be a callable (n, d) -> boolean mask, got {type(target).__name__}")
    dev = get_device(device)
    g = _grad_fn(grad_U)
    x = _start(x0, n_particles, dev)
    Dv = _diffusion(D, n_particles, dev)
    amp = torch.sqrt(2.0 * Dv * dt) if torch.is_tensor(Dv) else math.sqrt(2.0 * Dv * dt)
    gen = noise_generator(seed, dev)
    idx = torch.arange(n_particles, device=dev)
    first = torch.full((n_particles,), -1, dtype=torch.long, device=dev)   # over the active particles
    times = np.full(n_particles, np.inf)
    bar = progress_bar(max_steps, "first passages", progress)
    step = 0
    while step < max_steps and x.shape[0] > 0:
        m = min(block, max_steps - step)
        noise = torch.randn((m,) + tuple(x.shape), generator=gen, device=dev, dtype=DTYPE).mul_(amp)
        for j in range(m):
            step += 1
            x = torch.add(x, g(x), alpha=-dt).add_(noise[j])
            hit = target(x)
            if step == 1 and (not torch.is_tensor(hit) or hit.dtype != torch.bool or hit.shape != first.shape):
                raise ValueError(f"target must return a boolean mask of shape ({x.shape[0]},), got "
                                 f"{getattr(hit, 'dtype', type(hit))} {tuple(getattr(hit, 'shape', ()))}")
            first.masked_fill_(hit & (first < 0), step)
            if step % compact_every == 0:
                break
        if bar is not None:
            bar.update(m if step % compact_every else j + 1)
        done = first >= 0
        if bool(done.any()):
            times[idx[done].cpu().numpy()] = first[done].cpu().numpy() * dt
            keep = ~done
            x, idx, first = x[keep], idx[keep], first[keep]
            if torch.is_tensor(amp):
                amp = amp[keep]
    if bar is not None:
        bar.close()
    out = PassageTimes(times, dt, max_steps)
    if out.n_not_arrived:
        warnings.warn(f"first_passage_times: {out.n_not_arrived} of {n_particles} particles never reached the "
                      f"target within max_steps={max_steps} (t <= {out.horizon:g}); their times are inf",
                      UserWarning, stacklevel=2)
    return out


@dataclass
class MeanPassage:
    """Mean first-passage time over the arrived particles, its standard error, and the counts."""
    mean: float
    se: float
    n_arrived: int
    n_not_arrived: int

    @property
    def censored(self) -> bool:
        return self.n_not_arrived > 0


def mean_first_passage(times, allow_censored: bool = False) -> MeanPassage:
    """Mean +- SE (std / sqrt(n)) of first-passage times.  Raises when some particles never arrived (the mean
    of the arrived ones underestimates the true mean) unless ``allow_censored``; then the result's
    ``censored`` flag is True and the mean is over the arrived particles only."""
    check_bool("allow_censored", allow_censored)
    t = np.asarray(times, dtype=np.float64).ravel()
    if t.size == 0 or np.any(np.isnan(t)):
        raise ValueError("times must be a non-empty array of first-passage times (inf for non-arrivals), no NaN")
    ok = np.isfinite(t)
    n_bad = int((~ok).sum())
    if n_bad and not allow_censored:
        raise ValueError(f"times: {n_bad} of {t.size} particles never arrived, so their mean is censored; raise "
                         "max_steps, use censored_rate_mle, or pass allow_censored=True")
    a = t[ok]
    if a.size < 2:
        raise ValueError(f"times: a standard error needs >= 2 arrivals, got {a.size}")
    return MeanPassage(float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size)), int(a.size), n_bad)


def censored_rate_mle(times, horizon: float | None = None):
    """Maximum-likelihood rate of an exponential law from right-censored times: events / total observed time
    (a non-arrival is observed until ``horizon``, default ``times.horizon``).  Returns (rate, se) with
    se = rate / sqrt(events)."""
    t = np.asarray(times, dtype=np.float64).ravel()
    if horizon is None:
        horizon = getattr(times, "horizon", None)
    ok = np.isfinite(t)
    if (~ok).any() and horizon is None:
        raise ValueError("horizon is needed for censored times (pass it, or give a PassageTimes array)")
    events = int(ok.sum())
    if events == 0:
        raise ValueError("times: no particle arrived, the rate cannot be estimated")
    total = float(t[ok].sum() + (~ok).sum() * (horizon if (~ok).any() else 0.0))
    rate = events / total
    return rate, rate / math.sqrt(events)


# -------------------------------------------------------------------------------------------------- actions
def _path(path, landscape):
    p = torch.as_tensor(path, dtype=DTYPE) if not torch.is_tensor(path) else path.to(DTYPE)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[-1] != landscape.dim or p.shape[1] < 2:
        raise ValueError(f"path must have shape (n_paths, T+1, {landscape.dim}) with T >= 1, got {tuple(p.shape)}")
    return p


def _mid_terms(p, landscape):
    mid = 0.5 * (p[:, 1:] + p[:, :-1])
    n, T, d = mid.shape
    flat = mid.reshape(-1, d)
    gU = landscape.grad(flat).reshape(n, T, d)
    lap = landscape.laplacian(flat).reshape(n, T)
    return gU, lap


def onsager_machlup_action(path, landscape: Landscape, D, dt):
    """The discretised Onsager-Machlup action of eq. (6) of Achille et al. 2019 for paths (n_paths, T+1, d):

        S = sum_k dt [ |(w_{k+1} - w_k)/dt + grad U(wbar_k)|^2 / (4 D) - Laplacian U(wbar_k) / 2 ],

    wbar_k the midpoint (Stratonovich).  Sign convention: the SDE is dw = -grad U dt + sqrt(2D) dW, i.e. the
    paper's f = -grad U (the paper writes f = grad U, with ``w' - f``), so div f = -Laplacian U.  Returns (n_paths,).
    """
    D = check_positive_real("D", D)
    dt = check_positive_real("dt", dt)
    p = _path(path, landscape)
    vel = (p[:, 1:] - p[:, :-1]) / dt
    gU, lap = _mid_terms(p, landscape)
    return (dt * (((vel + gU) ** 2).sum(-1) / (4.0 * D) - 0.5 * lap)).sum(-1)


@dataclass
class PathFactors:
    """eq. (9)-(10): action = static + reachability; static = [U(w_T) - U(w_0)] / (2D) (endpoints only),
    reachability = (1/2D) sum dt [|w'|^2 / 2 + V(wbar)], V = |grad U|^2 / 2 - D Laplacian U (eq. 8)."""
    static: torch.Tensor
    reachability: torch.Tensor

    @property
    def total(self):
        return self.static + self.reachability


def path_factors(path, landscape: Landscape, D, dt) -> PathFactors:
    """The split of eq. (10) for discretised paths; ``static + reachability`` equals
    :func:`onsager_machlup_action` up to O(dt^2) per unit time (the midpoint rule for the integral of
    grad U . w')."""
    D = check_positive_real("D", D)
    dt = check_positive_real("dt", dt)
    p = _path(path, landscape)
    vel = (p[:, 1:] - p[:, :-1]) / dt
    gU, lap = _mid_terms(p, landscape)
    V = 0.5 * (gU**2).sum(-1) - D * lap
    reach = (dt * (0.5 * (vel**2).sum(-1) + V)).sum(-1) / (2.0 * D)
    U0 = landscape.U(p[:, 0])
    UT = landscape.U(p[:, -1])
    return PathFactors((UT - U0) / (2.0 * D), reach)


@dataclass
class Instanton:
    """The most probable discretised path between fixed endpoints in a fixed time."""
    path: torch.Tensor        # (T+1, d)
    action: float             # the minimised action (Onsager-Machlup, or Freidlin-Wentzell)
    static: float
    reachability: float


def freidlin_wentzell_action(path, landscape: Landscape, D, dt):
    """The small-noise (Freidlin-Wentzell) action sum_k dt |(w_{k+1} - w_k)/dt + grad U(wbar_k)|^2 / (4 D): the
    Onsager-Machlup action without its divergence term -Laplacian U / 2, which is O(D) relative to it."""
    D = check_positive_real("D", D)
    dt = check_positive_real("dt", dt)
    p = _path(path, landscape)
    vel = (p[:, 1:] - p[:, :-1]) / dt
    gU, _ = _mid_terms(p, landscape)
    return (dt * ((vel + gU) ** 2).sum(-1) / (4.0 * D)).sum(-1)


def most_probable_path(landscape: Landscape, start, end, duration, n_steps, D, n_iter=200, init=None,
                       include_divergence=True):
    """Minimise the discretised Onsager-Machlup action over the interior points of a path from ``start`` to
    ``end`` in time ``duration`` with ``n_steps`` steps (L-BFGS from the straight line, or from ``init``
    of shape (n_steps+1, d)).  ``include_divergence=False`` minimises the Freidlin-Wentzell action instead
    (the D -> 0 limit).  Caution: with the divergence term the action is not bounded below as the duration
    grows (a path may linger where Laplacian U is large), so the minimiser at finite D and long durations
    ranks paths by curvature, not by the probability of their endpoint."""
    D = check_positive_real("D", D)
    check_bool("include_divergence", include_divergence)
    objective = onsager_machlup_action if include_divergence else freidlin_wentzell_action
    duration = check_positive_real("duration", duration)
    n_steps = check_positive_int("n_steps", n_steps, minimum=2)
    n_iter = check_positive_int("n_iter", n_iter)
    d = landscape.dim
    a = torch.as_tensor(np.asarray(start, dtype=np.float64).reshape(d))
    b = torch.as_tensor(np.asarray(end, dtype=np.float64).reshape(d))
    dt = duration / n_steps
    if init is None:
        s = torch.linspace(0, 1, n_steps + 1, dtype=DTYPE)[:, None]
        init = a + s * (b - a)
    init = torch.as_tensor(init, dtype=DTYPE)
    inner = init[1:-1].clone().requires_grad_(True)
    opt = torch.optim.LBFGS([inner], max_iter=n_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                            tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        p = torch.cat([a[None], inner, b[None]])[None]
        s_ = objective(p, landscape, D, dt).sum()
        s_.backward()
        return s_

    opt.step(closure)
    with torch.no_grad():
        p = torch.cat([a[None], inner.detach(), b[None]])
        f = path_factors(p[None], landscape, D, dt)
        s_ = objective(p[None], landscape, D, dt)
    return Instanton(p, float(s_[0]), float(f.static[0]), float(f.reachability[0]))


# ----------------------------------------------------------------------------------------------- potentials
def log_det_positive(H) -> torch.Tensor:
    """log |H|_+ : the sum of the logs of the positive eigenvalues of each symmetric matrix in H (..., d, d)
    (the paper's determinant of the positive part of the Hessian)."""
    H = torch.as_tensor(H, dtype=DTYPE) if not torch.is_tensor(H) else H.to(DTYPE)
    if H.ndim < 2 or H.shape[-1] != H.shape[-2]:
        raise ValueError(f"H must be (..., d, d) square matrices, got {tuple(H.shape)}")
    ev = torch.linalg.eigvalsh(0.5 * (H + H.transpose(-1, -2)))
    return torch.where(ev > 0, torch.log(torch.clamp(ev, min=1e-300)), torch.zeros_like(ev)).sum(-1)


def effective_potential(U_values, log_det, D, coefficient=1.0):
    """U + coefficient * D * log_det.

    ``coefficient = 1`` is the effective potential U + D log|HU| written in section 5.2 of Achille et al. 2019;
    ``coefficient = 1/2`` is the Laplace (Gaussian) free energy of the directions whose curvature is in
    ``log_det``: integrating exp(-(a + b v^2 / 2) / D) over v gives a marginal density of u proportional to
    exp(-[a(u) + (D/2) log b(u)] / D).
    """
    D = check_positive_real("D", D)
    coefficient = check_real_in("coefficient", coefficient, 0.0, 1e6)
    return torch.as_tensor(U_values, dtype=DTYPE) + coefficient * D * torch.as_tensor(log_det, dtype=DTYPE)


# ---------------------------------------------------------------------------------------------------- rates
def kramers_rate(barrier, curvature_min, curvature_saddle, D):
    """Overdamped Kramers escape rate in 1-D, k = sqrt(U''_min |U''_saddle|) / (2 pi) exp(-barrier / D).

    Multi-D (Langer): k = |lambda_s| / (2 pi) sqrt(det H_min / |det H_saddle|) exp(-barrier / D), lambda_s the
    negative Hessian eigenvalue at the saddle.  Asymptotic in barrier / D: at barrier / D of 4-5 the true mean
    escape time exceeds 1 / k by about ten percent.
    """
    barrier = check_positive_real("barrier", barrier)
    cm = check_positive_real("curvature_min", curvature_min)
    cs = abs(check_real_in("curvature_saddle", curvature_saddle, -1e300, 1e300))
    if cs == 0:
        raise ValueError("curvature_saddle must be non-zero (negative at a barrier top)")
    D = check_positive_real("D", D)
    return math.sqrt(cm * cs) / (2.0 * math.pi) * math.exp(-barrier / D)


def mean_first_passage_1d(U_fn, start, end, D, lower=None, n_grid=20001):
    """Exact mean first-passage time from ``start`` to ``end`` (> start) in 1-D, reflecting at ``lower``:

        T = (1/D) int_start^end exp(U(y)/D) int_lower^y exp(-U(z)/D) dz dy

    by the trapezoid rule on ``n_grid`` points from ``lower`` to ``end``, in shifted exponentials (no overflow).
    ``U_fn`` maps a float64 tensor (or array) of points to U; a Landscape works.  ``lower`` defaults to a point
    left of ``start`` where U exceeds its value at ``start`` by 40 D (so it acts as minus infinity).
    """
    D = check_positive_real("D", D)
    start = check_real_in("start", start, -1e12, 1e12)
    end = check_real_in("end", end, -1e12, 1e12)
    if end <= start:
        raise ValueError(f"end must be > start, got start={start:g}, end={end:g}")
    n_grid = check_positive_int("n_grid", n_grid, minimum=101)

    def U(x):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if isinstance(U_fn, Landscape):
            return U_fn.U(x[:, None]).numpy()
        return np.asarray(U_fn(x), dtype=np.float64)

    if lower is None:
        u0 = float(U(np.array([start]))[0])
        step = max(1e-3, 0.1 * (end - start))
        lower = start - step
        for _ in range(200):
            if float(U(np.array([lower]))[0]) - u0 > 40.0 * D:
                break
            step *= 1.3
            lower = start - step
        else:
            raise ValueError("lower: U does not grow to the left of start; pass lower explicitly")
    lower = check_real_in("lower", lower, -1e12, start)
    x = np.linspace(lower, end, n_grid)
    u = U(x)
    m = u.min()
    w = np.exp(-(u - m) / D)                              # <= 1
    inner = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(x))])   # int_lower^y e^{-(U-m)/D}
    sel = x >= start
    xs, us, ins = x[sel], u[sel], inner[sel]
    xs = np.concatenate([[start], xs])
    us = np.concatenate([U(np.array([start])), us])
    ins = np.concatenate([[np.interp(start, x, inner)], ins])
    with np.errstate(divide="ignore"):
        logf = (us - m) / D + np.log(ins)                 # log of e^{U/D} e^{-m/D} inner
    top = logf.max()
    f = np.exp(logf - top)
    return float(np.exp(top) * np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(xs)) / D)
