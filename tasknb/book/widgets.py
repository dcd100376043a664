"""Sliders over precomputed frames that work with a kernel and in the static book.

How the static mode works
-------------------------
Every frame a slider can show is rendered *before* the widget is displayed and
stored as PNG bytes in an ``ipywidgets.Image``. The images sit in an
``ipywidgets.Stack``, which shows exactly one child: the one at its
``selected_index``. That integer is tied to the slider's integer ``index`` with
``ipywidgets.jslink``, a link that lives in the browser, not in the kernel.

When a notebook is executed (by Jupyter or papermill) the state of every widget,
links and PNG buffers included, is saved in the notebook's ``metadata.widgets``.
myst-nb writes that state into the HTML page as a
``application/vnd.jupyter.widget-state+json`` script, and the ipywidgets HTML
manager (``embed-amd.js``, served by the book itself) rebuilds the widgets from
it. Moving a slider then changes ``selected_index`` through the link, all in
JavaScript, so the frames switch with no kernel and no network. With a kernel
the same link does the same thing, so the widgets behave identically live.

The price is size: each frame is a PNG stored in the page, so keep frames small
(``dpi`` around 60-90, a few dozen frames per widget).

Figures are drawn with :class:`matplotlib.figure.Figure` objects directly; this
module never changes the matplotlib backend, so inline figures keep working.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import time
import numbers
from collections.abc import Callable, Mapping, Sequence

import ipywidgets
from matplotlib.figure import Figure
from tqdm.auto import tqdm

__all__ = ["figure_to_png", "frame_slider", "frame_grid", "FramePlayer", "format_values"]

MAX_GRID_PARAMETERS = 3


class FramePlayer(ipywidgets.VBox):
    """A column of sliders above a stack of precomputed frames.

    It renders as a plain ``VBox``; the Python attributes below exist to make
    the structure easy to inspect (and test):

    Attributes
    ----------
    sliders : list of ipywidgets.SelectionSlider
        One slider per parameter, in the order of the grid.
    stacks : list of list of ipywidgets.Stack
        ``stacks[level]`` holds every Stack switched by ``sliders[level]``.
    links : list of ipywidgets.widgets.widget_link.Link
        The browser-side links ``slider.index -> stack.selected_index``.
    images : list of ipywidgets.Image
        The frames, in row-major order over the grid.
    """

    def __init__(self, sliders, stacks, links, images, **kwargs):
        super().__init__(children=[*sliders, stacks[0][0]], **kwargs)
        self.sliders = list(sliders)
        self.stacks = [list(level) for level in stacks]
        self.links = list(links)
        self.images = list(images)


def figure_to_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure. A figure created with ``matplotlib.figure.Figure()`` needs
        no pyplot and no backend; one made by ``pyplot`` is also closed in pyplot
        so that it is not shown a second time inline.
    dpi : int, default 80
        Resolution of the PNG. Frames are stored in the page, so keep it modest.

    Returns
    -------
    bytes
        The PNG file content.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib.figure.Figure, got {type(fig).__name__}")
    dpi = _check_dpi(dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    _close_figure(fig)
    return buffer.getvalue()


def format_values(name: str, values: Sequence) -> list[str]:
    """Slider labels ``"<name> = <value>"`` that tell the values apart.

    Integers print as integers, reals with the fewest decimals (at least two)
    that keep every label distinct, anything else with ``str``.
    """
    values = list(values)
    if values and all(_is_int(v) for v in values):
        shown = [str(int(v)) for v in values]
    elif values and all(_is_real(v) for v in values):
        for decimals in range(2, 9):
            shown = [f"{float(v):.{decimals}f}" for v in values]
            if len(set(shown)) == len(shown):
                break
    else:
        shown = [str(v) for v in values]
    return [f"{name} = {s}" for s in shown]


def frame_slider(
    frames: Sequence[bytes | Figure],
    values: Sequence,
    name: str,
    description: str | None = None,
    dpi: int = 80,
) -> FramePlayer:
    """One slider over a list of precomputed frames.

    The slider is a ``SelectionSlider`` whose readout shows ``"<name> = <value>"``;
    its integer ``index`` is ``jslink``-ed to the ``selected_index`` of a
    ``Stack`` of ``Image`` widgets. The link runs in the browser, so the
    widget works in a live notebook and in the static HTML book alike (see the
    module docstring).

    Parameters
    ----------
    frames : sequence of bytes or matplotlib.figure.Figure
        One frame per value: PNG bytes, or figures (rendered with ``dpi`` and closed).
    values : sequence
        The parameter value of each frame, shown in the slider's readout.
    name : str
        Parameter name, e.g. ``"η"``.
    description : str, optional
        Text left of the slider; default: none (the readout names the parameter).
    dpi : int, default 80
        Resolution used for frames given as figures.

    Returns
    -------
    FramePlayer
        A ``VBox`` (slider above the frames) with ``sliders``, ``stacks``,
        ``links`` and ``images`` attributes.

    Raises
    ------
    ValueError
        If ``frames`` is empty, ``values`` has a different length, ``name`` is
        empty or a frame is neither PNG bytes nor a figure.
    """
    _check_name("name", name)
    frames = list(frames) if not isinstance(frames, (bytes, Figure)) else [frames]
    values = list(values)
    if not frames:
        raise ValueError("frames must be a non-empty list of PNG bytes or matplotlib Figures, got an empty list")
    if len(values) != len(frames):
        raise ValueError(
            f"values must have one entry per frame: got {len(values)} values for {len(frames)} frames"
        )
    pngs = [_to_png(frame, dpi, f"frames[{i}]") for i, frame in enumerate(frames)]
    images = [_image(png) for png in pngs]
    slider = _slider(name, values, description)
    stack = ipywidgets.Stack(children=images, selected_index=0)
    link = ipywidgets.jslink((slider, "index"), (stack, "selected_index"))
    return FramePlayer([slider], [[stack]], [link], images)


def frame_grid(
    render: Callable[..., Figure | bytes],
    grid: Mapping[str, Sequence],
    dpi: int = 80,
    labels: Mapping[str, str] | None = None,
) -> FramePlayer:
    """Sliders over a grid of 1 to 3 parameters, every combination precomputed.

    ``render(**combination)`` is called once per point of the grid (with a
    progress bar). The frames are arranged in nested stacks: the outer ``Stack``
    is switched by the first slider and each of its children is a ``Stack``
    switched by the second slider, and so on down to the ``Image`` frames.
    *Every* stack of a level is ``jslink``-ed to that level's slider, so all
    hidden stacks follow too: after moving slider 2 and then slider 1, the
    newly shown branch already sits at slider 2's position. All of it works in
    the browser with no kernel (see the module docstring).

    Parameters
    ----------
    render : callable
        ``render(**{name: value, ...})`` returns a matplotlib Figure (rendered
        with ``dpi`` and closed) or PNG bytes.
    grid : mapping of str to sequence
        Ordered ``{parameter_name: values}``, 1 to 3 entries, each non-empty.
        The number of frames is the product of the lengths.
    dpi : int, default 80
        Resolution of the frames.
    labels : mapping of str to str, optional
        Names shown on the sliders when they differ from the keyword names,
        e.g. ``{"eta": "η"}`` for ``render(eta=...)``.

    Returns
    -------
    FramePlayer
        A ``VBox`` (one slider per parameter above the frames) with
        ``sliders``, ``stacks``, ``links`` and ``images`` attributes.

    Raises
    ------
    ValueError
        If ``render`` is not callable, ``grid`` is not a mapping of 1 to 3
        parameters, or a value list is empty.
    """
    if not callable(render):
        raise ValueError(f"render must be a callable returning a matplotlib Figure, got {type(render).__name__}")
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict {{parameter_name: list_of_values}}, got {type(grid).__name__}")
    if not 1 <= len(grid) <= MAX_GRID_PARAMETERS:
        raise ValueError(
            f"grid must have 1 to {MAX_GRID_PARAMETERS} parameters, got {len(grid)}"
            + (f" ({', '.join(map(str, grid))})" if grid else "")
        )
    names = list(grid)
    value_lists = []
    for name in names:
        _check_name("grid keys", name)
        values = grid[name]
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"grid[{name!r}] must be a list of values, got {type(values).__name__}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got an empty one")
        value_lists.append(values)
    dpi = _check_dpi(dpi)
    labels = dict(labels or {})
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"labels names parameters not in grid: {unknown}; grid has {names}")

    combinations = list(itertools.product(*value_lists))
    shape = " × ".join(str(len(values)) for values in value_lists)
    images = []
    with _progress(len(combinations), f"rendering {shape} frames") as bar:
        for combination in combinations:
            frame = render(**dict(zip(names, combination)))
            label = ", ".join(f"{n}={v!r}" for n, v in zip(names, combination))
            images.append(_image(_to_png(frame, dpi, f"render({label})")))
            bar.update(1)

    sliders = [_slider(labels.get(name, name), values, None) for name, values in zip(names, value_lists)]
    stacks: list[list[ipywidgets.Stack]] = [[] for _ in names]

    def build(level: int, offset: int) -> ipywidgets.Stack:
        """The stack for ``level`` whose first frame is ``images[offset]``."""
        size = len(value_lists[level])
        stride = 1
        for values in value_lists[level + 1:]:
            stride *= len(values)
        if level == len(names) - 1:
            children = images[offset:offset + size]
        else:
            children = [build(level + 1, offset + i * stride) for i in range(size)]
        stack = ipywidgets.Stack(children=children, selected_index=0)
        stacks[level].append(stack)
        return stack

    build(0, 0)
    links = [
        ipywidgets.jslink((slider, "index"), (stack, "selected_index"))
        for slider, level in zip(sliders, stacks)
        for stack in level
    ]
    return FramePlayer(sliders, stacks, links, images)


# --- helpers -----------------------------------------------------------------

@contextlib.contextmanager
def _progress(total: int, desc: str):
    """A tqdm.auto bar that, in a notebook, leaves a one-line summary instead.

    A finished notebook progress bar is itself a widget: kept in the saved
    state, it would show up in the static book as an empty band above the
    sliders. In a notebook the bar is therefore shown through a display handle
    and replaced by plain text once every frame is rendered (it stays, red, if
    rendering fails). Outside a notebook this is an ordinary console bar.
    """
    try:
        from tqdm.notebook import tqdm as notebook_tqdm
        in_notebook = issubclass(tqdm, notebook_tqdm)
    except ImportError:  # pragma: no cover - tqdm without notebook support
        in_notebook = False
    if not in_notebook:
        with tqdm(total=total, desc=desc, leave=False) as bar:
            yield bar
        return
    from IPython.display import display

    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, display=False)
    handle = display(bar.container, display_id=True)
    try:
        yield bar
    finally:
        bar.close()
    if handle is not None:
        summary = f"{desc}: done in {time.perf_counter() - start:.1f} s"
        handle.update({"text/plain": summary}, raw=True)


def _slider(name: str, values: list, description: str | None) -> ipywidgets.SelectionSlider:
    labels = format_values(name, values)
    return ipywidgets.SelectionSlider(
        options=list(zip(labels, range(len(values)))),
        index=0,
        description=description or "",
        continuous_update=True,
        readout=True,
        layout=ipywidgets.Layout(width="min(520px, 100%)"),
        style={"description_width": "initial"},
    )


def _image(png: bytes) -> ipywidgets.Image:
    return ipywidgets.Image(value=png, format="png", layout=ipywidgets.Layout(max_width="100%"))


def _to_png(frame, dpi: int, where: str) -> bytes:
    if isinstance(frame, Figure):
        return figure_to_png(frame, dpi=dpi)
    if isinstance(frame, (bytes, bytearray, memoryview)):
        png = bytes(frame)
        if not png.startswith(b"\x89PNG"):
            raise ValueError(f"{where} must be PNG bytes (starting with the PNG signature) or a Figure")
        return png
    raise ValueError(f"{where} must be PNG bytes or a matplotlib Figure, got {type(frame).__name__}")


def _close_figure(fig: Figure) -> None:
    """Close ``fig`` in pyplot if pyplot manages it (no-op for plain Figures)."""
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and getattr(fig, "number", None) is not None:
        pyplot.close(fig)


def _check_dpi(dpi) -> int:
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not 10 <= dpi <= 600:
        raise ValueError(f"dpi must be a number in [10, 600], got {dpi!r}")
    return int(dpi)


def _check_name(what: str, name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty string naming the parameter, got {name!r}")


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
