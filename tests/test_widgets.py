"""tasknb.book.widgets: structure of the frame widgets and input validation (no browser)."""
from __future__ import annotations

import ipywidgets
from ipywidgets.widgets.widget_link import Link
import pytest
from matplotlib.figure import Figure

from tasknb.book.widgets import FramePlayer, figure_to_png, format_values, frame_grid, frame_slider

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small_figure(level: float = 0.0, offset: float = 0.0, width: float = 1.0) -> Figure:
    fig = Figure(figsize=(1.0 * width, 1.0))
    ax = fig.subplots()
    ax.axhline(level + offset)
    ax.set_ylim(-3, 3)
    return fig


def linked_pairs(player: FramePlayer) -> set[tuple[int, int]]:
    """(id of slider, id of stack) for every jslink of the player, checking its traits."""
    pairs = set()
    for link in player.links:
        assert isinstance(link, Link)
        (source, source_trait), (target, target_trait) = link.source, link.target
        assert (source_trait, target_trait) == ("index", "selected_index")
        pairs.add((id(source), id(target)))
    return pairs


# --- figure_to_png ------------------------------------------------------------

def test_figure_to_png_returns_png_bytes():
    png = figure_to_png(small_figure(), dpi=40)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 100


def test_figure_to_png_rejects_non_figures_and_bad_dpi():
    with pytest.raises(ValueError, match="fig must be a matplotlib.figure.Figure"):
        figure_to_png(b"not a figure")
    with pytest.raises(ValueError, match=r"dpi must be a number in \[10, 600\]"):
        figure_to_png(small_figure(), dpi=0)


def test_format_values_labels():
    assert format_values("η", [0, 0.5, 1]) == ["η = 0.00", "η = 0.50", "η = 1.00"]
    assert format_values("D", [10, 20]) == ["D = 10", "D = 20"]
    assert format_values("q", [0.1, 0.101]) == ["q = 0.100", "q = 0.101"]
    assert format_values("data", ["fmnist", "digits"]) == ["data = fmnist", "data = digits"]


# --- frame_slider -------------------------------------------------------------

def test_frame_slider_structure():
    values = [0.0, 0.25, 0.5]
    frames = [small_figure(v) for v in values[:2]] + [figure_to_png(small_figure(values[2]))]
    player = frame_slider(frames, values, "η")
    assert isinstance(player, ipywidgets.VBox)
    (slider,) = player.sliders
    (stack,) = player.stacks[0]
    assert isinstance(slider, ipywidgets.SelectionSlider)
    assert isinstance(stack, ipywidgets.Stack)
    assert player.children == (slider, stack)
    assert len(stack.children) == 3 and all(isinstance(c, ipywidgets.Image) for c in stack.children)
    assert all(bytes(image.value).startswith(PNG_SIGNATURE) for image in player.images)
    assert slider._options_labels == ("η = 0.00", "η = 0.25", "η = 0.50")
    assert slider.index == 0 and stack.selected_index == 0
    assert linked_pairs(player) == {(id(slider), id(stack))}


def test_frame_slider_validation():
    png = figure_to_png(small_figure())
    with pytest.raises(ValueError, match="frames must be a non-empty list"):
        frame_slider([], [], "η")
    with pytest.raises(ValueError, match="values must have one entry per frame: got 1 values for 2 frames"):
        frame_slider([png, png], [0.1], "η")
    with pytest.raises(ValueError, match=r"frames\[1\] must be PNG bytes or a matplotlib Figure"):
        frame_slider([png, 3.0], [0.1, 0.2], "η")
    with pytest.raises(ValueError, match=r"frames\[0\] must be PNG bytes"):
        frame_slider([b"GIF89a"], [0.1], "η")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        frame_slider([png], [0.1], "")


# --- frame_grid ---------------------------------------------------------------

def test_frame_grid_two_parameters_structure_and_order():
    calls = []

    def render(level, offset):
        calls.append((level, offset))
        return small_figure(level, offset)

    grid = {"level": [-1.0, 0.0, 1.0], "offset": [0.0, 0.5]}
    player = frame_grid(render, grid, dpi=30)
    assert calls == [(l, o) for l in grid["level"] for o in grid["offset"]]
    assert len(player.sliders) == 2 and len(player.images) == 6
    assert [len(level) for level in player.stacks] == [1, 3]
    outer = player.stacks[0][0]
    assert player.children == (*player.sliders, outer)
    assert list(outer.children) == player.stacks[1]
    # frame (i, j) sits at outer.children[i].children[j], in render order
    for i, inner in enumerate(outer.children):
        assert len(inner.children) == 2
        for j, image in enumerate(inner.children):
            assert image is player.images[2 * i + j]
    # every stack of a level is linked to that level's slider
    expected = {(id(player.sliders[0]), id(outer))}
    expected |= {(id(player.sliders[1]), id(stack)) for stack in player.stacks[1]}
    assert linked_pairs(player) == expected and len(player.links) == 4


def test_frame_grid_three_parameters_and_png_frames():
    grid = {"a": [0, 1], "b": [0, 1, 2], "c": [0.1, 0.2]}
    png = {key: figure_to_png(small_figure(*key), dpi=20) for key in
           [(a, b, c) for a in grid["a"] for b in grid["b"] for c in grid["c"]]}
    player = frame_grid(lambda a, b, c: png[(a, b, c)], grid)
    assert [len(level) for level in player.stacks] == [1, 2, 6]
    assert len(player.images) == 12 and len(player.links) == 1 + 2 + 6
    outer = player.stacks[0][0]
    assert bytes(outer.children[1].children[2].children[0].value) == png[(1, 2, 0.1)]
    assert [s._options_labels[-1] for s in player.sliders] == ["a = 1", "b = 2", "c = 0.20"]


def test_frame_grid_single_parameter_with_label():
    player = frame_grid(lambda width: small_figure(width=width), {"width": [1.0, 2.0]}, dpi=20,
                        labels={"width": "w"})
    assert len(player.sliders) == 1 and len(player.stacks[0][0].children) == 2
    assert player.sliders[0]._options_labels == ("w = 1.00", "w = 2.00")
    with pytest.raises(ValueError, match="labels names parameters not in grid"):
        frame_grid(small_figure, {"level": [1.0]}, labels={"eta": "η"})


def test_frame_grid_validation():
    with pytest.raises(ValueError, match="render must be a callable"):
        frame_grid("not callable", {"a": [1]})
    with pytest.raises(ValueError, match="grid must have 1 to 3 parameters, got 0"):
        frame_grid(small_figure, {})
    with pytest.raises(ValueError, match="grid must have 1 to 3 parameters, got 4"):
        frame_grid(small_figure, {"a": [1], "b": [1], "c": [1], "d": [1]})
    with pytest.raises(ValueError, match=r"grid\['b'\] must be a non-empty list of values"):
        frame_grid(small_figure, {"a": [1], "b": []})
    with pytest.raises(ValueError, match=r"grid\['a'\] must be a list of values"):
        frame_grid(small_figure, {"a": 0.5})
    with pytest.raises(ValueError, match=r"grid must be a dict"):
        frame_grid(small_figure, [("a", [1])])
    with pytest.raises(ValueError, match=r"render\(level=1\) must be PNG bytes or a matplotlib Figure"):
        frame_grid(lambda level: None, {"level": [1]})
