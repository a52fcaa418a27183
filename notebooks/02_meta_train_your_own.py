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
# # Meta-train a learned optimizer on your own task family
#
# A learned optimizer is only as good as the problems it was meta-trained on. This notebook
# defines a new family of problems, meta-trains the coordinatewise LSTM optimizer of
# Andrychowicz et al. (2016) on it with truncated backpropagation through time, and compares
# it on held-out tasks with Adam at its best learning rate.
#
# Set `LEARNED_OPT_NOTEBOOK_QUICK=1` to run it on smaller settings (the test suite does).

# %%
import dataclasses
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import learned_opt as lo
from learned_opt import evaluation

QUICK = os.environ.get("LEARNED_OPT_NOTEBOOK_QUICK") == "1"
META_STEPS = 30 if QUICK else 1000
NUM_STEPS = 100  # inner training steps: the horizon the optimizer is meta-trained for
TEST_TASKS = 16 if QUICK else 100
TUNE_TASKS = 8 if QUICK else 32
LR_GRID = (1e-2, 1e-1, 1.0) if QUICK else evaluation.DEFAULT_GRID

# %% [markdown]
# ## 1. A task family
#
# A `lo.tasks.TaskFamily` is a distribution over training problems. Everything that varies
# between tasks lives in arrays (`sample` returns them), so a batch of tasks is one `jax.vmap`
# and meta-training compiles to one program. Four pure functions define a family:
#
# - `sample(key)`: the task's arrays;
# - `init(task_params, key)`: the model's initial parameters;
# - `batch(task_params, key)`: one minibatch;
# - `loss(task_params, params, batch)`: the scalar training loss.
#
# Make it a frozen dataclass: the family is a static argument of `jax.jit`, so it must be
# hashable. `eval_loss(task_params, params)`, the low-noise loss that evaluation reports at the
# end of a run, defaults to the loss on a batch drawn with a fixed key.
#
# Our family: linear regression in 16 dimensions where each task draws its own input scale
# $s$ between $e^{-1.5}$ and $e^{1.5}$. The loss's curvature grows with $s^2$, so it differs
# 400-fold between the easiest and the hardest tasks: a hand-designed optimizer with one
# learning rate has to compromise between them, while a learned optimizer can read the scale
# off the gradients and the loss as it trains.


# %%
@dataclasses.dataclass(frozen=True)
class ScaledRegression(lo.tasks.TaskFamily):
    """Noise-free linear regression whose inputs have a per-task scale."""

    dim: int = 16
    batch_size: int = 32

    def sample(self, key):
        k_weights, k_scale = jax.random.split(key)
        return {
            "w_true": jax.random.normal(k_weights, (self.dim,)),
            "log_scale": jax.random.uniform(k_scale, (), minval=-1.5, maxval=1.5),
        }

    def init(self, task_params, key):
        return {"w": jnp.zeros(self.dim), "b": jnp.zeros(())}

    def batch(self, task_params, key):
        x = jax.random.normal(key, (self.batch_size, self.dim)) * jnp.exp(task_params["log_scale"])
        return x, x @ task_params["w_true"]

    def loss(self, task_params, params, batch):
        x, y = batch
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


family = ScaledRegression()
for seed in range(3):
    task_params = family.sample(jax.random.key(seed))
    params = family.init(task_params, jax.random.key(seed))
    loss = family.loss(task_params, params, family.batch(task_params, jax.random.key(seed)))
    print(f"task {seed}: input scale {float(jnp.exp(task_params['log_scale'])):.2f}, ", end="")
    print(f"initial loss {float(loss):.2f}")

# %% [markdown]
# ## 2. Meta-training
#
# `lo.MetaTrainer` keeps `num_tasks` inner training runs going at once. Each meta-step advances
# every run by `unroll_length` steps of the learned optimizer, differentiates the meta-loss of
# those steps with respect to the optimizer's weights (truncated backpropagation through time,
# as in Andrychowicz et al. 2016: the gradient does not flow into earlier segments) and takes
# one Adam step on the weights. A run that reaches `horizon` steps restarts on a new task; the
# runs start at staggered steps, so every meta-batch sees early and late phases of training.
#
# Andrychowicz et al. sum the losses along the unroll. Here the loss falls by orders of
# magnitude, and a sum would be dominated by the first steps of the hardest tasks, so we use
# `meta_loss="log_mean"`, the mean of the log-losses: every decade of progress counts the
# same.

# %%
optimizer = lo.LSTMOptimizer()  # 2 layers of 20 units, as in the paper
trainer = lo.MetaTrainer(
    optimizer,
    family,
    lo.TruncatedBackprop(unroll_length=20, horizon=NUM_STEPS, meta_loss="log_mean"),
    optax.adam(3e-3),
    num_tasks=8,
)
meta_losses = []
state = trainer.run(
    trainer.init(jax.random.key(0)),
    num_steps=META_STEPS,
    progress=False,
    callback=lambda step, metrics, state: meta_losses.append(metrics["meta_loss"]),
)
print(f"meta-loss: {np.mean(meta_losses[:10]):.3f} (first 10 meta-steps)", end=" ")
print(f"-> {np.mean(meta_losses[-10:]):.3f} (last 10)")

# %% [markdown]
# ## 3. Evaluation on held-out tasks
#
# `evaluation.task_keys(seed, n, split)` gives the keys of `n` tasks; the `"train"` and
# `"test"` splits never overlap. Adam's learning rate is tuned on training tasks
# (`tune_baseline` tries every learning rate of the grid in one vectorised program and keeps
# the one with the lowest median final loss); then both optimizers train the same test tasks.

# %%
test_keys = evaluation.task_keys(0, TEST_TASKS, "test")
tuned_adam = evaluation.tune_baseline(
    family, "adam", evaluation.task_keys(0, TUNE_TASKS, "train"), NUM_STEPS, LR_GRID
)
curves = {
    "learned LSTM": evaluation.learned_curves(
        family, optimizer, state.meta_params, test_keys, NUM_STEPS
    ),
    f"Adam, tuned lr {tuned_adam.hyperparams['lr']:.2g}": evaluation.train_curves(
        family, tuned_adam.transformation(), test_keys, NUM_STEPS
    ),
}
for name, c in curves.items():
    summary = evaluation.summarize(c.final)
    print(f"{name:>24}: final loss median {summary['median']:.2e}", end=", ")
    print(f"5-95% of tasks {summary['q05']:.1e} to {summary['q95']:.1e}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
steps = np.arange(1, NUM_STEPS + 1)
for name, c in curves.items():
    q05, median, q95 = np.percentile(c.losses, [5, 50, 95], axis=0)
    (line,) = ax.plot(steps, median, label=name)
    ax.fill_between(steps, q05, q95, color=line.get_color(), alpha=0.2)
ax.set(xlabel="step", ylabel="training loss", yscale="log")
ax.set_title(f"{TEST_TASKS} held-out tasks: median and 5-95%")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# With the full settings (1000 meta-steps, about 40 seconds on a 2-core CPU) the learned
# optimizer ends the 100 steps at a median loss near 1e-6, against about 6e-4 for Adam at its
# tuned learning rate of 0.1: it adapts its step size to each task's scale, which one learning
# rate cannot. The quick settings (30 meta-steps) are far too short for that. The comparison
# is on the family it was meta-trained on; on other problems, test it before trusting it.

# %% [markdown]
# ## 4. Save, load, use
#
# `lo.save` writes the architecture and weights to a small msgpack file; `lo.load` reads them
# back, and `as_optax` turns them into an optax transformation for any training loop, used
# exactly like the pretrained optimizer of `01_quickstart`.

# %%
path = "scaled_regression.msgpack"  # in the working directory
lo.save(path, optimizer, state.meta_params)
loaded, meta_params = lo.load(path)
tx = loaded.as_optax(meta_params)  # tx.update(grads, opt_state, params, value=loss)
print(f"{path}: {os.path.getsize(path)} bytes, {loaded}")

same = jax.tree.map(np.array_equal, meta_params, state.meta_params)
assert loaded == optimizer and all(jax.tree.leaves(same))
learned = curves["learned LSTM"]
assert np.median(learned.final) < np.median(learned.losses[:, 0]), "no progress on test tasks"

# %% [markdown]
# ## References
#
# - M. Andrychowicz, M. Denil, S. Gómez, M. W. Hoffman, D. Pfau, T. Schaul, B. Shillingford,
#   N. de Freitas. *Learning to learn by gradient descent by gradient descent.* NeurIPS 2016.
