"""Small convolutional classifiers on image datasets."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar

import jax

from learned_opt.tasks import _nn
from learned_opt.tasks._classification import ClassificationFamily
from learned_opt.tasks.base import PyTree, positive_ints, real

_KERNEL = 3
_STRIDE = 2
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvNet(ClassificationFamily):
    """A small convolutional classifier trained with softmax cross-entropy.

    Each entry of ``channels`` is a 3x3 convolution with stride 2 and ``"SAME"`` padding
    followed by the activation (an 8x8 image becomes 4x4, then 2x2; 28x28 becomes 14x14, then
    7x7); the flattened feature map feeds a linear classifier. It is small enough to train
    quickly on a CPU. This follows the spirit of the L2L CIFAR-10 convnet (3 conv layers, ReLU)
    with strided convolutions instead of max-pooling and no batch norm.

    Tasks differ in their initial weights, minibatch order and, with ``permute_labels=True``,
    a per-task relabelling of the classes (``task_params = {"label_perm": int32[classes]}``).
    ``params`` is a list of ``{"w", "b"}`` dicts: the convolutions (``w`` of shape
    ``(3, 3, in, out)``) then the classifier.

    Args:
        dataset: ``"digits"`` (bundled, the default), ``"mnist"`` or ``"fashion_mnist"``.
        channels: output channels of each convolution.
        activation: ``"relu"``, ``"sigmoid"``, ``"tanh"``, ``"elu"`` or ``"gelu"``.
        init_scale: standard deviation of the initial weights and biases; ``None`` (default)
            for LeCun-normal weights and zero biases.
        batch_size: examples per minibatch, drawn with replacement from the training split.
        permute_labels: give each task a random permutation of the labels.
        eval_size: size of the fixed subset of the training split that ``eval_loss`` uses.
        data_dir: a folder searched first for the dataset's files.

    References:
        Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient descent"
        (CIFAR-10 convnet experiment).

    Example:
        >>> import jax
        >>> from learned_opt.tasks import ConvNet
        >>> family = ConvNet(channels=(8, 8))
        >>> task = family.task(jax.random.key(0))
        >>> params = task.init(jax.random.key(1))
        >>> [layer["w"].shape for layer in params]
        [(3, 3, 1, 8), (3, 3, 8, 8), (32, 10)]
        >>> x, y = task.batch(jax.random.key(2))
        >>> family.apply(params, x).shape
        (128, 10)
    """

    name: ClassVar[str] = "conv"

    channels: tuple[int, ...] = (8, 8)
    activation: str = "relu"
    init_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "channels", positive_ints("channels", self.channels))
        _nn.activation(self.activation)
        if self.init_scale is not None:
            real("init_scale", self.init_scale, minimum=0.0, inclusive=False)

    def _feature_shape(self) -> tuple[int, int, int]:
        height, width = self.image_shape
        for _ in self.channels:
            height, width = -(-height // _STRIDE), -(-width // _STRIDE)
        return height, width, self.channels[-1]

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        shapes: list[tuple[int, ...]] = [
            (_KERNEL, _KERNEL, c_in, c_out)
            for c_in, c_out in itertools.pairwise((1, *self.channels))
        ]
        shapes.append((math.prod(self._feature_shape()), self.num_classes))
        return _nn.init_layers(key, shapes, self.init_scale)

    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        act = _nn.activation(self.activation)
        h = x.reshape(x.shape[0], *self.image_shape, 1)
        for layer in params[:-1]:
            h = jax.lax.conv_general_dilated(
                h,
                layer["w"],
                window_strides=(_STRIDE, _STRIDE),
                padding="SAME",
                dimension_numbers=_DIMENSION_NUMBERS,
            )
            h = act(_nn.add_bias(h, layer["b"]))
        return _nn.dense(params[-1], h.reshape(h.shape[0], -1))
