"""Pretrained learned optimizers shipped inside the package (no network needed).

Each name is a msgpack file in ``learned_opt/weights/`` written by :func:`learned_opt.save`.
Their model cards (training data, the command that reproduces them, evaluation tables and
where they are not expected to work) are in ``docs/pretrained.md``.
"""

from __future__ import annotations

from importlib import resources

import optax

from learned_opt.io import MetaParams, from_bytes
from learned_opt.optimizers.base import LearnedOptimizer

_SUFFIX = ".msgpack"


def _weights():
    return resources.files("learned_opt") / "weights"


def list_pretrained() -> list[str]:
    """Names of the pretrained optimizers that ship with the package, sorted.

    Example:
        >>> import learned_opt as lo
        >>> "lstm_mnist" in lo.list_pretrained()
        True
    """
    return sorted(
        entry.name.removesuffix(_SUFFIX)
        for entry in _weights().iterdir()
        if entry.name.endswith(_SUFFIX)
    )


def load_pretrained(name: str) -> tuple[LearnedOptimizer, MetaParams]:
    """Loads the pretrained optimizer ``name`` as ``(optimizer, meta_params)``.

    Use this to inspect or fine-tune the weights (e.g. as the starting point of a
    ``MetaTrainer``); :func:`pretrained` gives the ready-to-use optax transformation.

    Raises:
        ValueError: for an unknown name (the message lists the known ones), or a damaged file.

    References:
        Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient descent";
        Ravi & Larochelle 2017, "Optimization as a model for few-shot learning" (the
        ``meta_lstm_*`` files).

    Example:
        >>> import learned_opt as lo
        >>> opt, meta_params = lo.load_pretrained("lstm_digits")
        >>> type(opt).__name__, opt.hidden_size
        ('LSTMOptimizer', 20)
    """
    known = list_pretrained()
    if name not in known:
        raise ValueError(f"name: no pretrained optimizer {name!r}; available: {known}")
    resource = _weights() / f"{name}{_SUFFIX}"
    return from_bytes(resource.read_bytes(), source=f"learned_opt/weights/{name}{_SUFFIX}")


def pretrained(
    name: str, learning_rate: optax.ScalarOrSchedule | None = None
) -> optax.GradientTransformationExtraArgs:
    """A pretrained learned optimizer as a drop-in optax transformation.

    Pass the loss the optax way, ``tx.update(grads, state, params, value=loss)``; optimizers
    that do not read it (``lstm_general``) also take ``tx.update(grads, state, params)`` and
    work in flax's ``TrainState.apply_gradients``. The available names are those of
    :func:`list_pretrained`; ``docs/pretrained.md`` says what each was trained on and how it
    compares with tuned Adam.

    Args:
        name: e.g. ``"lstm_general"``.
        learning_rate: replaces the optimizer's built-in step size (a float or an optax
            schedule), to be tuned like Adam's learning rate; ``None`` keeps the built-in one.

    Returns:
        An ``optax.GradientTransformationExtraArgs``.

    Raises:
        ValueError: for an unknown name.

    References:
        Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient descent".

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> import learned_opt as lo
        >>> tx = lo.pretrained("lstm_mnist")
        >>> params = {"w": jnp.ones(4)}
        >>> loss_fn = lambda p: jnp.sum(p["w"] ** 2)
        >>> state = tx.init(params)
        >>> for _ in range(50):
        ...     loss, grads = jax.value_and_grad(loss_fn)(params)
        ...     updates, state = tx.update(grads, state, params, value=loss)
        ...     params = optax.apply_updates(params, updates)
        >>> bool(loss_fn(params) < 0.1 * 4.0)
        True
    """
    optimizer, meta_params = load_pretrained(name)
    return optimizer.as_optax(meta_params, learning_rate=learning_rate)


def scale_by_learned(name: str) -> optax.GradientTransformationExtraArgs:
    """The direction of the pretrained optimizer ``name``, to chain like ``optax.scale_by_adam``.

    ``lo.scale_by_learned(name)`` is ``optimizer.scale_by(meta_params)`` of
    :func:`load_pretrained`: the update's direction before any step size, oriented like a
    gradient. Chain it with ``optax.add_decayed_weights`` and
    ``optax.scale_by_learning_rate(lr_or_schedule)`` as for Adam, or route some parameters to
    it with ``optax.multi_transform``. At the optimizer's built-in step size the chain equals
    :func:`pretrained`.

    Args:
        name: e.g. ``"lstm_general"``; see :func:`list_pretrained`.

    Raises:
        ValueError: for an unknown name.

    References:
        Moudgil, Knyazev & Belilovsky, "Celo2", ICLR 2026 (exported the same way, as
        ``scale_by_celo2``).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> import learned_opt as lo
        >>> tx = optax.chain(
        ...     lo.scale_by_learned("lstm_general"),
        ...     optax.add_decayed_weights(1e-4),
        ...     optax.scale_by_learning_rate(optax.cosine_decay_schedule(3e-3, 100)),
        ... )
        >>> params = {"w": jnp.ones(3)}
        >>> updates, _ = tx.update({"w": jnp.array([1.0, -1.0, 0.5])}, tx.init(params), params)
        >>> [bool(u < 0) for u in updates["w"]]  # each step goes against the gradient
        [True, False, True]
    """
    optimizer, meta_params = load_pretrained(name)
    return optimizer.scale_by(meta_params)
