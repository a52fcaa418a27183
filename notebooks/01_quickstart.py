# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: a pretrained learned optimizer in a flax NNX training loop
#
# A *learned optimizer* is a small neural network that computes the parameter updates of another
# network. learned_opt ships a few that are already meta-trained; `lo.pretrained(name)` returns
# one as an ordinary `optax.GradientTransformationExtraArgs`, so it drops into any optax or
# flax training loop.
#
# This notebook trains a small MLP on scikit-learn's handwritten digits three times: with the
# pretrained coordinatewise LSTM optimizer of Andrychowicz et al. (2016), with Adam at its
# default learning rate 1e-3, and with Adam at a learning rate tuned for this problem.
#
# Set `LEARNED_OPT_NOTEBOOK_QUICK=1` to run it on smaller settings (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import learned_opt as lo

QUICK = os.environ.get("LEARNED_OPT_NOTEBOOK_QUICK") == "1"
NUM_STEPS = 60 if QUICK else 200  # training steps per run
BATCH_SIZE = 128
LR_GRID = (1e-3, 1e-2, 1e-1) if QUICK else (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)

print(lo.list_pretrained())

# %% [markdown]
# ## The data and the model
#
# `lo.tasks.datasets.load_dataset("digits")` returns `(x, y, image_shape)`: 1500 training
# images as flattened float32 rows with values in [0, 1], their integer labels and the image
# shape (8, 8). The `"test"` split holds the other 297 images.
#
# The model is the one the optimizer was meta-trained on: one hidden layer of 20 sigmoid units,
# weights and biases drawn from N(0, 0.01²), minibatches of 128 (the MNIST setting of
# Andrychowicz et al. 2016, on the smaller digits).

# %%
x_train, y_train, image_shape = lo.tasks.datasets.load_dataset("digits", "train")
x_test, y_test, _ = lo.tasks.datasets.load_dataset("digits", "test")
print(f"train {x_train.shape}, test {x_test.shape}, images {image_shape}")

normal = nnx.initializers.normal(0.01)


class MLP(nnx.Module):
    """64 -> 20 sigmoid -> 10 logits."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 20, kernel_init=normal, bias_init=normal, rngs=rngs)
        self.out = nnx.Linear(20, 10, kernel_init=normal, bias_init=normal, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.sigmoid(self.hidden(x)))


def cross_entropy(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


# %% [markdown]
# ## The training loop
#
# The only difference from a loop with Adam is the loss: the learned optimizer reads it (as a
# scale-free feature), so it is passed the optax way, as `value=`. With flax NNX,
# `nnx.Optimizer.update(model, grads, value=loss)` forwards it to `tx.update`; hand-designed optax
# optimizers ignore it.


# %%
@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(cross_entropy)(model, x, y)
    optimizer.update(model, grads, value=loss)
    return loss


def train(tx, seed, learning_rate=None):
    """Trains a fresh MLP with ``tx``; returns its training losses and test accuracy.

    ``learning_rate``, if given, overrides the one in the state of an
    ``optax.inject_hyperparams`` transformation.
    """
    model = MLP(nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    if learning_rate is not None:
        optimizer.opt_state.hyperparams["learning_rate"][...] = learning_rate
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(NUM_STEPS):
        idx = rng.integers(0, len(y_train), BATCH_SIZE)
        losses.append(float(train_step(model, optimizer, x_train[idx], y_train[idx])))
    accuracy = float((model(x_test).argmax(-1) == y_test).mean())
    return np.array(losses), accuracy


# %% [markdown]
# ## A fair baseline: Adam at a tuned learning rate
#
# Adam's default 1e-3 is far from best on this small network, so we also tune its learning
# rate: one run per learning rate of a grid, on a tuning seed (0), scored by the mean loss of
# the last 10 steps. The comparison below then uses another seed (1) for the initial weights
# and the minibatch order. `optax.inject_hyperparams` keeps the learning rate in the optimizer
# state instead of the compiled program, so every learning rate reuses one compiled
# `train_step`.

# %%
adam = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
scores = {}
for lr in LR_GRID:
    losses, _ = train(adam, seed=0, learning_rate=lr)
    scores[lr] = losses[-10:].mean()
    print(f"Adam {lr:8.2g}: loss over the last 10 steps {scores[lr]:.3f}")
best_lr = min(scores, key=scores.get)
print(f"tuned learning rate: {best_lr:.2g}")

# %% [markdown]
# ## The comparison

# %%
results = {
    "learned (lstm_digits)": train(lo.pretrained("lstm_digits"), seed=1),
    "Adam 1e-3": train(adam, seed=1, learning_rate=1e-3),
    f"Adam {best_lr:.2g} (tuned)": train(adam, seed=1, learning_rate=best_lr),
}
for name, (losses, accuracy) in results.items():
    print(
        f"{name:>22}: loss {losses[0]:.3f} -> {losses[-10:].mean():.3f} "
        f"(mean of the last 10 steps), test accuracy {accuracy:.1%}"
    )

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, (losses, _) in results.items():
    ax.plot(np.arange(1, NUM_STEPS + 1), losses, label=name)
ax.set(xlabel="step", ylabel="training loss (minibatch)", yscale="log", title="MLP on digits")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# `lstm_digits` was meta-trained on this very problem (`lo.tasks.MLP()`). Read the test
# accuracies as well as the curves: meta-training rewarded it only for lowering the training
# loss, so a lower training loss than tuned Adam need not come with a better test accuracy.
# Beyond its training setting (longer runs, other architectures, other data) it can do worse
# than tuned Adam; Andrychowicz et al. (2016) found that their LSTM optimizer fails on ReLU
# networks. Each of its steps also costs more than Adam's: it runs a two-layer LSTM for every
# coordinate of the model.

# %%
learned_losses, _ = results["learned (lstm_digits)"]
assert learned_losses[-10:].mean() < 0.5 * learned_losses[0], "the learned optimizer did not train"

# %% [markdown]
# ## References
#
# - M. Andrychowicz, M. Denil, S. Gómez, M. W. Hoffman, D. Pfau, T. Schaul, B. Shillingford,
#   N. de Freitas. *Learning to learn by gradient descent by gradient descent.* NeurIPS 2016.
