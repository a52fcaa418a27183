"""A small character-level transformer language model on text that ships with Python.

The corpus is ``pydoc_data.topics``: the reference documentation that ``help()`` shows, part of
the standard library (about 465,000 characters of English prose and code examples for Python
3.11; other Python versions ship slightly different text). It is read offline, never
downloaded.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import _checks
from learned_opt.tasks import _nn
from learned_opt.tasks.base import PyTree, TaskFamily, check

#: The fixed character vocabulary: newline and printable ASCII; every other character is
#: mapped to one extra "unknown" token (index ``len(VOCABULARY)``).
VOCABULARY = "\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(VOCABULARY) + 1

#: Fraction of the corpus (its end) held out for ``eval_loss``.
HELD_OUT_FRACTION = 0.1

_LAYER_NORM_EPS = 1e-5


def corpus_text() -> str:
    """The corpus: the topics of ``pydoc_data.topics`` in sorted order, one after another."""
    from pydoc_data.topics import topics

    return "".join(topics[name] for name in sorted(topics))


@functools.lru_cache(maxsize=1)
def corpus_tokens() -> tuple[np.ndarray, np.ndarray]:
    """The encoded corpus as read-only ``uint8`` arrays ``(train, held_out)``.

    Example:
        >>> from learned_opt.tasks.language import VOCABULARY, corpus_tokens
        >>> train, held_out = corpus_tokens()
        >>> len(train) > 400_000, len(held_out) > 40_000, train.dtype.name
        (True, True, 'uint8')
        >>> "".join(VOCABULARY[t] for t in train[:10])
        'The "asser'
    """
    lookup = np.full(0x110000, len(VOCABULARY), np.uint8)
    lookup[[ord(c) for c in VOCABULARY]] = np.arange(len(VOCABULARY), dtype=np.uint8)
    text = np.frombuffer(corpus_text().encode("utf-32-le"), np.uint32)
    tokens = lookup[text]
    split = round(len(tokens) * (1 - HELD_OUT_FRACTION))
    train, held_out = tokens[:split].copy(), tokens[split:].copy()
    train.setflags(write=False)
    held_out.setflags(write=False)
    return train, held_out


def _layer_norm(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Normalises the last axis of ``x`` to zero mean and unit variance, then scales and shifts."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    scale = params["scale"].reshape((1,) * (x.ndim - 1) + params["scale"].shape)
    return _nn.add_bias((x - mean) * jax.lax.rsqrt(var + _LAYER_NORM_EPS) * scale, params["bias"])


@dataclasses.dataclass(frozen=True)
class CharTransformer(TaskFamily):
    """Next-character prediction with a small pre-norm transformer (GPT-style).

    Tokens are characters of the fixed :data:`VOCABULARY` (97 tokens). The model embeds each
    token, adds a learned positional embedding, applies ``num_layers`` pre-norm blocks
    (``x + attention(norm(x))`` with a causal mask and ``num_heads`` heads, then
    ``x + mlp(norm(x))`` with one GELU hidden layer of ``d_ff`` units), a final layer norm
    and a linear read-out to the vocabulary. The loss is the mean next-token cross-entropy
    (nats per character; ``log 97 ≈ 4.57`` for a uniform guess).

    Minibatches are ``batch_size`` windows of ``seq_len + 1`` characters at random offsets of
    the training text (the first 90% of the corpus). ``eval_loss`` is the loss on
    ``eval_windows`` fixed windows spread evenly over the held-out last 10%. Tasks differ only
    in their initialisation and minibatch order: ``task_params`` is ``{}``.

    Initialisation (GPT-2): weights ``N(0, init_scale²)``, the two projections into the
    residual stream further divided by ``sqrt(2 num_layers)``; biases zero, layer-norm scales
    one. ``params`` is a dict with ``"embed" (vocab, d)``, ``"position" (seq_len, d)``,
    ``"blocks"`` (a list of dicts ``"norm1"``, ``"qkv"``, ``"proj"``, ``"norm2"``,
    ``"hidden"``, ``"out"``), ``"norm"`` and ``"head"``.

    Args:
        num_layers: transformer blocks.
        d_model: width of the residual stream.
        num_heads: attention heads (must divide ``d_model``).
        d_ff: hidden units of each block's MLP; ``None`` for ``4 * d_model``.
        seq_len: characters of context (the length of the positional embedding).
        batch_size: windows per minibatch.
        eval_windows: held-out windows that ``eval_loss`` averages over.
        init_scale: standard deviation of the initial weights.

    References:
        Vaswani et al. 2017, "Attention is all you need"; Radford et al. 2019, "Language
        models are unsupervised multitask learners" (pre-norm blocks and initialisation).

    Example:
        >>> import jax, math
        >>> from learned_opt.tasks import CharTransformer
        >>> family = CharTransformer(d_model=32, num_heads=2, seq_len=16, batch_size=4)
        >>> task = family.task(jax.random.key(0))
        >>> params = task.init(jax.random.key(1))
        >>> tokens = task.batch(jax.random.key(2))
        >>> tokens.shape, family.apply(params, tokens[:, :-1]).shape
        ((4, 17), (4, 16, 97))
        >>> abs(float(task.loss(params, tokens)) - math.log(97)) < 0.1
        True
    """

    name: ClassVar[str] = "char_transformer"

    num_layers: int = 1
    d_model: int = 64
    num_heads: int = 4
    d_ff: int | None = None
    seq_len: int = 64
    batch_size: int = 16
    eval_windows: int = 64
    init_scale: float = 0.02

    def __post_init__(self) -> None:
        for field in (
            "num_layers",
            "d_model",
            "num_heads",
            "seq_len",
            "batch_size",
            "eval_windows",
        ):
            object.__setattr__(self, field, _checks.integer(field, getattr(self, field), minimum=1))
        check(
            self.d_model % self.num_heads == 0,
            f"num_heads: must divide d_model={self.d_model}, got {self.num_heads}",
        )
        if self.d_ff is not None:
            object.__setattr__(self, "d_ff", _checks.integer("d_ff", self.d_ff, minimum=1))
        object.__setattr__(
            self,
            "init_scale",
            _checks.real("init_scale", self.init_scale, minimum=0.0, inclusive=False),
        )
        held_out = len(corpus_tokens()[1])
        check(
            self.seq_len + 1 <= held_out,
            f"seq_len: must be < {held_out} (the held-out text), got {self.seq_len}",
        )

    @property
    def hidden_units(self) -> int:
        """Hidden units of each block's MLP (``d_ff``, or ``4 * d_model``)."""
        return 4 * self.d_model if self.d_ff is None else self.d_ff

    def sample(self, key: jax.Array) -> PyTree:
        return {}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        d, f, v = self.d_model, self.hidden_units, VOCAB_SIZE
        shapes = {"embed": (v, d), "position": (self.seq_len, d), "head": (d, v)}
        for i in range(self.num_layers):
            shapes |= {
                f"qkv{i}": (d, 3 * d),
                f"proj{i}": (d, d),
                f"hidden{i}": (d, f),
                f"out{i}": (f, d),
            }
        draws = dict(zip(shapes, jax.random.split(key, len(shapes)), strict=True))
        residual = 1.0 / math.sqrt(2 * self.num_layers)

        def weight(name, scale=1.0):
            return self.init_scale * scale * _nn.normal(draws[name], shapes[name])

        def dense(name, scale=1.0):
            return {"w": weight(name, scale), "b": jnp.zeros(shapes[name][-1], jnp.float32)}

        def norm():
            return {"scale": jnp.ones(d, jnp.float32), "bias": jnp.zeros(d, jnp.float32)}

        blocks = [
            {
                "norm1": norm(),
                "qkv": dense(f"qkv{i}"),
                "proj": dense(f"proj{i}", residual),
                "norm2": norm(),
                "hidden": dense(f"hidden{i}"),
                "out": dense(f"out{i}", residual),
            }
            for i in range(self.num_layers)
        ]
        return {
            "embed": weight("embed"),
            "position": weight("position"),
            "blocks": blocks,
            "norm": norm(),
            "head": dense("head"),
        }

    def _attention(self, block: PyTree, x: jax.Array) -> jax.Array:
        batch, length, d = x.shape
        heads, head_dim = self.num_heads, d // self.num_heads
        qkv = _nn.dense(block["qkv"], x).reshape(batch, length, 3, heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        causal = jnp.tril(jnp.ones((length, length), bool))
        scores = jnp.where(causal[None, None], scores, -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, d)
        return _nn.dense(block["proj"], mixed)

    def apply(self, params: PyTree, tokens: jax.Array) -> jax.Array:
        """Logits ``(batch, length, vocab)`` of the next token after each of ``tokens``."""
        length = tokens.shape[1]
        x = params["embed"][tokens] + params["position"][None, :length]
        for block in params["blocks"]:
            x = x + self._attention(block, _layer_norm(block["norm1"], x))
            hidden = jax.nn.gelu(_nn.dense(block["hidden"], _layer_norm(block["norm2"], x)))
            x = x + _nn.dense(block["out"], hidden)
        return _nn.dense(params["head"], _layer_norm(params["norm"], x))

    def batch(self, task_params: PyTree, key: jax.Array) -> jax.Array:
        train = corpus_tokens()[0]
        starts = jax.random.randint(key, (self.batch_size,), 0, len(train) - self.seq_len)
        return _windows(jnp.asarray(train), starts, self.seq_len + 1)

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        tokens = batch.astype(jnp.int32)
        logits = self.apply(params, tokens[:, :-1])
        return _nn.softmax_cross_entropy(logits.reshape(-1, VOCAB_SIZE), tokens[:, 1:].reshape(-1))

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        held_out = corpus_tokens()[1]
        starts = np.linspace(0, len(held_out) - self.seq_len - 1, self.eval_windows)
        tokens = _windows(held_out, starts.astype(np.int32), self.seq_len + 1)
        return self.loss(task_params, params, jnp.asarray(tokens))


def _windows(tokens, starts, length: int):
    """``tokens[start : start + length]`` for every start (numpy or jax arrays)."""
    return tokens[starts[:, None] + np.arange(length)[None, :]]
