"""Replica saddle-point solver for L2-regularised classification on Gaussian covariates.

The Gaussian covariate model (Loureiro et al. 2021, used in section 3 of Gerace et al. 2022)
replaces a fixed feature map by Gaussian features with the same second moments:

    (c, v) ~ N(0, [[I_L, Phi], [Phi^T, Omega]]),     y = sign(c . theta / sqrt(L)),

with latent c in R^L, features v in R^H, Omega = E[v v^T] (H x H) and Phi = E[c v^T] (L x H).
The student minimises  sum_mu loss(y_mu, v_mu . w / sqrt(H)) + (lam / 2) ||w||^2  on M = alpha H
samples.  As H, L, M -> infinity at fixed ratios, its test error is

    eps_g = arccos(m / sqrt(rho q)) / pi                                         (eq. 15)

where rho = ||theta||^2 / L, q = w^T Omega w / H and m = theta^T Phi w / sqrt(L H) are the
fixed point of the saddle-point equations below (eqs. 9-14 with the misprints of the paper
corrected; our own derivation and normalisation).

Write b = Phi^T theta / sqrt(L) (the covariance of the features with the teacher field),
Omega = U diag(omega) U^T and b_i = (U^T b)_i.  *Prior* (entropic) equations:

    V = (1/H) sum_i omega_i / (lam + Vh omega_i)
    m = mh  sum_i b_i^2 / (lam + Vh omega_i)
    q = mh^2 sum_i b_i^2 omega_i / (lam + Vh omega_i)^2 + (qh / H) sum_i omega_i^2 / (lam + Vh omega_i)^2

*Channel* (energetic) equations, with xi ~ N(0, 1), omega = sqrt(q) xi, the teacher field
given omega distributed as N(m xi / sqrt(q), V0), V0 = rho - m^2 / q, so that
Z0(y) = P(y | xi) = H(-y m xi / sqrt(q V0)) with H the Gaussian tail, and the proximal point
z*(y, omega) = argmin_z [(z - omega)^2 / (2V) + loss(y, z)]:

    Vh = -alpha E_xi sum_y Z0(y) d f/d omega
    qh =  alpha E_xi sum_y Z0(y) f^2
    mh =  alpha E_xi sum_y dZ0(y)/d(omega0) f,          f = (z* - omega) / V.

For the logistic loss, t = y z* solves t = y omega + V sigmoid(-t) (Newton's method kept
on the root's side of the inflection point t = 0, where it converges monotonically); f = y sigmoid(-t) and
df/domega = -s / (1 + V s) with s = sigmoid(t) sigmoid(-t).  For the square loss,
(y - z)^2 / 2, every quantity is explicit (ridge regression).

The xi-integrals use a fixed trapezoid rule; everything is vectorised over the grid of
(teacher, alpha, lam) points, after a single eigendecomposition of Omega.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .device import get_device
from .validation import check_choice, check_positive_int, check_positive_real, check_real_in

__all__ = ["SaddlePoint", "solve_saddle_point", "LOSSES"]

LOSSES = ("logistic", "square")


@dataclass
class SaddlePoint:
    """Fixed point of the saddle-point equations for every grid point.

    Arrays have shape ``teachers + alpha.shape + lam.shape`` (``teachers`` is () for one
    teacher theta of shape (L,), (T,) for a stack (T, L)).

    ``eps_g`` test (classification) error, eq. (15); ``m``, ``q``, ``V`` overlaps and
    ``m_hat``, ``q_hat``, ``V_hat`` their conjugates; ``rho`` the teacher norm;
    ``train_loss`` the training loss per sample; ``train_error`` the fraction of
    misclassified training samples; ``converged`` per-point flags; ``iterations``
    per-point iteration counts; ``residual`` the last relative change.
    """

    eps_g: np.ndarray
    m: np.ndarray
    q: np.ndarray
    V: np.ndarray
    m_hat: np.ndarray
    q_hat: np.ndarray
    V_hat: np.ndarray
    rho: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    residual: np.ndarray
    alpha: np.ndarray
    lam: np.ndarray
    loss: str


def _as_tensor(x, name, dtype, device):
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device=device, dtype=dtype)
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _grid_values(x, name, dtype, device):
    t = _as_tensor(x, name, dtype, device)
    if t.dim() > 1:
        raise ValueError(f"{name} must be a positive scalar or a 1-D array of positive values, got shape {tuple(t.shape)}")
    if t.numel() == 0 or bool((t <= 0).any()):
        raise ValueError(f"{name} must be > 0 (a scalar or a 1-D array of positive values), got {x!r}")
    return t


def _logistic_prox(u, V, t0, max_iter=100, tol=1e-12):
    """Solve t = u + V sigmoid(-t) elementwise (t = y z*) by Newton's method from ``t0``.

    g(t) = t - u - V sigmoid(-t) is increasing, convex for t < 0 and concave for t > 0,
    and the sign of g(0) = -u - V/2 tells on which side of 0 the root lies.  Newton
    iterates kept on that side (clamped at 0) converge monotonically once they sit between
    0 and the root, so a warm start ``t0`` is safe; unclamped Newton from an arbitrary start
    can fall into a 2-cycle across the inflection point.
    """
    right = (u + 0.5 * V) > 0                                                  # root > 0
    t = torch.where(right, t0.clamp_min(0.0), t0.clamp_max(0.0))
    for _ in range(max_iter):
        sm = torch.sigmoid(-t)
        tn = t - (t - u - V * sm) / (1 + V * sm * (1 - sm))
        tn = torch.where(right, tn.clamp_min(0.0), tn.clamp_max(0.0))
        step = float((tn - t).abs().max())
        t = tn
        if step < tol * (1 + float(t.abs().max())):
            return t
    raise FloatingPointError(f"logistic proximal point did not converge in {max_iter} Newton steps "
                             f"(last step {step:.2e})")


class _Channel:
    """Energetic part: hats from overlaps, by quadrature over xi ~ N(0, 1)."""

    def __init__(self, loss, n_nodes, dtype, device, xi_max=8.0):
        self.loss = loss
        xi = torch.linspace(-xi_max, xi_max, n_nodes, dtype=dtype, device=device)
        h = xi[1] - xi[0]
        w = torch.full_like(xi, float(h))
        w[0] = w[-1] = 0.5 * float(h)
        self.xi = xi
        self.w = w * torch.exp(-0.5 * xi**2) / math.sqrt(2 * math.pi)       # Gaussian measure weights

    def __call__(self, alpha, rho, m, q, V, t_prev):
        xi, w = self.xi, self.w
        V0 = torch.clamp(rho - m**2 / q, min=1e-14 * rho)
        a = (m / torch.sqrt(q * V0)).unsqueeze(-1)                              # (P, 1)
        omega = torch.sqrt(q).unsqueeze(-1) * xi                                  # (P, N)
        Z_plus = torch.special.ndtr(a * xi)                                       # P(y = +1 | xi)
        Z_minus = 1 - Z_plus
        dZ = torch.exp(-0.5 * (a * xi) ** 2) / math.sqrt(2 * math.pi) / torch.sqrt(V0).unsqueeze(-1)  # y dZ0/domega0
        Vc = V.unsqueeze(-1)
        al = alpha
        if self.loss == "logistic":
            u = torch.stack([omega, -omega])                                      # y omega for y = +1, -1
            t = _logistic_prox(u, Vc.unsqueeze(0), t_prev if t_prev is not None else torch.zeros_like(u))
            sm = torch.sigmoid(-t)
            s = sm * (1 - sm)
            Z = torch.stack([Z_plus, Z_minus])
            Vh = al * ((Z * s / (1 + Vc * s)).sum(0) * w).sum(-1)
            qh = al * ((Z * sm**2).sum(0) * w).sum(-1)
            mh = al * ((dZ * (sm[0] + sm[1])) * w).sum(-1)
            train_loss = ((Z * torch.nn.functional.softplus(-t)).sum(0) * w).sum(-1)
            train_err = ((Z * (t < 0)).sum(0) * w).sum(-1)
            return Vh, qh, mh, train_loss, train_err, t
        # square loss (ridge): z* = (omega + V y) / (1 + V), every hat explicit
        c = torch.sqrt(2 / (math.pi * rho))                                       # E[y omega] = c m
        Vh = al / (1 + V)
        mh = al * c / (1 + V)
        qh = al * (1 + q - 2 * c * m) / (1 + V) ** 2
        train_loss = (1 + q - 2 * c * m) / (2 * (1 + V) ** 2)
        # a training sample is misclassified when y omega < -V
        err_plus = (omega < -Vc).to(omega.dtype)
        err_minus = (omega > Vc).to(omega.dtype)
        train_err = ((Z_plus * err_plus + Z_minus * err_minus) * w).sum(-1)
        return Vh, qh, mh, train_loss, train_err, None


def _prior(omega_eig, bb, lam, Vh, qh, mh):
    """Entropic part: overlaps (V, q, m) from hats, in the eigenbasis of Omega."""
    H = omega_eig.shape[0]
    d = lam.unsqueeze(-1) + Vh.unsqueeze(-1) * omega_eig                        # (P, H)
    V = (omega_eig / d).sum(-1) / H
    m = mh * (bb / d).sum(-1)
    q = mh**2 * (bb * omega_eig / d**2).sum(-1) + qh / H * (omega_eig**2 / d**2).sum(-1)
    return V, q, m


def solve_saddle_point(Omega, Phi, theta, alpha, lam, loss: str = "logistic", *, tol: float = 1e-8,
                       max_iter: int = 2000, damping: float = 0.7, n_nodes: int = 201,
                       newton_after: int = 300, device=None,
                       dtype=torch.float64, warn: bool = True) -> SaddlePoint:
    """Solve the replica saddle-point equations on a whole grid of (teacher, alpha, lam).

    Parameters
    ----------
    Omega : (H, H) symmetric positive semi-definite array (NumPy or torch), E[v v^T].
    Phi : (L, H) array, E[c v^T].
    theta : (L,) teacher, or (T, L) for T teachers sharing Omega and Phi (e.g. several q).
    alpha : float > 0 or 1-D array of them, samples per feature M / H.
    lam : float > 0 or 1-D array of them, the ridge strength.
    loss : "logistic" (default) or "square" (ridge regression on the +-1 labels).
    tol : relative change of (m, q, V) below which a point has converged (default 1e-8).
    max_iter : iterations allowed per point (default 2000): damped fixed-point steps first,
        then Newton steps (each costs four evaluations of the equations).
    newton_after : damped steps before a point that has not converged switches to Newton's
        method on (log m, log q, log V) (default 300).
    damping : initial weight of the new iterate in the damped iteration, in (0, 1]; it is
        adapted per point (shrunk when the residual grows).
    n_nodes : trapezoid nodes of the xi-quadrature on [-8, 8] (default 201; 101 nodes change eps_g by ~1e-6, 201 by ~1e-10).
    device : where to compute (default: tasknb's choice, CUDA when present).
    warn : emit a RuntimeWarning naming the points that did not converge.

    Returns
    -------
    SaddlePoint, arrays of shape ``teachers + alpha.shape + lam.shape``.
    """
    check_choice("loss", loss, LOSSES)
    tol = check_positive_real("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    damping = check_real_in("damping", damping, 1e-3, 1.0)
    n_nodes = check_positive_int("n_nodes", n_nodes, minimum=21)
    newton_after = check_positive_int("newton_after", newton_after, minimum=1)
    dev = get_device(device)
    Om = _as_tensor(Omega, "Omega", dtype, dev)
    Ph = _as_tensor(Phi, "Phi", dtype, dev)
    th = _as_tensor(theta, "theta", dtype, dev)
    if Om.dim() != 2 or Om.shape[0] != Om.shape[1]:
        raise ValueError(f"Omega must be a square (H, H) matrix, got shape {tuple(Om.shape)}")
    H = Om.shape[0]
    if Ph.dim() != 2 or Ph.shape[1] != H:
        raise ValueError(f"Phi must have shape (L, H) with H = {H} (Omega is {H}x{H}), got {tuple(Ph.shape)}")
    L = Ph.shape[0]
    single = th.dim() == 1
    th2 = th.unsqueeze(0) if single else th
    if th2.dim() != 2 or th2.shape[1] != L:
        raise ValueError(f"theta must have shape (L,) or (T, L) with L = {L} (Phi is {L}x{H}), got {tuple(th.shape)}")
    asym = float((Om - Om.T).abs().max())
    scale = float(Om.abs().max()) or 1.0
    if asym > 1e-8 * scale:
        raise ValueError(f"Omega must be symmetric; max |Omega - Omega^T| = {asym:.2e}")
    alpha_t = _grid_values(alpha, "alpha", dtype, dev)
    lam_t = _grid_values(lam, "lam", dtype, dev)

    omega_eig, U = torch.linalg.eigh(0.5 * (Om + Om.T))                       # the single eigendecomposition
    if float(omega_eig.min()) < -1e-8 * max(float(omega_eig.max()), 1e-300):
        raise ValueError(f"Omega must be positive semi-definite; its smallest eigenvalue is {float(omega_eig.min()):.3e}")
    omega_eig = omega_eig.clamp_min(0.0)
    b = th2 @ Ph / math.sqrt(L)                                                # (T, H): Cov(v, teacher field)
    bb = (b @ U) ** 2                                                          # (T, H) in the eigenbasis
    rho_T = (th2**2).sum(-1) / L
    pos = omega_eig > 1e-12 * float(omega_eig.max())
    explained = (bb[:, pos] / omega_eig[pos]).sum(-1)                          # b^T Omega^+ b
    leak = bb[:, ~pos].sum(-1)
    if bool((explained > rho_T * (1 + 1e-3)).any()) or bool((leak > 1e-8 * rho_T).any()):
        raise ValueError("Omega, Phi and theta are not the second moments of one Gaussian vector: the teacher "
                         "field is 'explained' beyond its variance (need ||theta||^2/L >= b^T Omega^+ b with "
                         "b = Phi^T theta / sqrt(L)); estimate Omega and Phi from the same samples")

    T, A, Lm = th2.shape[0], alpha_t.numel(), lam_t.numel()
    tt, aa, ll = torch.meshgrid(torch.arange(T, device=dev), torch.arange(A, device=dev),
                                torch.arange(Lm, device=dev), indexing="ij")
    tt, aa, ll = tt.reshape(-1), aa.reshape(-1), ll.reshape(-1)
    P = tt.numel()
    al, la, rho = alpha_t.reshape(-1)[aa], lam_t.reshape(-1)[ll], rho_T[tt]
    bbP = bb[tt]
    channel = _Channel(loss, n_nodes, dtype, dev)

    # start from hats ~ alpha (a point between no data and strong data)
    Vh, qh, mh = al.clone(), al.clone(), al * torch.sqrt(1 / rho)
    V, q, m = _prior(omega_eig, bbP, la, Vh, qh, mh)
    q = q.clamp_min(1e-300)
    d = torch.full((P,), damping, dtype=dtype, device=dev)
    residual = torch.full((P,), float("inf"), dtype=dtype, device=dev)
    iters = torch.zeros(P, dtype=torch.long, device=dev)
    active = torch.ones(P, dtype=torch.bool, device=dev)
    t_prev = None
    out_tl = torch.zeros(P, dtype=dtype, device=dev)
    out_te = torch.zeros(P, dtype=dtype, device=dev)
    hats = [Vh, qh, mh]
    for it in range(min(max_iter, newton_after)):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        tp = None if (t_prev is None or loss != "logistic") else t_prev[:, idx]
        Vh_i, qh_i, mh_i, tl, te, t_new = channel(al[idx], rho[idx], m[idx], q[idx], V[idx], tp)
        V_n, q_n, m_n = _prior(omega_eig, bbP[idx], la[idx], Vh_i, qh_i, mh_i)
        if loss == "logistic":
            if t_prev is None:
                t_prev = torch.zeros((2, P, n_nodes), dtype=dtype, device=dev)
            t_prev[:, idx] = t_new
        r = torch.stack([(m_n - m[idx]).abs() / m_n.abs().clamp_min(1e-300),
                         (q_n - q[idx]).abs() / q_n.clamp_min(1e-300),
                         (V_n - V[idx]).abs() / V_n.clamp_min(1e-300)]).amax(0)
        di = d[idx]
        grew = r > residual[idx]
        di = torch.where(grew, (di * 0.7).clamp_min(0.02), (di * 1.05).clamp_max(1.0))
        d[idx] = di
        residual[idx] = r
        m[idx] = (1 - di) * m[idx] + di * m_n
        q[idx] = (1 - di) * q[idx] + di * q_n
        V[idx] = (1 - di) * V[idx] + di * V_n
        Vh[idx], qh[idx], mh[idx] = Vh_i, qh_i, mh_i
        out_tl[idx], out_te[idx] = tl, te
        iters[idx] += 1
        done = r < tol
        active[idx[done]] = False

    # Points still moving after the damped phase (near the separability threshold the
    # damped map contracts very slowly): Newton's method on x = log(m, q, V) for the fixed
    # point f(x) = log G(exp x) - x = 0, with a finite-difference Jacobian and backtracking.
    idx = (active & (m > 0)).nonzero().squeeze(-1)
    if idx.numel() and max_iter > newton_after:
        sub = (al[idx], rho[idx], bbP[idx], la[idx])

        def fixed_point_map(x):
            mm, qq, VV = torch.exp(x).unbind(-1)
            hats = channel(sub[0], sub[1], mm, qq, VV, None)
            Vn, qn, mn = _prior(omega_eig, sub[2], sub[3], *hats[:3])
            return torch.log(torch.stack([mn.clamp_min(1e-300), qn.clamp_min(1e-300), Vn.clamp_min(1e-300)], -1)) - x, hats

        x = torch.log(torch.stack([m[idx], q[idx], V[idx]], -1))
        f, hats = fixed_point_map(x)
        live = torch.ones(idx.numel(), dtype=torch.bool, device=dev)
        eye3 = torch.eye(3, dtype=dtype, device=dev)
        x0, hats0, res0 = x.clone(), tuple(a[idx] for a in (Vh, qh, mh, out_tl, out_te)), residual[idx].clone()
        for _ in range(min(max_iter - newton_after, 60)):
            fn = f.abs().amax(-1)
            live = live & (fn >= tol)
            if not bool(live.any()):
                break
            h = 1e-6
            J = torch.stack([(fixed_point_map(x + h * eye3[j])[0] - f) / h for j in range(3)], -1)
            step = torch.linalg.solve(J + 1e-12 * eye3, -f.unsqueeze(-1)).squeeze(-1)
            step = torch.where(live.unsqueeze(-1), step, torch.zeros_like(step)).clamp(-2.0, 2.0)
            t = torch.ones(idx.numel(), dtype=dtype, device=dev)
            for _ in range(12):                                               # backtracking on |f|_inf
                xt = x + t.unsqueeze(-1) * step
                ft, hats_t = fixed_point_map(xt)
                better = ft.abs().amax(-1) < fn
                if bool((better | ~live).all()):
                    break
                t = torch.where(better, t, 0.5 * t)
            x = torch.where(better.unsqueeze(-1), xt, x)
            f = torch.where(better.unsqueeze(-1), ft, f)
            hats = tuple(torch.where(better, a, b) for a, b in zip(hats_t[:5], hats[:5]))
            iters[idx[live]] += 1
        # where Newton did not converge, keep the damped iterate (both are flagged unconverged)
        ok = f.abs().amax(-1) < tol
        x = torch.where(ok.unsqueeze(-1), x, x0)
        hats = tuple(torch.where(ok, a, b) for a, b in zip(hats[:5], hats0))
        f_res = torch.where(ok, f.abs().amax(-1), res0)
        mm, qq, VV = torch.exp(x).unbind(-1)
        m[idx], q[idx], V[idx] = mm, qq, VV
        Vh[idx], qh[idx], mh[idx] = hats[0], hats[1], hats[2]
        out_tl[idx], out_te[idx] = hats[3], hats[4]
        residual[idx] = f_res

    converged = residual < tol
    eps = torch.arccos(torch.clamp(m / torch.sqrt(rho * q), -1.0, 1.0)) / math.pi
    shape = (() if single else (T,)) + tuple(alpha_t.shape) + tuple(lam_t.shape)
    n_bad = int((~converged).sum())
    if warn and n_bad:
        warnings.warn(f"solve_saddle_point: {n_bad} of {P} points did not converge to tol={tol:g} in "
                      f"max_iter={max_iter} iterations (see .converged; largest residual "
                      f"{float(residual.max()):.2e})", RuntimeWarning, stacklevel=2)

    def out(x):
        return x.reshape(shape).cpu().numpy()

    return SaddlePoint(eps_g=out(eps), m=out(m), q=out(q), V=out(V), m_hat=out(mh), q_hat=out(qh),
                       V_hat=out(Vh), rho=out(rho), train_loss=out(out_tl), train_error=out(out_te),
                       converged=out(converged), iterations=out(iters), residual=out(residual),
                       alpha=alpha_t.cpu().numpy(), lam=lam_t.cpu().numpy(), loss=loss)
