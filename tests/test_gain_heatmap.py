"""tasknb.book.plotting.gain_heatmap: the book's one map of a transfer gain (centred at 0, shared limits)."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from tasknb.book.plotting import GAIN_LABEL, gain_heatmap, shared_limit


def axes(n=1):
    fig = Figure(layout="constrained")
    return fig, fig.subplots(1, n) if n > 1 else fig.subplots()


def test_centred_at_zero_with_positive_gain_blue():
    fig, ax = axes()
    g = np.array([[0.1, -0.05, 0.0], [0.2, 0.03, -0.01]])
    im = gain_heatmap(ax, g, [0.5, 1.0, 2.0], [0.0, 1.0])
    assert im.norm.vmin == -0.2 and im.norm.vmax == 0.2 and im.norm.vcenter == 0.0
    # "transfer helps" (gain > 0) is blue and negative transfer red, in every chapter
    r, _, b, _ = im.cmap(im.norm(0.2))
    assert b > r
    r, _, b, _ = im.cmap(im.norm(-0.2))
    assert r > b
    assert fig.axes[-1].get_ylabel() == GAIN_LABEL                   # the colour bar says the convention


def test_shared_vmax_is_honoured():
    fig, (a0, a1) = axes(2)
    small, large = np.full((2, 2), 0.01), np.array([[0.3, -0.1], [0.0, 0.05]])
    vmax = shared_limit(small, large)
    assert vmax == 0.3 and shared_limit(small) == 0.02                # floor for an almost flat panel
    ims = [gain_heatmap(a, g, [1, 2], [1, 2], vmax=vmax, colorbar=False) for a, g in ((a0, small), (a1, large))]
    assert all(im.norm.vmin == -0.3 and im.norm.vmax == 0.3 for im in ims)
    assert len(fig.axes) == 2                                         # colorbar=False draws none


def test_rows_with_their_own_x():
    fig, ax = axes()
    g = np.array([[0.1, 0.2], [-0.1, 0.05], [0.0, 0.3]])
    ratios = np.array([0.5, 1.0, 2.0])
    im = gain_heatmap(ax, g, np.outer(ratios, [1.0, 4.0]), ratios, mesh=True, vmax=0.4, annotate=True)
    assert im.norm.vmin == -0.4 and ax.get_xscale() == "log" and len(ax.collections) == 3
    assert len(ax.texts) == 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(gain=np.zeros(3)), "gain must be a non-empty 2-D array"),
    (dict(gain=np.zeros((2, 3, 1))), "gain must be a non-empty 2-D array"),
    (dict(vmax=0.0), "vmax must be a finite number > 0"),
    (dict(vmax=-1.0), "vmax must be a finite number > 0"),
    (dict(vmax=np.nan), "vmax must be a finite number > 0"),
    (dict(x=[1.0, 2.0]), r"x must have shape \(3,\)"),
    (dict(y=[1.0]), "y must hold one value per row of gain"),
    (dict(x=np.ones((2, 3))), r"x must have shape \(3,\)"),            # 2-D x only with mesh=True
    (dict(mesh=True, x=[0.0, 1.0, 2.0]), "must be > 0 for a mesh on log axes"),
    (dict(max_ticks=0), "max_ticks must be an integer >= 1"),
])
def test_rejects_bad_input(kwargs, message):
    _, ax = axes()
    args = dict(gain=np.ones((2, 3)), x=[1.0, 2.0, 3.0], y=[1.0, 2.0]) | kwargs
    with pytest.raises(ValueError, match=message):
        gain_heatmap(ax, args.pop("gain"), args.pop("x"), args.pop("y"), **args)


def test_shared_limit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one gain array"):
        shared_limit()
    with pytest.raises(ValueError, match="floor must be a finite number > 0"):
        shared_limit(np.zeros(2), floor=0.0)
