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
# # Few-shot sinusoid regression: MAML, Reptile and pre-training
#
# Learning to learn also works one level down: instead of learning the optimizer, learn the
# *initial parameters* that an ordinary optimizer turns into a good model after a few steps on
# a few examples. This notebook compares, on the sinusoid regression problem of Finn et al.
# (2017):
#
# - **pre-training**: fit one network to all tasks at once, then fine-tune (the baseline);
# - **MAML** (Finn et al. 2017): differentiate the loss *after* an inner SGD step with respect
#   to the initial parameters, second-order terms included;
# - **first-order MAML**: the same without the second-order terms (cheaper);
# - **Reptile** (Nichol et al. 2018): take several inner steps per task and move the initial
#   parameters toward the result; no gradient through the inner loop at all.
#
# Every task is $y = A \sin(x - \varphi)$ with amplitude $A \sim U[0.1, 5]$, phase
# $\varphi \sim U[0, \pi]$ and inputs $x \sim U[-5, 5]$; the model is a 1-40-40-1 ReLU network.
# A method sees K points of a new task (the *support set*), adapts with its inner optimizer,
# and is scored by the mean squared error on 100 fresh points of that task (the *query set*).
#
# Set `LEARNED_OPT_NOTEBOOK_QUICK=1` to run it on smaller settings (the test suite does).

# %%
import functools
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import learned_opt as lo
from learned_opt import fewshot

QUICK = os.environ.get("LEARNED_OPT_NOTEBOOK_QUICK") == "1"
ITERATIONS = 200 if QUICK else 5_000  # meta-iterations (the MAML paper's code runs 70,000)
META_BATCH = 10 if QUICK else 25  # tasks per meta-iteration
TEST_TASKS = 50 if QUICK else 500
K_TRAIN = 10  # support and query points per task during meta-training
K_TEST = 5  # support points of a test task
FINE_TUNE_STEPS = 10

family = lo.tasks.Sinusoid()
initial_params = family.init(None, jax.random.key(0))

# %% [markdown]
# ## The four methods
#
# Each function of `lo.fewshot` returns a learner: pure, jitted functions `init`, `update`
# (one meta-iteration on a batch of tasks), `adapt` (fine-tune on one support set) and
# `evaluate` (query loss after 0, 1, ..., n fine-tuning steps). Their defaults follow the
# papers: MAML with one inner SGD step of 0.01 and Adam 1e-3 as meta-optimizer; Reptile with 5
# inner steps of Adam ($\beta_1 = 0$, rate 0.01) that alternate between a task's support and
# query points, and a meta step of 1; pre-training with Adam 1e-3, fine-tuned with SGD at 0.01.

# %%
apply = family.apply
learners = {
    "pre-training": fewshot.pretrain(apply, "mse"),
    "MAML": fewshot.maml(apply, "mse"),
    "first-order MAML": fewshot.first_order_maml(apply, "mse"),
    "Reptile": fewshot.reptile(apply, "mse"),
}

# %% [markdown]
# ## Meta-training
#
# `fewshot.sample_episodes(family, key, num_tasks, k_support, k_query)` draws a batch of tasks
# with their support and query sets; `fewshot.fit(learner, state, sample, key, n)` runs `n`
# meta-iterations in one compiled `lax.scan`. Every method meta-trains on the same batches (the
# same key), so each sees the same tasks: an equal budget.

# %%
sample = functools.partial(
    fewshot.sample_episodes, family, num_tasks=META_BATCH, k_support=K_TRAIN, k_query=K_TRAIN
)
states, train_losses = {}, {}
for name, learner in learners.items():
    state = learner.init(initial_params)
    states[name], train_losses[name] = fewshot.fit(
        learner, state, sample, jax.random.key(1), ITERATIONS
    )
for name, losses in train_losses.items():
    losses = np.asarray(losses)
    print(f"{name:>16}: training loss {losses[:50].mean():.3f} -> {losses[-50:].mean():.3f}")

# %% [markdown]
# ## Fine-tuning on new tasks
#
# The test tasks come from a key never used in meta-training. Each method adapts with its own
# inner optimizer on the K = 5 support points.

# %%
test = fewshot.sample_episodes(family, jax.random.key(2), TEST_TASKS, K_TEST, 100)
mse = {
    name: np.asarray(learner.evaluate(states[name], test, FINE_TUNE_STEPS))
    for name, learner in learners.items()
}
print("query MSE after 0 / 1 / 5 / 10 fine-tuning steps: mean over test tasks | median")
for name, values in mse.items():
    means = " / ".join(f"{values[:, k].mean():.3f}" for k in (0, 1, 5, 10))
    medians = " / ".join(f"{np.median(values[:, k]):.3f}" for k in (0, 1, 5, 10))
    print(f"{name:>16}: {means} | {medians}")

# %% [markdown]
# For reference, Finn et al. (2017) report 5-shot mean MSEs of 0.67 / 0.38 / 0.35 for MAML and
# 2.41 / 2.23 / 2.19 for pre-training after 1 / 5 / 10 steps, after 70,000 meta-iterations;
# `benchmarks/RESULTS.md` has every method at an equal budget with its step sizes tuned.
# Pre-training's initialisation was never trained to be fine-tuned, so a few steps of SGD help
# it little. MAML's initialisation is trained for exactly its inner step size.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
steps = np.arange(FINE_TUNE_STEPS + 1)
for name, values in mse.items():
    mean = values.mean(0)
    half_width = 1.96 * values.std(0, ddof=1) / np.sqrt(len(values))
    axes[0].errorbar(steps, mean, yerr=half_width, label=name, marker=".", capsize=2)
axes[0].set(xlabel="fine-tuning steps", ylabel="query MSE", yscale="log")
axes[0].set_title(f"{K_TEST}-shot, {TEST_TASKS} test tasks (95% intervals)")
axes[0].legend()
axes[0].grid(alpha=0.3)

# One test task: the function, its 5 support points, and each method's fit after 10 steps.
support = jax.tree.map(lambda a: a[0], test.support)
x_grid = jnp.linspace(-5.0, 5.0, 200)[:, None]
for name, learner in learners.items():
    adapted = learner.adapt(states[name], support, FINE_TUNE_STEPS)
    axes[1].plot(x_grid[:, 0], apply(adapted, x_grid)[:, 0], label=name)
x_query, y_query = test.query[0][0][:, 0], test.query[1][0][:, 0]
order = jnp.argsort(x_query)
axes[1].plot(x_query[order], y_query[order], "k--", label="true function (query points)")
axes[1].plot(support[0][:, 0], support[1][:, 0], "k^", label=f"{K_TEST} support points")
axes[1].set(xlabel="x", ylabel="y", title=f"one test task after {FINE_TUNE_STEPS} steps")
axes[1].legend(fontsize=8)
axes[1].grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %%
assert all(np.isfinite(values).all() for values in mse.values())
maml_losses = np.asarray(train_losses["MAML"])
assert maml_losses[-50:].mean() < maml_losses[:50].mean(), "MAML's meta-training loss did not drop"

# %% [markdown]
# ## References
#
# - C. Finn, P. Abbeel, S. Levine. *Model-agnostic meta-learning for fast adaptation of deep
#   networks.* ICML 2017.
# - A. Nichol, J. Achiam, J. Schulman. *On first-order meta-learning algorithms.* arXiv
#   1803.02999, 2018.
