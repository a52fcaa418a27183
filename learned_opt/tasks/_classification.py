"""The part of the MLP and ConvNet families that deals with the data: image classification."""

from __future__ import annotations

import abc
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt.tasks import _nn, datasets
from learned_opt.tasks.base import PyTree, TaskFamily, boolean, integer


@functools.lru_cache(maxsize=32)
def eval_indices(num_examples: int, eval_size: int) -> np.ndarray:
    """Fixed indices of the evaluation subset: all examples, or ``eval_size`` of them (seed 0)."""
    if num_examples <= eval_size:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng(0).permutation(num_examples)[:eval_size])


def _as_batch(raw: datasets.RawData, pixels, labels) -> tuple[jax.Array, jax.Array]:
    """Converts integer pixels and labels (numpy or jax) to an ``(x, y)`` float32/int32 batch."""
    return jnp.asarray(pixels).astype(jnp.float32) / raw.max_value, jnp.asarray(labels)


def train_batch(
    raw: datasets.RawData, key: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """``batch_size`` examples ``(x, y)`` of ``raw`` drawn uniformly with replacement by ``key``."""
    indices = jax.random.randint(key, (batch_size,), 0, len(raw.labels))
    return _as_batch(raw, jnp.asarray(raw.pixels)[indices], jnp.asarray(raw.labels)[indices])


def eval_batch(raw: datasets.RawData, eval_size: int) -> tuple[jax.Array, jax.Array]:
    """The fixed evaluation subset ``(x, y)`` of ``raw`` (see :func:`eval_indices`)."""
    indices = eval_indices(len(raw.labels), eval_size)
    return _as_batch(raw, raw.pixels[indices], raw.labels[indices])


@dataclasses.dataclass(frozen=True)
class ClassificationFamily(TaskFamily):
    """Softmax classification of a dataset's training split by a network from ``apply``.

    ``task_params`` is ``{"label_perm": int32[num_classes]}``: the identity, or with
    ``permute_labels`` a random relabelling of the classes per task. Minibatches are
    ``batch_size`` training examples drawn uniformly with replacement by the batch key;
    ``eval_loss`` is the loss on a fixed subset of ``eval_size`` training examples.

    The training split becomes a constant of the compiled program (as uint8), so compiling a
    function that draws MNIST batches takes a second or two longer than for ``"digits"``.
    """

    dataset: str = "digits"
    batch_size: int = dataclasses.field(default=128, kw_only=True)
    permute_labels: bool = dataclasses.field(default=False, kw_only=True)
    eval_size: int = dataclasses.field(default=2048, kw_only=True)
    data_dir: str | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        datasets.dataset_info(self.dataset)
        integer("batch_size", self.batch_size, minimum=1)
        integer("eval_size", self.eval_size, minimum=1)
        boolean("permute_labels", self.permute_labels)
        if self.data_dir is not None:
            if not isinstance(self.data_dir, str | os.PathLike):
                raise TypeError(f"data_dir: expected a folder path, got {self.data_dir!r}")
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the dataset's images."""
        return datasets.dataset_info(self.dataset).image_shape

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset."""
        return datasets.dataset_info(self.dataset).num_classes

    @abc.abstractmethod
    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        """Returns logits ``(batch, num_classes)`` for flattened images ``x (batch, D)``."""

    def _train_data(self) -> datasets.RawData:
        return datasets.load_raw(self.dataset, "train", self.data_dir)

    def sample(self, key: jax.Array) -> PyTree:
        if self.permute_labels:
            perm = jax.random.permutation(key, self.num_classes)
        else:
            perm = jnp.arange(self.num_classes)
        return {"label_perm": perm.astype(jnp.int32)}

    def batch(self, task_params: PyTree, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return train_batch(self._train_data(), key, self.batch_size)

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        x, y = batch
        logits = self.apply(params, x)
        return _nn.softmax_cross_entropy(logits, task_params["label_perm"][y])

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        return self.loss(task_params, params, eval_batch(self._train_data(), self.eval_size))
