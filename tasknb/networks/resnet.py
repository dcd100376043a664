"""A small ResNet with the module names of ResNet-18 (Part N's network).

``SmallResNet``   conv1 - layer1 - layer2 - layer3 - layer4 - global average pool - fc, for 28x28
                  grey images; each ``layer<k>`` is one basic residual block (two 3x3 convolutions and a
                  skip connection), widths (w, 2w, 4w, 8w), strides (1, 2, 2, 2) after a stride-2 stem
``init_resnet``   a SmallResNet whose weights depend on a seed only (drawn on the CPU, then moved)
``RESNET_MODULES`` the names of the top-level modules, in input-to-output order
``RESNET_NORMS``  the normalisations ``SmallResNet`` accepts

The module names are those of the tables of Neyshabur, Sedghi & Zhang (2020): conv1, layer1 ...
layer4, fc.  ResNet-18 has two blocks per layer and batch norm; at our scale one block per layer
keeps a quick run on a CPU, and the normalisation is **GroupNorm** by default. GroupNorm has no
running statistics, so the network at a point of weight space is a function of its parameters
alone. Interpolating two networks (``tasknb.landscape.interpolation_curve``) then evaluates
exactly the network with the interpolated weights. With batch norm, the running statistics of an
interpolated network would have to be recomputed. ``norm="none"`` drops the normalisation.

With ``width=8`` and 10 classes the network has 77,858 parameters (the docstring of
:class:`SmallResNet` breaks them down by module).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..device import get_device
from ..validation import check_choice, check_positive_int, check_seed

__all__ = ["SmallResNet", "init_resnet", "RESNET_MODULES", "RESNET_NORMS"]

#: top-level modules of :class:`SmallResNet`, from the input to the output
RESNET_MODULES = ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")
#: normalisations of :class:`SmallResNet`: GroupNorm with min(c/2, 8) groups, or none
RESNET_NORMS = ("group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm with ``min(channels // 2, 8)`` groups and an affine part, or the identity."""
    if kind == "none":
        return nn.Identity()
    return nn.GroupNorm(max(1, min(channels // 2, 8)), channels)


class BasicBlock(nn.Module):
    """x -> relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)); the shortcut is a strided 1x1
    convolution with a norm when the shape changes, else the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv_a = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm_a = _norm(norm, c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.norm_b = _norm(norm, c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm_a(self.conv_a(x)))
        return F.relu(self.norm_b(self.conv_b(h)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """conv1 (3x3 stride-2 conv, norm, ReLU: 28 -> 14) - layer1 (w, 14x14) - layer2 (2w, 7x7) -
    layer3 (4w, 4x4) - layer4 (8w, 2x2) - global average pool - fc (8w -> n_classes).
    Input (B, 1, 28, 28), output logits (B, n_classes).

    n_classes : int >= 2, default 10.   width : int >= 2 (w), default 8.
    norm : "group" (default; GroupNorm with min(c/2, 8) groups and an affine part, no running
        statistics) or "none".

    Parameters per module at width 8, 10 classes, norm "group": conv1 88, layer1 1,184,
    layer2 3,680, layer3 14,528, layer4 57,728, fc 650 (77,858 in all).
    """

    def __init__(self, n_classes: int = 10, width: int = 8, norm: str = "group"):
        super().__init__()
        n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        w = check_positive_int("width", width, minimum=2)
        norm = check_choice("norm", norm, RESNET_NORMS)
        self.conv1 = nn.Sequential(nn.Conv2d(1, w, 3, stride=2, padding=1, bias=False), _norm(norm, w), nn.ReLU())
        self.layer1 = BasicBlock(w, w, 1, norm)
        self.layer2 = BasicBlock(w, 2 * w, 2, norm)
        self.layer3 = BasicBlock(2 * w, 4 * w, 2, norm)
        self.layer4 = BasicBlock(4 * w, 8 * w, 2, norm)
        self.fc = nn.Linear(8 * w, n_classes)
        self.n_classes, self.width, self.norm = n_classes, w, norm

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled output of layer4, (B, 8w): what ``fc`` reads."""
        for name in RESNET_MODULES[:-1]:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def init_resnet(n_classes: int = 10, width: int = 8, seed: int = 0, device="auto", *, norm: str = "group") -> SmallResNet:
    """A :class:`SmallResNet` whose weights depend on ``seed`` only: drawn on the CPU under
    ``torch.random.fork_rng`` (torch's default initialisation: Kaiming-uniform convolutions and
    linear layers, unit gains and zero shifts for the norms), then moved to ``device``.  The
    global torch random state is left untouched."""
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallResNet(n_classes, width, norm)
    return model.to(get_device(device))
