"""Fully connected autoencoders of image datasets (reconstruction error as the loss)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax

from learned_opt import _checks
from learned_opt.tasks import _classification, _nn, datasets
from learned_opt.tasks.base import PyTree, TaskFamily, positive_ints


@dataclasses.dataclass(frozen=True)
class Autoencoder(TaskFamily):
    """An MLP autoencoder trained to reconstruct images: mean squared error on the pixels.

    The encoder maps the flattened image (values in ``[0, 1]``) through ``hidden_sizes`` to a
    code of ``bottleneck`` units; the decoder mirrors it (``bottleneck``, then
    ``hidden_sizes`` reversed, then the image). Every layer but the last is followed by the
    activation, the output is linear. The loss is the mean over pixels and examples of the
    squared reconstruction error (the all-zero reconstruction scores the images' mean square
    pixel value: 0.23 on the digits, 0.11 on MNIST, 0.21 on Fashion-MNIST).

    Tasks differ only in their initialisation and minibatch order: ``task_params`` is ``{}``.
    ``params`` is a list of ``{"w", "b"}`` dicts, encoder first. Minibatches are
    ``batch_size`` training images drawn with replacement; ``eval_loss`` is the error on a
    fixed subset of ``eval_size`` training images.

    Args:
        dataset: ``"digits"`` (bundled, the default), ``"mnist"`` or ``"fashion_mnist"``; see
            ``learned_opt.tasks.load_dataset``.
        hidden_sizes: units of the encoder's hidden layers, from the input (may be empty).
        bottleneck: units of the code.
        activation: ``"sigmoid"``, ``"relu"``, ``"tanh"``, ``"elu"`` or ``"gelu"``.
        init_scale: standard deviation of the initial weights and biases; ``None`` (default)
            for LeCun-normal weights and zero biases.
        batch_size: images per minibatch.
        eval_size: size of the fixed subset of the training split that ``eval_loss`` uses.
        data_dir: a folder searched first for the dataset's files.

    References:
        Hinton & Salakhutdinov 2006, "Reducing the dimensionality of data with neural
        networks".

    Example:
        >>> import jax
        >>> from learned_opt.tasks import Autoencoder
        >>> family = Autoencoder(hidden_sizes=(32,), bottleneck=8, activation="gelu")
        >>> task = family.task(jax.random.key(0))
        >>> params = task.init(jax.random.key(1))
        >>> [layer["w"].shape for layer in params]
        [(64, 32), (32, 8), (8, 32), (32, 64)]
        >>> x = task.batch(jax.random.key(2))
        >>> x.shape, family.apply(params, x).shape
        ((128, 64), (128, 64))
    """

    name: ClassVar[str] = "autoencoder"

    dataset: str = "digits"
    hidden_sizes: tuple[int, ...] = (32,)
    bottleneck: int = 16
    activation: str = "relu"
    init_scale: float | None = None
    batch_size: int = dataclasses.field(default=128, kw_only=True)
    eval_size: int = dataclasses.field(default=2048, kw_only=True)
    data_dir: str | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        datasets.dataset_info(self.dataset)
        object.__setattr__(
            self, "hidden_sizes", positive_ints("hidden_sizes", self.hidden_sizes, allow_empty=True)
        )
        object.__setattr__(
            self, "bottleneck", _checks.integer("bottleneck", self.bottleneck, minimum=1)
        )
        _nn.activation(self.activation)
        if self.init_scale is not None:
            object.__setattr__(
                self, "init_scale", _checks.real("init_scale", self.init_scale, minimum=0.0)
            )
        object.__setattr__(
            self, "batch_size", _checks.integer("batch_size", self.batch_size, minimum=1)
        )
        object.__setattr__(
            self, "eval_size", _checks.integer("eval_size", self.eval_size, minimum=1)
        )
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", str(self.data_dir))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from the input through the code back to the reconstruction."""
        pixels = math.prod(datasets.dataset_info(self.dataset).image_shape)
        encoder = (pixels, *self.hidden_sizes)
        return (*encoder, self.bottleneck, *reversed(encoder))

    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        """Reconstructs flattened images ``x (batch, pixels)``."""
        return _nn.mlp(params, x, _nn.activation(self.activation))

    def _train_data(self) -> datasets.RawData:
        return datasets.load_raw(self.dataset, "train", self.data_dir)

    def sample(self, key: jax.Array) -> PyTree:
        return {}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return _nn.init_mlp(key, self.layer_sizes, self.init_scale)

    def batch(self, task_params: PyTree, key: jax.Array) -> jax.Array:
        return _classification.train_batch(self._train_data(), key, self.batch_size)[0]

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        return _nn.mean_squared_error(self.apply(params, batch), batch)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        images = _classification.eval_batch(self._train_data(), self.eval_size)[0]
        return self.loss(task_params, params, images)
