"""Multi-layer perceptron classifiers on image datasets (the L2L MNIST problem)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax

from learned_opt.tasks import _nn
from learned_opt.tasks._classification import ClassificationFamily
from learned_opt.tasks.base import PyTree, positive_ints, real


@dataclasses.dataclass(frozen=True)
class MLP(ClassificationFamily):
    """A fully connected classifier trained with softmax cross-entropy.

    The L2L setting is the default: one hidden layer of 20 sigmoid units, minibatches of 128,
    weights and biases drawn ``N(0, 0.01²)`` (the value of the official code). Inputs are the
    flattened images with values in ``[0, 1]``.

    Tasks differ in their initial weights (the init key) and minibatch order (the batch keys);
    with ``permute_labels=True`` each task also relabels the classes with its own random
    permutation. ``task_params`` is ``{"label_perm": int32[num_classes]}`` and ``params`` a
    list of ``{"w", "b"}`` dicts, one per layer.

    Args:
        dataset: ``"digits"`` (bundled, the default), ``"mnist"`` or ``"fashion_mnist"``; see
            ``learned_opt.tasks.load_dataset``.
        hidden_sizes: units of each hidden layer (none: a linear classifier).
        activation: ``"sigmoid"``, ``"relu"``, ``"tanh"``, ``"elu"`` or ``"gelu"``.
        init_scale: standard deviation of the initial weights and biases; ``None`` for
            LeCun-normal weights and zero biases.
        batch_size: examples per minibatch, drawn with replacement from the training split.
        permute_labels: give each task a random permutation of the labels.
        eval_size: size of the fixed subset of the training split that ``eval_loss`` uses.
        data_dir: a folder searched first for the dataset's files.

    References:
        Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient descent".

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.tasks import MLP
        >>> family = MLP(hidden_sizes=(20,), activation="sigmoid")
        >>> task_params = family.sample(jax.random.key(0))
        >>> params = family.init(task_params, jax.random.key(1))
        >>> [layer["w"].shape for layer in params]
        [(64, 20), (20, 10)]
        >>> x, y = family.batch(task_params, jax.random.key(2))
        >>> x.shape, y.shape
        ((128, 64), (128,))
        >>> round(float(family.loss(task_params, params, (x, y))), 2)  # about log(10)
        2.3
    """

    name: ClassVar[str] = "mlp"

    hidden_sizes: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    init_scale: float | None = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(
            self, "hidden_sizes", positive_ints("hidden_sizes", self.hidden_sizes, allow_empty=True)
        )
        _nn.activation(self.activation)
        if self.init_scale is not None:
            real("init_scale", self.init_scale, minimum=0.0, inclusive=False)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from the input to the logits."""
        return (math.prod(self.image_shape), *self.hidden_sizes, self.num_classes)

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return _nn.init_mlp(key, self.layer_sizes, self.init_scale)

    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        return _nn.mlp(params, x, _nn.activation(self.activation))
