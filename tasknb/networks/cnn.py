"""The small convolutional network of the prediction-space chapters (Part S).

``SmallCNN``       Conv(1->c1, 5x5, stride 2) - [norm] - ReLU - Conv(c1->c2, 3x3, stride 2) - ReLU - 4x4
                   average pool - [LayerNorm] - Linear(16*c2 -> n_classes, bias optional), for 28x28
                   grey images; ``features`` is the penultimate representation phi(x; w_1) of eq. (7)
                   of Ramesh et al. 2023 ("S")
``init_cnn``       a SmallCNN whose weights depend on a seed only (drawn on the CPU, then moved)
``check_channels`` validate the (c1, c2) widths
``NORMS``          the normalisations ``SmallCNN`` accepts

With the defaults ``channels=(8, 16)``, ``norm="none"``, ``head_bias=True`` and 10 classes the
network has 3,946 weights (the network of the first Part S chapters).  App. A of S at our scale --
a normalised penultimate layer (layer norm in place of batch norm, item 2) and a bias-free head
(item 1) -- is ``norm="layer"`` or ``"layer_conv1"`` with ``head_bias=False``; at the width
``(16, 32)`` it has 10,176 weights for 10 classes and fits a 2,000-image Fashion-MNIST subset
(see ``tasknb.trajectories.PAPER_RECIPE``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..device import get_device
from ..validation import check_bool, check_choice, check_positive_int, check_seed

__all__ = ["SmallCNN", "init_cnn", "check_channels", "check_head_bias", "NORMS"]

#: normalisations of :class:`SmallCNN`: none; a LayerNorm on the penultimate features; that and a
#: LayerNorm over each sample's conv1 maps (GroupNorm with one group) before the first ReLU
NORMS = ("none", "layer", "layer_conv1")


def check_channels(channels) -> list[int]:
    """(c1, c2) of a SmallCNN: a pair of integers >= 1 (a single integer is rejected as a pair of one)."""
    channels = [check_positive_int("channels", c) for c in (channels if hasattr(channels, "__len__") else [channels])]
    if len(channels) != 2:
        raise ValueError(f"channels must be a pair of integers >= 1 (c1, c2), got {channels}")
    return channels


def check_head_bias(head_bias) -> bool:
    """``head_bias`` must be True or False (not a number or a string)."""
    return check_bool("head_bias", head_bias)


class SmallCNN(nn.Module):
    """Conv(1->c1, 5x5, stride 2) - [GroupNorm(1, c1)] - ReLU - Conv(c1->c2, 3x3, stride 2) - ReLU -
    4x4 average pool - [LayerNorm(16*c2)] - Linear(16*c2 -> n_classes).
    Input (B, 1, 28, 28), output logits (B, n_classes).

    n_classes : int >= 2, default 10.   channels : (c1, c2), default (8, 16).
    norm : "none" (default: no normalisation), "layer" (a LayerNorm on the penultimate features,
        the representation phi(x; w_1) of eq. (7) of S) or "layer_conv1" (that, and the conv1
        maps of each sample normalised over (c1, 14, 14), i.e. GroupNorm with one group, before the
        first ReLU).  Both norms are WITHOUT an affine part: App. A of S replaces batch norm by
        layer norm so that the representation does not drift through normalisation parameters;
        with no gain or shift, phi(x) has mean 0 and unit variance over its 16*c2 entries for
        every input (norm sqrt(16*c2)), a fixed scale, so the head (and an imprinted head, eq. 7)
        sees directions of features, never their growth.  They add no weights.
    head_bias : bool, default True; False removes the bias of the final layer (App. A of S, item 1:
        logits of different tasks stay on one scale).

    Weights: c1*25 + c1 + 9*c1*c2 + c2 + 16*c2*n_classes (+ n_classes with ``head_bias``): 3,946
    with the defaults, 10,176 at channels (16, 32) without head bias.
    """

    def __init__(self, n_classes: int = 10, channels=(8, 16), norm: str = "none", head_bias: bool = True):
        super().__init__()
        n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        c1, c2 = check_channels(channels)
        self.norm = check_choice("norm", norm, NORMS)
        head_bias = check_head_bias(head_bias)
        self.conv1 = nn.Conv2d(1, c1, 5, stride=2, padding=2)   # 28 -> 14
        self.conv1_norm = nn.GroupNorm(1, c1, affine=False) if norm == "layer_conv1" else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)  # 14 -> 7
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.feature_norm = (nn.LayerNorm(16 * c2, elementwise_affine=False) if norm != "none"
                             else nn.Identity())
        self.head = nn.Linear(16 * c2, n_classes, bias=head_bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features phi(x; w_1) of eq. (7) of S: (B, 1, 28, 28) -> (B, 16*c2); >= 0 with
        ``norm="none"``, mean 0 and variance 1 over the 16*c2 entries of a row otherwise."""
        x = F.relu(self.conv1_norm(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.feature_norm(self.pool(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def init_cnn(n_classes: int, channels=(8, 16), seed: int = 0, device="auto", *, norm: str = "none",
             head_bias: bool = True) -> SmallCNN:
    """A :class:`SmallCNN` whose weights depend on ``seed`` only (drawn on the CPU, then moved to
    ``device``), so a seed gives the same network on every device and whatever ran before.

    ``norm`` and ``head_bias`` as in :class:`SmallCNN`.  The norms have no weights and the head's
    bias is drawn last, so for one seed the convolutions and the head's weight matrix are the same
    whatever ``norm`` and ``head_bias`` are: the recipes differ in architecture, not in draws.
    """
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(n_classes, channels, norm=norm, head_bias=head_bias)
    return model.to(get_device(device))
