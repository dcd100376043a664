"""The book's figure theme and the plots shared by several chapters.

``set_theme()`` is called once per notebook.  Plot functions draw on a given
matplotlib ``Axes`` and return it, so that notebooks (pyplot) and widgets
(``matplotlib.figure.Figure`` frames, no pyplot) share the same code.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import TwoSlopeNorm

__all__ = ["LEARNER_COLORS", "LEARNER_LABELS", "set_theme", "new_figure", "plot_learning_curves",
           "GAIN_LABEL", "shared_limit", "gain_heatmap"]

#: one colour per learner, used in every chapter of Part C
LEARNER_COLORS = {"TF": "#1f77b4", "RF": "#ff7f0e", "2L": "#2ca02c", "ft-TF": "#d62728"}
LEARNER_LABELS = {"TF": "TF (transferred features)", "RF": "RF (random features)",
                  "2L": "2L (from scratch)", "ft-TF": "ft-TF (fine-tuned TF)"}


def set_theme(font_scale: float = 1.0) -> None:
    """Seaborn 'whitegrid' theme with the book's palette and readable sizes."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=font_scale,
                  rc={"figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": "medium",
                      "legend.frameon": False})


def new_figure(width: float = 5.0, height: float = 3.5, ncols: int = 1):
    """A ``matplotlib.figure.Figure`` with ``ncols`` axes, made without pyplot (for widget frames)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def plot_learning_curves(ax, curves, learners=None, logx: bool = True, title: str | None = None):
    """Test error vs M/H for each learner of a :class:`tasknb.feature_transfer.TransferCurves`,
    mean over realizations with standard-error bars."""
    learners = learners or list(curves.errors)
    for name in learners:
        ax.errorbar(curves.alpha, curves.mean(name), yerr=curves.sem(name), marker="o", ms=4,
                    lw=1.5, ls="--" if name in ("2L", "ft-TF") else "-", capsize=2,
                    color=LEARNER_COLORS.get(name), label=LEARNER_LABELS.get(name, name))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("samples per hidden unit  M / H")
    ax.set_ylabel("test error")
    ax.set_ylim(bottom=max(0.0, float(np.nanmin([curves.mean(n).min() for n in learners])) - 0.05))
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


#: the colour-bar label of every gain map in the book (Part C convention: positive = transfer helps)
GAIN_LABEL = "gain = err(baseline) − err(transfer)"


def shared_limit(*gains, floor: float = 0.02) -> float:
    """The colour limit shared by several gain panels: the largest finite |gain| over all the
    arrays, and at least ``floor`` (> 0) so that an all-zero panel still has a colour scale."""
    if not gains:
        raise ValueError("shared_limit needs at least one gain array")
    if not (isinstance(floor, (int, float)) and np.isfinite(floor) and floor > 0):
        raise ValueError(f"floor must be a finite number > 0, got {floor!r}")
    lim = float(floor)
    for g in gains:
        a = np.abs(np.asarray(g, dtype=float))
        a = a[np.isfinite(a)]
        if a.size:
            lim = max(lim, float(a.max()))
    return lim


def _cell_edges(centres: np.ndarray, log: bool) -> np.ndarray:
    """n + 1 cell edges around n increasing centres: midpoints, geometric ones when ``log``."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] / 2 ** 0.5, c[0] * 2 ** 0.5]) if log else np.array([c[0] - 0.5, c[0] + 0.5])
    if log:
        mid = np.sqrt(c[1:] * c[:-1])
        return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def gain_heatmap(ax, gain, x, y, *, vmax: float | None = None, xlabel: str | None = None,
                 ylabel: str | None = None, title: str | None = None, cmap: str = "RdBu", mesh: bool = False,
                 log: bool = True, zero_contour: bool = True, annotate: bool = False, colorbar=True,
                 x_format: str = "{:.3g}", y_format: str = "{:g}", max_ticks: int = 6):
    """The book's map of a transfer gain, err(baseline) − err(transfer), over two axes.

    ``gain`` (n_y, n_x): row i belongs to ``y[i]``, column j to ``x[j]``.  The colours diverge
    from 0 on a symmetric scale [-vmax, vmax] (a ``TwoSlopeNorm`` centred at 0); with the default
    "RdBu" a positive gain (transfer helps) is blue and a negative one (negative transfer) red,
    in every chapter.  ``vmax`` (> 0) fixes the scale, so that the panels of one figure share it
    (see :func:`shared_limit`); by default it is ``shared_limit(gain)``.

    Two layouts:

    * ``mesh=False`` (default): one cell per entry on an even grid, the axes labelled with the
      values of ``x`` and ``y`` (at most ``max_ticks`` labels each, formatted with ``x_format``
      / ``y_format``); ``zero_contour`` draws the line gain = 0 in black.
    * ``mesh=True``: cells drawn at their coordinates (``pcolormesh``), the edges halfway between
      neighbouring centres (geometric halfway and log axes when ``log``).  ``x`` may then be
      2-D (n_y, n_x), each row having its own x-coordinates (e.g. samples per feature M / L =
      alpha * H / L, shifted row by row with the width); no zero contour.

    ``annotate`` writes each cell's value.  ``colorbar``: True draws a colour bar next to ``ax``,
    labelled :data:`GAIN_LABEL`; a sequence of axes draws one shared by them; False none.
    Returns the last image drawn (for a colour bar of one's own).
    """
    g = np.asarray(gain, dtype=float)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"gain must be a non-empty 2-D array (rows: y, columns: x), got shape {g.shape}")
    n_y, n_x = g.shape
    y = np.asarray(y, dtype=float)
    if y.shape != (n_y,):
        raise ValueError(f"y must hold one value per row of gain ({n_y}), got shape {y.shape}")
    x = np.asarray(x, dtype=float)
    if not (x.shape == (n_x,) or (mesh and x.shape == (n_y, n_x))):
        allowed = f"({n_x},)" + (f" or ({n_y}, {n_x})" if mesh else "")
        raise ValueError(f"x must have shape {allowed} to match gain {g.shape}, got shape {x.shape}")
    if vmax is None:
        vmax = shared_limit(g)
    elif isinstance(vmax, bool) or not isinstance(vmax, (int, float, np.floating, np.integer)) \
            or not np.isfinite(vmax) or vmax <= 0:
        raise ValueError(f"vmax must be a finite number > 0, got {vmax!r}")
    vmax = float(vmax)
    if isinstance(max_ticks, bool) or not isinstance(max_ticks, (int, np.integer)) or max_ticks < 1:
        raise ValueError(f"max_ticks must be an integer >= 1, got {max_ticks!r}")
    if mesh and log and (np.any(x <= 0) or np.any(y <= 0)):
        raise ValueError("x and y must be > 0 for a mesh on log axes (log=True)")
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    if mesh:
        xs = np.broadcast_to(x, g.shape)
        y_edges = _cell_edges(y, log)
        for i in range(n_y):
            im = ax.pcolormesh(_cell_edges(xs[i], log), y_edges[i:i + 2], g[i:i + 1], cmap=cmap, norm=norm)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_yticks(y, [y_format.format(v) for v in y])
        ax.minorticks_off()
        centres = [(xs[i, j], y[i]) for i in range(n_y) for j in range(n_x)]
    else:
        im = ax.imshow(g, cmap=cmap, norm=norm, origin="lower", aspect="auto")
        if zero_contour and min(n_y, n_x) >= 2 and np.nanmin(g) < 0 < np.nanmax(g):
            ax.contour(g, levels=[0.0], colors="k", linewidths=1.2)
        for n, values, set_ticks, fmt in ((n_x, x, ax.set_xticks, x_format), (n_y, y, ax.set_yticks, y_format)):
            step = -(-n // max_ticks)
            set_ticks(range(0, n, step), [fmt.format(v) for v in values[::step]])
        centres = [(j, i) for i in range(n_y) for j in range(n_x)]
    if annotate:
        for (cx, cy), v in zip(centres, g.ravel()):
            ax.text(cx, cy, f"{v:+.2f}", ha="center", va="center", fontsize="small",
                    color="white" if abs(v) > 0.6 * vmax else "black")
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(False)
    if isinstance(colorbar, bool):
        if colorbar:
            ax.figure.colorbar(im, ax=ax, shrink=0.85, label=GAIN_LABEL)
    elif colorbar is not None:
        ax.figure.colorbar(im, ax=colorbar, shrink=0.85, label=GAIN_LABEL)
    return im


def inpca_3d_figure(curves, points=(), *, limits=None, axis_labels=("InPCA 1", "InPCA 2", "InPCA 3"),
                    signature=None, title: str | None = None, explained_stress: float | None = None,
                    view=None, size=(6.4, 5.2), legend_fontsize="x-small", tick_labelsize=None):
    """A 3-D plot of trajectories in the first three InPCA coordinates (eqs. 9-11 of Ramesh et al.
    2023), made without pyplot so that widget frames can hold it.  Returns the ``Figure``.

    curves : sequence of dicts, one per group of runs drawn alike.  ``"xyz"``: coordinates
        (T, 3) of one run or (n_runs, T, 3) of several; ``"label"``: legend entry (given to the
        first run only); ``"fmt"``: matplotlib format string (default "-"); ``"upto"``: draw the
        points 0..upto only (default all); ``"mark_last"``: a dict of ``scatter`` keywords to mark
        the last drawn point of each run (the colour defaults to the curve's); any other key is a
        keyword of ``Axes3D.plot`` (color, lw, ms, alpha...).
    points : sequence of dicts, highlighted single models such as P_0 and P_*: ``"xyz"`` (3,),
        ``"label"`` (optional), any other key a keyword of ``Axes3D.scatter`` (marker, s, color...).
    limits : None (matplotlib's) or (3, 2) axis limits [(lo, hi)] * 3 -- fix them so that the
        frames of a slider share their axes.
    axis_labels : the three axis titles; ``signature`` (3,) the signs of the InPCA eigenvalues,
        appended as "(+)" / "(−)" (negative: a time-like direction).
    title : str; ``explained_stress`` chi_3 in [0, 1], appended to it as ": χ_3 = xx.xx%".
    view : (elev, azim) or None (matplotlib's default view).
    size : (width, height) in inches.   legend_fontsize : of the legend (shown when something
        has a label).   tick_labelsize : of the tick labels (default matplotlib's).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=tuple(size))
    ax = fig.add_subplot(projection="3d")
    for curve in curves:
        style = dict(curve)
        xyz = np.asarray(style.pop("xyz"), dtype=np.float64)
        if xyz.ndim == 2:
            xyz = xyz[None]
        if xyz.ndim != 3 or xyz.shape[-1] < 3:
            raise ValueError(f"a curve's xyz must have shape (T, 3) or (n_runs, T, 3), got {xyz.shape}")
        label = style.pop("label", None)
        fmt = style.pop("fmt", "-")
        upto = style.pop("upto", None)
        mark_last = style.pop("mark_last", None)
        stop = xyz.shape[1] if upto is None else int(upto) + 1
        for k, run in enumerate(xyz):
            ax.plot(*run[:stop, :3].T, fmt, label=label if k == 0 else None, **style)
            if mark_last is not None:
                marker_style = {"color": style.get("color"), **mark_last}
                ax.scatter(*run[stop - 1, :3], **marker_style)
    for point in points:
        style = dict(point)
        xyz = np.asarray(style.pop("xyz"), dtype=np.float64)
        ax.scatter(*xyz[:3], **style)
    if limits is not None:
        (x0, x1), (y0, y1), (z0, z1) = limits
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_zlim(z0, z1)
    labels = list(axis_labels)
    if signature is not None:
        labels = [f"{a} ({'+' if s > 0 else '−'})" for a, s in zip(labels, signature)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_zlabel(labels[2])
    if view is not None:
        ax.view_init(elev=view[0], azim=view[1])
    if tick_labelsize is not None:
        ax.tick_params(labelsize=tick_labelsize)
    text = title or ""
    if explained_stress is not None:
        text = f"{text}: $\\chi_3$ = {100 * explained_stress:.2f}%" if text else f"$\\chi_3$ = {100 * explained_stress:.2f}%"
    if text:
        ax.set_title(text, fontsize="small")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=legend_fontsize, loc="upper left")
    return fig
