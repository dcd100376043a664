"""The small convolutional network of the prediction-space chapters (Part S).

``SmallCNN``       Conv(1->c1, 5x5, stride 2) - ReLU - Conv(c1->c2, 3x3, stride 2) - ReLU - 4x4 average
                   pool - Linear(16*c2 -> n_classes), for 28x28 grey images; ``features`` is the
                   penultimate representation phi(x; w_1) of eq. (7) of Ramesh et al. 2023 ("S")
``init_cnn``       a SmallCNN whose weights depend on a seed only (drawn on the CPU, then moved)
``check_channels`` validate the (c1, c2) widths

With the default ``channels=(8, 16)`` and 10 classes the network has 3,954 weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..device import get_device
from ..validation import check_positive_int, check_seed

__all__ = ["SmallCNN", "init_cnn", "check_channels"]


def check_channels(channels) -> list[int]:
    """(c1, c2) of a SmallCNN: a pair of integers >= 1 (a single integer is rejected as a pair of one)."""
    channels = [check_positive_int("channels", c) for c in (channels if hasattr(channels, "__len__") else [channels])]
    if len(channels) != 2:
        raise ValueError(f"channels must be a pair of integers >= 1 (c1, c2), got {channels}")
    return channels


class SmallCNN(nn.Module):
    """Conv(1->c1, 5x5, stride 2) - ReLU - Conv(c1->c2, 3x3, stride 2) - ReLU - 4x4 average pool -
    Linear(16*c2 -> n_classes).  Input (B, 1, 28, 28), output logits (B, n_classes).

    With the defaults ``channels=(8, 16)`` and 10 classes: 3,954 weights.
    """

    def __init__(self, n_classes: int = 10, channels=(8, 16)):
        super().__init__()
        n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        c1, c2 = check_channels(channels)
        self.conv1 = nn.Conv2d(1, c1, 5, stride=2, padding=2)   # 28 -> 14
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)  # 14 -> 7
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(16 * c2, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features phi(x; w_1) of eq. (7) of S: (B, 1, 28, 28) -> (B, 16*c2), >= 0."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def init_cnn(n_classes: int, channels=(8, 16), seed: int = 0, device="auto") -> SmallCNN:
    """A :class:`SmallCNN` whose weights depend on ``seed`` only (drawn on the CPU, then moved to
    ``device``), so a seed gives the same network on every device and whatever ran before."""
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(n_classes, channels)
    return model.to(get_device(device))
