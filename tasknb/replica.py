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

For the logistic loss, t = y z* solves t = y omega + V sigmoid(-t); f = y sigmoid(-t) and
df/domega = -s / (1 + V s) with s = sigmoid(t) sigmoid(-t).  For the square loss,
(y - z)^2 / 2, every quantity is explicit (ridge regression).

*Reduction to one integral.*  Z0(y | xi) = ndtr(y a xi) with a = m / sqrt(q V0), and every
summand depends on (y, omega) through u = y omega only, so the label y = -1 is the mirror
image (xi -> -xi) of y = +1 and, with p_q the N(0, q) density,

    E_xi sum_y Z0(y) F(y omega) = 2 int du p_q(u) ndtr(a u / sqrt(q)) F(u).

For the logistic loss the integral is taken over t = y z* instead of u: the map
u(t) = t - V sigmoid(-t) is explicit and increasing, du = (1 + V s(t)) dt, so no proximal
point is ever solved at a quadrature node and

    Vh = 2 alpha int dt p_q(u) ndtr(a u / sqrt q) s(t)
    qh = 2 alpha int dt p_q(u) ndtr(a u / sqrt q) sigmoid(-t)^2 (1 + V s)
    mh = 2 alpha int dt p_q(u) phi(a u / sqrt q) / sqrt(V0) sigmoid(-t) (1 + V s),

with phi the standard normal density; the training loss is 2 int p_q ndtr softplus(-t) (1 + V s) dt
and the training error (fraction with t < 0) 2 int_{t < 0} p_q ndtr (1 + V s) dt.

*Quadrature (adapts to the overlaps).*  The integrand varies on two kinds of scale: in u,
w = sqrt(q / (1 + a^2)) around u = 0 (the Gaussian p_q times the steep ndtr(a u / sqrt q) or
phi(a u / sqrt q)), growing to sqrt(q) in the tails; in t, O(1) around t = 0 (the sigmoid,
with poles at t = +-i pi) and its exp(-|t|) tails, which u(t) compresses by 1 + V/4 near t = 0.
The rule is composite Gauss-Legendre with ``n_nodes`` nodes per panel; its panel breakpoints,
placed per point from (m, q, V) at every evaluation, are the union of

* a graded mesh in u: 0 and +-d_k, d_k = (w/2) (2 X sqrt(q) / w)^(k / (K - 1)), k = 0 .. K-1
  (first panel w / 2, widths growing geometrically to the ends +-X sqrt(q), X = 10, beyond
  which the Gaussian mass is < 1e-22), mapped to t by the proximal map (Newton's method at
  these 2K + 1 points only);
* a graded mesh in t: 0 and +-d_k, d_k = R^(k / (K - 1)) (first panel 1, R the distance to
  each end) on [max(t(-X sqrt q), -50), t_hi], t_hi = min(t(X sqrt q), t0 + 50), t0 = t(u = 0);
  every logistic integrand decays like exp(-t) as t -> +inf, so the range is cut at t_hi.

K = 12, so 4K + 1 = 49 panels and, at the default 8 nodes per panel, 392 nodes per point.
Near the fast regions the panels are therefore one unit of t wide around t = 0, i.e.
(1 + V/4) / sqrt(q) in xi = u / sqrt(q), shrinking like 1 / sqrt(q) (the sigmoid), and
1 / (2 sqrt(1 + a^2)) in xi around xi = 0 (a steep ndtr); the breakpoint t = 0 integrates
the training error (an indicator) exactly, and the rule moves continuously with (m, q, V).
Accuracy: against a uniform fine grid in omega (tests/test_replica.py) over q in
[0.3, 1e6], V in [1e-3, 1e7] and a in [0.4, 100], the hats and training loss have relative
error below 1e-8 (median ~1e-12) with 8 nodes per panel, below 1e-10 with 10 and ~3e-7 with 6;
the training error is within 1e-14 of scipy.integrate.quad of the equivalent bivariate
normal probability.
For the square loss the graded mesh in u, joined with one centred at u = -V, integrates the
training error P(y omega < -V); its hats are explicit.

*Iteration and convergence.*  Damped fixed-point steps x <- x + d (G(x) - x) on
x = (m, q, V), G one application of the equations (channel, then prior); d is shrunk by 0.7
when a component of G(x) - x changes sign (oscillation) and grown by 1.1 (up to 1) otherwise.
Points not converged after ``newton_after`` steps switch to a Levenberg-Marquardt-damped
Newton method on log x (finite-difference Jacobian), which handles the slow contraction near
the separability threshold and on the separable side at small lam.  A point has converged
when max over (m, q, V) of |G(x) - x| / |G(x)| < ``tol`` with the accurate quadrature above:
the overlaps returned are G(x) and the conjugates those computed at x, so the prior
equations hold exactly and the channel equations to that relative residual.  Points that do
not converge are flagged in ``converged`` and a RuntimeWarning gives their number; they hold
their last finite iterate (never NaN).

Everything is vectorised over the grid of (teacher, alpha, lam) points, after a single
eigendecomposition of Omega (the channel is evaluated in chunks of points to bound memory).
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
    per-point iteration counts; ``residual`` the relative fixed-point residual
    max over (m, q, V) of |G(x) - x| / |G(x)|, G one undamped application of the
    saddle-point equations with the graded Gauss-Legendre quadrature of the module
    docstring (relative quadrature error below 1e-8); in the Newton phase the same
    quantity is evaluated as |1 - exp(-f)|, f = log G(x) - log x.

    ``converged`` is ``residual < tol``: the returned overlaps are a fixed point of the
    accurately integrated equations to relative tolerance ``tol`` (default 1e-8) in the
    residual; the distance to the exact fixed point is about residual / (1 - c), c the
    local contraction of the iteration, which Newton's phase makes small near the
    separability threshold.  Unconverged points hold their last (finite) iterate.
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
    can fall into a 2-cycle across the inflection point.  The solver starts from
    max(u, 0) (root > 0) or min(0, u + V) (root < 0), both on the root's monotone side, and
    needs it only at the 2K + 1 = 25 breakpoints of the u-mesh per point, to place the rule.
    Non-finite entries (never produced by the solver's iterates) are left as they are.
    """
    tol = max(tol, 16 * torch.finfo(u.dtype).eps)
    right = (u + 0.5 * V) > 0                                                  # root > 0
    t = torch.where(right, t0.clamp_min(0.0), t0.clamp_max(0.0))
    for _ in range(max_iter):
        sm = torch.sigmoid(-t)
        tn = t - (t - u - V * sm) / (1 + V * sm * (1 - sm))
        tn = torch.where(right, tn.clamp_min(0.0), tn.clamp_max(0.0))
        finite = torch.isfinite(tn) & torch.isfinite(t)
        step = float(torch.where(finite, (tn - t).abs(), torch.zeros_like(t)).max())
        t = tn
        if step < tol * (1 + float(torch.where(finite, t.abs(), torch.zeros_like(t)).max())):
            return t
    raise FloatingPointError(f"logistic proximal point did not converge in {max_iter} Newton steps "
                             f"(last step {step:.2e})")


#: half-width of the integration range, in standard deviations sqrt(q) of omega
_X_MAX = 10.0
#: width in t of the sigmoid's exponential corrections kept (exp(-50) ~ 2e-22)
_T_CUT = 50.0
#: panels per side of each of the two graded meshes (module docstring)
_PANELS_PER_SIDE = 12
#: channel evaluations are done in chunks of at most this many (point, node) pairs
_CHUNK_ELEMENTS = 1 << 21


class _Channel:
    """Energetic part: hats (and training loss / error) from overlaps, by the graded rule.

    ``order`` Gauss-Legendre nodes per panel; 4 K + 1 panels per point (K = ``panels``),
    placed per point from (m, q, V) as in the module docstring.
    """

    def __init__(self, loss, order, dtype, device, x_max=_X_MAX, panels=_PANELS_PER_SIDE,
                 chunk_elements=None):
        self.loss = loss
        gx, gw = np.polynomial.legendre.leggauss(order)
        self.gx = torch.as_tensor(gx, dtype=dtype, device=device)
        self.gw = torch.as_tensor(gw, dtype=dtype, device=device)
        self.x_max = float(x_max)
        self.grade = torch.arange(panels, dtype=dtype, device=device) / (panels - 1)  # exponents 0 .. 1
        self.n_nodes = (4 * panels + 1) * order
        self.chunk = max(1, (chunk_elements or _CHUNK_ELEMENTS) // self.n_nodes)

    def _graded(self, c, h, lo, hi):
        """Breakpoints c +- d_k, d_k = h (R/h)^(k/(K-1)) (k = 0 .. K-1) on each side, R the
        distance from c to that end of [lo, hi] (d = h everywhere when R < h); (P, 2K + 1)."""
        c = torch.minimum(torch.maximum(c, lo), hi)
        pts = [c.unsqueeze(-1)]
        for side, R in ((1.0, hi - c), (-1.0, c - lo)):
            log_ratio = torch.log(torch.clamp(R / h, min=1.0)).unsqueeze(-1)
            pts.append(c.unsqueeze(-1) + side * h.unsqueeze(-1) * torch.exp(log_ratio * self.grade))
        return torch.cat(pts, -1)

    def _rule(self, pts):
        """Nodes and weights (P, N) of the composite rule whose panels join the sorted
        breakpoints ``pts`` (P, B) (B - 1 panels; coinciding breakpoints give empty panels)."""
        pts = pts.sort(-1).values
        half = 0.5 * (pts[:, 1:] - pts[:, :-1])                                  # (P, panels)
        mid = 0.5 * (pts[:, 1:] + pts[:, :-1])
        nodes = (mid.unsqueeze(-1) + half.unsqueeze(-1) * self.gx).flatten(1)
        weights = (half.unsqueeze(-1) * self.gw).flatten(1)
        return nodes, weights

    def __call__(self, alpha, rho, m, q, V):
        P = alpha.shape[0]
        if P <= self.chunk:
            return self._evaluate(alpha, rho, m, q, V)
        parts = [self._evaluate(*(x[i:i + self.chunk] for x in (alpha, rho, m, q, V)))
                 for i in range(0, P, self.chunk)]
        return tuple(torch.cat(p) for p in zip(*parts))

    def _evaluate(self, alpha, rho, m, q, V):
        sq = torch.sqrt(q)
        V0 = torch.clamp(rho - m**2 / q, min=1e-14 * rho)
        a = m / torch.sqrt(q * V0)
        w = sq / torch.sqrt(1 + a**2)                                           # u-scale of p_q ndtr(a u / sqrt q)
        X = self.x_max
        zero = torch.zeros_like(sq)
        # graded mesh in u around u = 0 (first panel w / 2) out to +- X sqrt(q)
        u_pts = self._graded(zero, 0.5 * w, -X * sq, X * sq)
        if self.loss == "logistic":
            # its image in t (u(t) is increasing), joined with a graded mesh in t around t = 0
            Vb = V.unsqueeze(-1).expand_as(u_pts)
            start = torch.where(u_pts + 0.5 * Vb > 0, u_pts.clamp_min(0.0), (u_pts + Vb).clamp_max(0.0))
            t_pts = _logistic_prox(u_pts, Vb, start)
            # every logistic integrand decays like exp(-t) as t -> +inf: cut at t0 + T_CUT (t0 = t(u = 0))
            lo, hi = t_pts.amin(-1), torch.minimum(t_pts.amax(-1), t_pts[:, 0] + _T_CUT)
            t_pts = torch.minimum(t_pts, hi.unsqueeze(-1))
            # the sigmoid's exp(-|t|) corrections: a graded mesh in t from t = 0, first panel 1, over
            # [-T_CUT, hi] (beyond -T_CUT they are below exp(-T_CUT))
            t_sig = self._graded(zero, torch.ones_like(sq), torch.maximum(lo, torch.full_like(lo, -_T_CUT)), hi)
            t, wt = self._rule(torch.cat([t_pts, t_sig], -1))
            Vc = V.unsqueeze(-1)
            sm = torch.sigmoid(-t)
            s = sm * (1 - sm)
            J = 1 + Vc * s                                                        # du / dt
            g = (t - Vc * sm) / sq.unsqueeze(-1)                                  # xi = u / sqrt(q)
            ag = a.unsqueeze(-1) * g
            pw = wt * (2 / math.sqrt(2 * math.pi)) * torch.exp(-0.5 * g**2) / sq.unsqueeze(-1)  # 2 p_q(u) dt
            pZ = pw * torch.special.ndtr(ag)
            pD = pw * torch.exp(-0.5 * ag**2) / math.sqrt(2 * math.pi) / torch.sqrt(V0).unsqueeze(-1)
            Vh = alpha * (pZ * s).sum(-1)
            qh = alpha * (pZ * J * sm**2).sum(-1)
            mh = alpha * (pD * J * sm).sum(-1)
            train_loss = (pZ * J * torch.nn.functional.softplus(-t)).sum(-1)
            train_err = (pZ * J * (t < 0)).sum(-1)
            return Vh, qh, mh, train_loss, train_err
        # square loss (ridge): z* = (omega + V y) / (1 + V), every hat explicit
        c = torch.sqrt(2 / (math.pi * rho))                                       # E[y omega] = c m
        Vh = alpha / (1 + V)
        mh = alpha * c / (1 + V)
        qh = alpha * (1 + q - 2 * c * m) / (1 + V) ** 2
        train_loss = (1 + q - 2 * c * m) / (2 * (1 + V) ** 2)
        # a training sample is misclassified when u = y omega < -V
        u, wt = self._rule(torch.cat([u_pts, self._graded(-V, 0.5 * w, -X * sq, X * sq)], -1))
        g = u / sq.unsqueeze(-1)
        pZ = wt * (2 / math.sqrt(2 * math.pi)) * torch.exp(-0.5 * g**2) / sq.unsqueeze(-1) * torch.special.ndtr(a.unsqueeze(-1) * g)
        train_err = (pZ * (u < -V.unsqueeze(-1))).sum(-1)
        return Vh, qh, mh, train_loss, train_err


def _prior(omega_eig, bb, lam, Vh, qh, mh):
    """Entropic part: overlaps (V, q, m) from hats, in the eigenbasis of Omega."""
    H = omega_eig.shape[0]
    d = lam.unsqueeze(-1) + Vh.unsqueeze(-1) * omega_eig                        # (P, H)
    V = (omega_eig / d).sum(-1) / H
    m = mh * (bb / d).sum(-1)
    q = mh**2 * (bb * omega_eig / d**2).sum(-1) + qh / H * (omega_eig**2 / d**2).sum(-1)
    return V, q, m


def solve_saddle_point(Omega, Phi, theta, alpha, lam, loss: str = "logistic", *, tol: float = 1e-8,
                       max_iter: int = 2000, damping: float = 0.7, n_nodes: int = 8,
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
    tol : relative fixed-point residual max |G(x) - x| / |G(x)| over (m, q, V), G one undamped
        application of the equations, below which a point has converged (default 1e-8; see
        :class:`SaddlePoint`).
    max_iter : iterations allowed per point (default 2000): damped fixed-point steps first,
        then at most 100 Levenberg-Marquardt Newton steps (each costs at most four
        evaluations of the equations).
    newton_after : damped steps before a point that has not converged switches to the
        Levenberg-Marquardt Newton method on (log m, log q, log V) (default 300).
    damping : initial weight of the new iterate in the damped iteration, in [1e-3, 1]; it
        is adapted per point (shrunk by 0.7 when the step oscillates, else grown by 1.1).
    n_nodes : Gauss-Legendre nodes per panel of the adaptive quadrature (default 8, at least 4).
        The rule has 49 panels placed per point from the overlaps (module docstring), so 8
        nodes per panel are 392 nodes per point; relative quadrature error below 1e-8 at 8
        (below 1e-10 at 10, ~3e-7 at 6).  (Until issue 10 this was the number of trapezoid
        nodes of a fixed grid on xi in [-8, 8], too coarse at small lam, where q is large.)
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
    n_nodes = check_positive_int("n_nodes", n_nodes, minimum=4)
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
    prev_step = torch.zeros((P, 3), dtype=dtype, device=dev)
    out_tl = torch.zeros(P, dtype=dtype, device=dev)
    out_te = torch.zeros(P, dtype=dtype, device=dev)
    for _ in range(min(max_iter, newton_after)):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        Vh_i, qh_i, mh_i, tl, te = channel(al[idx], rho[idx], m[idx], q[idx], V[idx])
        V_n, q_n, m_n = _prior(omega_eig, bbP[idx], la[idx], Vh_i, qh_i, mh_i)
        r = torch.stack([(m_n - m[idx]).abs() / m_n.abs().clamp_min(1e-300),
                         (q_n - q[idx]).abs() / q_n.clamp_min(1e-300),
                         (V_n - V[idx]).abs() / V_n.clamp_min(1e-300)]).amax(0)
        finite = torch.isfinite(r)
        r = torch.where(finite, r, torch.full_like(r, float("inf")))
        done = r < tol
        step = torch.stack([m_n - m[idx], q_n - q[idx], V_n - V[idx]], -1)
        flip = (step * prev_step[idx] < 0).any(-1)                 # the iteration oscillates
        prev_step[idx] = torch.nan_to_num(step)
        di = d[idx]
        di = torch.where(flip, (di * 0.7).clamp_min(0.02), (di * 1.1).clamp_max(1.0))
        d[idx] = di
        di = torch.where(done, torch.ones_like(di), di)          # a converged point returns G(x) itself
        di = torch.where(finite, di, torch.zeros_like(di))       # never step onto a non-finite value
        m_n, q_n, V_n = (torch.nan_to_num(x) for x in (m_n, q_n, V_n))
        residual[idx] = r
        m[idx] = (1 - di) * m[idx] + di * m_n
        q[idx] = (1 - di) * q[idx] + di * q_n
        V[idx] = (1 - di) * V[idx] + di * V_n
        keep = finite & torch.isfinite(torch.stack([Vh_i, qh_i, mh_i, tl, te])).all(0)
        for store, new in ((Vh, Vh_i), (qh, qh_i), (mh, mh_i), (out_tl, tl), (out_te, te)):
            store[idx] = torch.where(keep, new, store[idx])
        iters[idx] += 1
        active[idx[done]] = False

    # Points still moving after the damped phase (near the separability threshold, and on
    # the separable side at small lam, the damped map contracts very slowly): a
    # Levenberg-Marquardt-damped Newton method on x = log(m, q, V) for the fixed point
    # f(x) = log G(exp x) - x = 0, finite-difference Jacobian, a step accepted when it lowers
    # |f|_2 (the damping mu shrinks after an accepted step and grows after a rejected one).
    idx = (active & (m > 0)).nonzero().squeeze(-1)
    if idx.numel() and max_iter > newton_after:
        sub = (al[idx], rho[idx], bbP[idx], la[idx])

        def fixed_point_map(x, rows):
            mm, qq, VV = torch.exp(x).unbind(-1)
            hats = channel(sub[0][rows], sub[1][rows], mm, qq, VV)
            Vn, qn, mn = _prior(omega_eig, sub[2][rows], sub[3][rows], *hats[:3])
            g = torch.log(torch.stack([mn.clamp_min(1e-300), qn.clamp_min(1e-300), Vn.clamp_min(1e-300)], -1)) - x
            return torch.nan_to_num(g, nan=float("inf")), hats

        n = idx.numel()
        allrows = torch.arange(n, device=dev)
        x = torch.log(torch.stack([m[idx], q[idx], V[idx]], -1))
        f, hats = fixed_point_map(x, allrows)
        hats = list(hats)
        mu = torch.full((n,), 1e-3, dtype=dtype, device=dev)
        J = torch.zeros((n, 3, 3), dtype=dtype, device=dev)
        fresh = torch.zeros(n, dtype=torch.bool, device=dev)                   # J is current at x
        eye3 = torch.eye(3, dtype=dtype, device=dev)
        h = 1e-6
        for _ in range(min(max_iter - newton_after, 100)):
            live = ((1 - torch.exp(-f)).abs().amax(-1) >= tol) & torch.isfinite(f).all(-1)
            if not bool(live.any()):
                break
            need = (live & ~fresh).nonzero().squeeze(-1)
            if need.numel():
                fx = f[need]                                             # one call for the 3 columns
                xs = (x[need].unsqueeze(0) + h * eye3.unsqueeze(1)).reshape(-1, 3)
                fs = fixed_point_map(xs, need.repeat(3))[0].reshape(3, need.numel(), 3)
                J[need] = (fs - fx).permute(1, 2, 0) / h                 # J[:, i, j] = d f_i / d x_j
                fresh[need] = True
            rows = live.nonzero().squeeze(-1)
            Jr, fr = J[rows], f[rows]
            JtJ = Jr.transpose(-1, -2) @ Jr
            A = JtJ + mu[rows, None, None] * (torch.diagonal(JtJ, dim1=-2, dim2=-1).unsqueeze(-1) * eye3 + 1e-12 * eye3)
            step = -torch.linalg.solve(A, Jr.transpose(-1, -2) @ fr.unsqueeze(-1)).squeeze(-1)
            step = torch.nan_to_num(step).clamp(-2.0, 2.0)
            ft, hats_t = fixed_point_map(x[rows] + step, rows)
            better = (ft**2).sum(-1) < (fr**2).sum(-1)
            acc = rows[better]
            x[acc] = x[acc] + step[better]
            f[acc] = ft[better]
            for k in range(5):
                hats[k][acc] = hats_t[k][better]
            fresh[acc] = False
            mu[rows] = torch.where(better, (mu[rows] / 5).clamp_min(1e-12), (mu[rows] * 10).clamp_max(1e12))
            iters[idx[rows]] += 1
        # return G(x) = exp(x + f) (prior equations exact at the returned hats) where this
        # phase lowered the residual, else keep the damped iterate
        res_new = (1 - torch.exp(-f)).abs().amax(-1)
        res_new = torch.where(torch.isfinite(res_new), res_new, torch.full_like(res_new, float("inf")))
        ok = res_new < residual[idx]
        okr = ok.nonzero().squeeze(-1)
        mm, qq, VV = torch.exp(x[okr] + f[okr]).unbind(-1)
        j = idx[okr]
        m[j], q[j], V[j] = mm, qq, VV
        Vh[j], qh[j], mh[j] = hats[0][okr], hats[1][okr], hats[2][okr]
        out_tl[j], out_te[j] = hats[3][okr], hats[4][okr]
        residual[j] = res_new[okr]

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
