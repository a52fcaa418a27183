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
# # Inside the LSTM: gradient descent is a special case
#
# An LSTM cell updates its cell state as
#
# $$c_t = f_t \odot c_{t-1} + i_t \odot \tilde c_t,$$
#
# with a *forget gate* $f_t$, an *input gate* $i_t$ and a *candidate* $\tilde c_t$. Ravi &
# Larochelle (2017) noticed that this is gradient descent in disguise: let the cell state be
# the parameters, $c_t = \theta_t$, and set
#
# - forget gate $f_t = 1$ (keep the parameters),
# - input gate $i_t = \eta$ (the learning rate),
# - candidate $\tilde c_t = -\nabla_t$ (the negative gradient),
#
# and the update is $\theta_t = \theta_{t-1} - \eta \nabla_t$: plain SGD. Their *Meta-LSTM*
# optimizer (`lo.MetaLSTMOptimizer`) keeps this form but computes both gates, per coordinate,
# from the gradient, the loss, the parameter and the previous gate, so meta-training can learn
# a learning-rate schedule and weight decay of its own.
#
# This notebook checks the identity numerically, then looks at the gates of a trained
# Meta-LSTM and at the effective step sizes of the coordinatewise LSTM optimizer of
# Andrychowicz et al. (2016).
#
# Set `LEARNED_OPT_NOTEBOOK_QUICK=1` to run it on smaller settings (the test suite does).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import learned_opt as lo

QUICK = os.environ.get("LEARNED_OPT_NOTEBOOK_QUICK") == "1"
NUM_STEPS = 100 if QUICK else 200  # training steps per run
NUM_TASKS = 2 if QUICK else 16  # training runs (different initial weights and minibatches)

# Two variants of the digits MLP (64-20-10, minibatches of 128), each the family one of the
# shipped optimizers was meta-trained on: sigmoid units with N(0, 0.01²) weights as in
# Andrychowicz et al. (2016) for `lstm_digits`; ReLU units with LeCun-normal weights for
# `meta_lstm_digits`.
SIGMOID_MLP = lo.tasks.MLP()
RELU_MLP = lo.tasks.MLP(activation="relu", init_scale=None)


# `evaluation.trace` trains one model per key (one vmapped, jitted program) and keeps
# `record(params, grads, updates, state)` of every step: what we look at below.
trace = lo.evaluation.trace


def flat(tree):
    """All leaves of ``tree`` as one vector (the optimizers' coordinate order)."""
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


# %% [markdown]
# ## 1. SGD as an LSTM, numerically
#
# `MetaLSTMOptimizer.sgd_meta_params(lr)` returns meta-parameters whose gate weights are zero
# and whose gate biases are $+40$ for the forget gate ($\sigma(40) = 1$ exactly in float32) and
# $\operatorname{logit}(\eta)$ for the input gate ($\sigma(\operatorname{logit}\eta) = \eta$).
# Training the ReLU network with these and with `optax.sgd(lr)` should give the same
# parameters at every step, up to float rounding. (For this learning rate the compiled gate
# comes out as exactly 0.25 and the runs agree bit for bit; for others, such as 0.3 or 0.4,
# it rounds to a neighbouring float32 and the parameters drift apart by a few 1e-7 over 200
# steps.)

# %%
LEARNING_RATE = 0.25
meta_lstm = lo.MetaLSTMOptimizer()
sgd_params = meta_lstm.sgd_meta_params(LEARNING_RATE)
print(f"forget-gate bias {float(sgd_params['forget']['b']):.1f}", end=", ")
print(f"input-gate bias {float(sgd_params['input']['b']):.4f} = logit({LEARNING_RATE})")
sgd_as_lstm = meta_lstm.as_optax(sgd_params)
record_params = lambda params, grads, updates, state: flat(params)

one_task = jax.random.key(0)[None]
sgd = optax.sgd(LEARNING_RATE)
losses_sgd, params_sgd = (x[0] for x in trace(RELU_MLP, sgd, one_task, NUM_STEPS, record_params))
_, params_lstm = (x[0] for x in trace(RELU_MLP, sgd_as_lstm, one_task, NUM_STEPS, record_params))

max_diff = float(jnp.max(jnp.abs(params_sgd - params_lstm)))
print(f"{params_sgd.shape[1]} parameters, {NUM_STEPS} steps")
print(f"loss {float(losses_sgd[0]):.4f} -> {float(losses_sgd[-1]):.4f} with optax.sgd")
print(f"max |theta_sgd - theta_lstm| over all steps and coordinates: {max_diff:.2e}")
assert max_diff < 1e-6

# %% [markdown]
# ## 2. The gates of a trained Meta-LSTM
#
# `lo.load_pretrained("meta_lstm_digits")` is a Meta-LSTM meta-trained on the ReLU digits MLP
# (`RELU_MLP` above). Its state keeps the gates of the last step, one value per coordinate
# (`MetaLSTMState.forget` and `MetaLSTMState.input`, trees shaped like the parameters), so we
# record them at every step of `NUM_TASKS` held-out training runs and plot their distribution
# across all coordinates: median and 5-95% band per step.
#
# Ravi & Larochelle (2017) observed that after meta-training the forget gate stays close to 1
# (little weight decay) while the input gate, the learning rate, changes over the run.

# %%
print("pretrained optimizers:", lo.list_pretrained())
meta_lstm, meta_params = lo.load_pretrained("meta_lstm_digits")


def record_gates(params, grads, updates, state):
    """The gates of every coordinate (the state keeps them per parameter leaf), flattened."""
    return tuple(ravel_pytree(g)[0] for g in (state.forget, state.input))


keys = jax.random.split(jax.random.key(1), NUM_TASKS)
tx = meta_lstm.as_optax(meta_params)
losses, (forget, input_gate) = trace(RELU_MLP, tx, keys, NUM_STEPS, record_gates)


def band(values):
    """5th, 50th and 95th percentile per step of ``values (tasks, steps, coordinates)``.

    NaN entries are left out.
    """
    per_step = np.moveaxis(np.asarray(values), 1, 0).reshape(NUM_STEPS, -1)
    return np.nanpercentile(per_step, [5, 50, 95], axis=1)


def plot_band(ax, values, title):
    q05, median, q95 = band(values)
    steps = np.arange(1, NUM_STEPS + 1)
    ax.fill_between(steps, q05, q95, alpha=0.3, label="5-95% of coordinates")
    ax.plot(steps, median, color="k", label="median")
    ax.set(xlabel="step", title=title)
    ax.grid(alpha=0.3)


fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
plot_band(axes[0], forget, "forget gate f")
plot_band(axes[1], input_gate, "input gate i (learning rate)")
axes[1].set_yscale("log")
axes[0].legend()
axes[2].plot(np.arange(NUM_STEPS), np.median(losses, axis=0), color="k")
axes[2].set(xlabel="step", title="training loss (median over runs)", yscale="log")
axes[2].grid(alpha=0.3)
fig.tight_layout()
plt.show()

f_q05, f_median, _ = band(forget)
_, i_median, _ = band(input_gate)
print(f"forget gate: median {f_median.min():.4f} to {f_median.max():.4f}", end=", ")
print(f"5th percentile never below {f_q05.min():.4f}")
print(
    f"median learning rate: {i_median[0]:.3g} at step 1, {i_median.max():.3g} at most "
    f"(step {i_median.argmax() + 1}), {i_median[-1]:.3g} at step {NUM_STEPS}"
)
median_loss = np.median(losses, axis=0)
print(f"median training loss {median_loss[0]:.3f} -> {median_loss[-1]:.3f}")
assert median_loss[-10:].mean() < 0.5 * median_loss[0], "the Meta-LSTM did not train"

# %% [markdown]
# What the plots show. The forget gate stays within a fraction of a percent of 1, as Ravi &
# Larochelle observed: a gate of 0.998 would shrink a weight by 0.2% per step, a learned weight
# decay, and the optimizer uses almost none. The input gate, the learning rate, is just below 1
# for the median coordinate, the largest value a sigmoid gate can take. That is where plain SGD
# does best on this family too: tuned over half-decades with `evaluation.tune_baseline` on
# 200-step runs, SGD's best learning rate is 1 (3.16 diverges). So the Meta-LSTM found that
# step size by itself, and could not go beyond it if it wanted to: a learned optimizer inherits
# the limits of its architecture. Unlike SGD, though, it spreads its learning rates: after the
# first steps, 5% of the coordinates get rates more than 30 times smaller.

# %% [markdown]
# ## 3. Effective step sizes of the LSTM optimizer
#
# The coordinatewise LSTM optimizer of Andrychowicz et al. (2016) has no gates that map onto a
# learning rate: a two-layer LSTM reads features of each coordinate's gradient (log/sign
# preprocessed; for `lstm_digits` also the gradient and momentum divided by a running RMS, the
# inputs of Lv et al. 2017) and of the loss, and outputs the coordinate's update directly. We
# can still ask what learning rate it *acts* like: per coordinate and step, the ratio
# $|\Delta\theta| / |\nabla|$. For SGD this is the same learning rate for every coordinate;
# for Adam it is about $\eta / \sqrt{\hat v}$, different per coordinate.
#
# Some weights never get a gradient here: the digits have pixels that are 0 in every image, and
# the first-layer weights of those pixels have a gradient of exactly 0. The ratio is undefined
# for them, so they are left out of the band and counted separately.

# %%
lstm, lstm_params = lo.load_pretrained("lstm_digits")
print(lstm)
tx = lstm.as_optax(lstm_params)
record_sizes = lambda params, grads, updates, state: (jnp.abs(flat(updates)), jnp.abs(flat(grads)))
losses, (update_size, grad_size) = trace(SIGMOID_MLP, tx, keys, NUM_STEPS, record_sizes)
update_size, grad_size = np.asarray(update_size), np.asarray(grad_size)
has_grad = grad_size > 0
ratio = np.where(has_grad, update_size / np.where(has_grad, grad_size, 1.0), np.nan)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
plot_band(axes[0], ratio, "effective step size |update| / |grad|")
axes[0].set_yscale("log")
axes[0].legend()
axes[1].plot(np.arange(NUM_STEPS), np.median(losses, axis=0), color="k")
axes[1].set(xlabel="step", title="training loss (median over runs)", yscale="log")
axes[1].grid(alpha=0.3)
fig.tight_layout()
plt.show()

r_q05, r_median, r_q95 = band(ratio)
print(
    f"effective step size at step {NUM_STEPS}: median {r_median[-1]:.3g}, "
    f"5-95% of coordinates {r_q05[-1]:.3g} to {r_q95[-1]:.3g}"
)
if not has_grad.all():
    print(
        f"{1 - has_grad.mean():.1%} of the coordinate-steps have a zero gradient; the median "
        f"|update| there is {np.median(update_size[~has_grad]):.2g}"
    )
assert np.isfinite(r_median).all() and (r_median > 0).all()

# %% [markdown]
# The spread covers orders of magnitude: like Adam, the learned optimizer gives each
# coordinate its own step size and changes it over the run. Its inputs hardly depend on the
# gradient's scale (the log/sign features grow with its logarithm, the normalised ones not at
# all), so coordinates with tiny gradients get huge ratios, as they would with Adam or a
# sign-based method. And it moves coordinates whose gradient is exactly zero: the LSTM's state
# carries a memory of earlier steps and its output layer has a bias, so the learned rule is
# not a rescaled gradient at all.

# %% [markdown]
# ## References
#
# - M. Andrychowicz, M. Denil, S. Gómez, M. W. Hoffman, D. Pfau, T. Schaul, B. Shillingford,
#   N. de Freitas. *Learning to learn by gradient descent by gradient descent.* NeurIPS 2016.
# - K. Lv, S. Jiang, J. Li. *Learning gradient descent: better generalization and longer
#   horizons.* ICML 2017.
# - S. Ravi, H. Larochelle. *Optimization as a model for few-shot learning.* ICLR 2017.
