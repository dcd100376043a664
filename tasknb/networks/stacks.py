"""Stacks of K two-layer networks without biases, held as tensors with a leading K axis.

One network of width H on inputs of dimension D is

    v = ReLU(x W1^T / D),      f(x) = v W2 / sqrt(H)                        (eq. 6 of Gerace et al. 2022)

with W1 of shape (H, D).  A binary network has one output, W2 = w2 of shape (H,), and
predicts sign(f); a soft-max network has C outputs, W2 of shape (H, C), and predicts
argmax_k f_k.  A stack keeps K such networks (one per realization) as W1 (K, H, D) and
w2 (K, H) or W2 (K, H, C), and every function here takes K networks and K data sets,
X (K, M, D), so that the averages over realizations cost one batched computation.
Training and losses are in :mod:`tasknb.training`.

The initialisation is i.i.d. N(0, 1) in both layers, drawn on the CPU in float64 from the
stream ``tasknb.device.stream(seed, "networks.two-layer.init")`` (:func:`draw_gaussian_layers`):
W1 first, so that one seed gives the same first layer (the random-feature map) whatever the
second layer is.  Protocols pass one seed per role (``derived_seed(seed, "init.rf")``...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import vmap

from ..device import get_device, stream
from ..validation import check_positive_int, check_seed

__all__ = [
    "FirstLayerStack", "TwoLayerStack", "SoftmaxStack", "draw_gaussian_layers", "init_two_layer",
    "init_softmax_net", "check_stack_data", "check_class_labels", "features", "network_logits", "predict",
    "classification_error", "softmax_logits", "softmax_error",
]


# ----------------------------------------------------------------------------- parameters
class FirstLayerStack:
    """What every stack of K two-layer networks shares: a first layer ``W1`` (K, H, D) and the
    sizes read from it.  :class:`TwoLayerStack` (one output) and :class:`SoftmaxStack`
    (C outputs) add their second layer."""

    W1: torch.Tensor

    @property
    def K(self) -> int:
        return self.W1.shape[0]

    @property
    def H(self) -> int:
        return self.W1.shape[1]

    @property
    def D(self) -> int:
        return self.W1.shape[2]


@dataclass
class TwoLayerStack(FirstLayerStack):
    """K binary networks: ``W1`` (K, H, D), ``w2`` (K, H)."""

    W1: torch.Tensor
    w2: torch.Tensor

    def clone(self) -> "TwoLayerStack":
        return TwoLayerStack(self.W1.detach().clone(), self.w2.detach().clone())

    def select(self, k) -> "TwoLayerStack":
        """The sub-stack of models ``k`` (an int, slice or index tensor)."""
        if isinstance(k, int):
            k = slice(k, k + 1)
        return TwoLayerStack(self.W1[k], self.w2[k])


@dataclass
class SoftmaxStack(FirstLayerStack):
    """K soft-max networks with C outputs: ``W1`` (K, H, D), ``W2`` (K, H, C)."""

    W1: torch.Tensor
    W2: torch.Tensor

    @property
    def C(self) -> int:
        return self.W2.shape[2]

    def clone(self) -> "SoftmaxStack":
        return SoftmaxStack(self.W1.detach().clone(), self.W2.detach().clone())


def draw_gaussian_layers(K: int, H: int, D: int, n_out: int | None = None, seed: int = 0, device="auto",
                         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """I.i.d. N(0, 1) weights of K two-layer networks: W1 (K, H, D), then the second layer,
    (K, H) when ``n_out`` is None or (K, H, n_out).  W1 is drawn first, so a seed gives the same
    first layer (the RF feature map) whatever the second layer is.  The draws come from
    ``stream(seed, "networks.two-layer.init")``, independent of every other tasknb stream."""
    K, H, D = (check_positive_int(n, v) for n, v in (("K", K), ("H", H), ("D", D)))
    g = stream(check_seed("seed", seed), "networks.two-layer.init")
    W1 = torch.randn(K, H, D, generator=g, dtype=torch.float64)
    W2 = torch.randn((K, H) if n_out is None else (K, H, n_out), generator=g, dtype=torch.float64)
    dev = get_device(device)
    return W1.to(dev, dtype), W2.to(dev, dtype)


def init_two_layer(K: int, H: int, D: int, seed: int = 0, device="auto",
                   dtype: torch.dtype = torch.float32) -> TwoLayerStack:
    """K binary networks with i.i.d. N(0, 1) weights in both layers (the paper's initialisation).

    The first layer of such a stack is also the random feature map of the RF model.
    """
    return TwoLayerStack(*draw_gaussian_layers(K, H, D, None, seed, device, dtype))


def init_softmax_net(K: int, H: int, D: int, n_classes: int, seed: int = 0, device="auto",
                     dtype: torch.dtype = torch.float32) -> SoftmaxStack:
    """K soft-max networks with C = ``n_classes`` >= 2 outputs and i.i.d. N(0, 1) weights.

    W1 is drawn first, as in :func:`init_two_layer`, so the same seed gives the same random
    feature map W1 for binary and soft-max stacks.
    """
    C = check_positive_int("n_classes", n_classes, minimum=2)
    return SoftmaxStack(*draw_gaussian_layers(K, H, D, C, seed, device, dtype))


# ----------------------------------------------------------------------------- input checks
def check_stack_data(params: FirstLayerStack, X: torch.Tensor, name: str = "X") -> None:
    """X must be (K, M, D) for a stack of K networks on D inputs."""
    if X.dim() != 3 or X.shape[0] != params.K or X.shape[2] != params.D:
        raise ValueError(f"{name} must have shape (K, M, D) = ({params.K}, M, {params.D}), got {tuple(X.shape)}")


def check_class_labels(y: torch.Tensor, shape, C: int, name: str = "y") -> None:
    """y must be integer class indices in 0..C-1 of the given shape (K, M)."""
    if tuple(y.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape (K, M) = {tuple(shape)}, got {tuple(y.shape)}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
        raise ValueError(f"{name} must hold class indices in 0..{C - 1}, got values in "
                         f"{int(y.min())}..{int(y.max())}")


# ----------------------------------------------------------------------------- forward pass
def features(W1: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Hidden features ``v = ReLU(X W1^T / D)`` of eq. (6), batched.

    W1 is (K, H, D) and X is (K, M, D) -> (K, M, H).
    """
    if W1.dim() != 3 or X.dim() != 3 or W1.shape[0] != X.shape[0] or W1.shape[2] != X.shape[2]:
        raise ValueError(f"W1 must be (K, H, D) and X (K, M, D) with matching K and D; got W1 {tuple(W1.shape)}, X {tuple(X.shape)}")
    return torch.relu(torch.einsum("kmd,khd->kmh", X, W1) / W1.shape[2])


def network_logits(W1: torch.Tensor, w2: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Logits of ONE binary network, ``ReLU(X W1^T / D) . w2 / sqrt(H)``: W1 (H, D), w2 (H,), X (M, D) -> (M,).

    The single-network function that :func:`predict` and the binary training loss map over
    the K axis with ``torch.func.vmap``.
    """
    return torch.relu(X @ W1.T / W1.shape[1]) @ w2 / math.sqrt(W1.shape[0])


def predict(params: TwoLayerStack, X: torch.Tensor) -> torch.Tensor:
    """Logits f(x) = v . w2 / sqrt(H) for K binary networks on their own inputs: X (K, M, D) -> (K, M)."""
    check_stack_data(params, X)
    return vmap(network_logits)(params.W1, params.w2, X)


def classification_error(params: TwoLayerStack, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of sign mistakes of each binary network on its own test set, y in {-1, +1}: (K,)."""
    f = predict(params, X)
    return (torch.sign(f) != y).to(torch.float64).mean(dim=1)


def softmax_logits(params: SoftmaxStack, X: torch.Tensor) -> torch.Tensor:
    """Logits ``ReLU(X W1^T / D) W2 / sqrt(H)`` of K soft-max networks on their own inputs: X (K, M, D) -> (K, M, C)."""
    check_stack_data(params, X)
    return features(params.W1, X) @ params.W2 / math.sqrt(params.W1.shape[1])


def softmax_error(params: SoftmaxStack, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of argmax mistakes of each soft-max network on its own test set: X (K, M, D), y (K, M) -> (K,)."""
    with torch.no_grad():
        pred = softmax_logits(params, X).argmax(-1)
    return (pred != y).to(torch.float64).mean(dim=1)
