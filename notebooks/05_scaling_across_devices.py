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
# # Scaling meta-training across devices
#
# A meta-step of `lo.MetaTrainer` runs `num_tasks` independent inner training runs, one per
# task, and averages their meta-gradients. The runs never talk to each other until that
# average, so they split naturally over devices: each device advances its share of the tasks
# and one all-reduce combines the gradients. learned_opt expresses this with `jax.sharding`:
# the trainer lays the task axis of its state over a one-axis device mesh named `"tasks"`,
# replicates the meta-parameters, and lets the compiler insert the communication.
#
# This notebook needs no accelerator: XLA can split one CPU into several devices. It shows that
# 4 devices compute the same meta-parameters as 1, then how the same code runs on GPUs, TPUs
# and several hosts.
#
# Set `LEARNED_OPT_NOTEBOOK_QUICK=1` to run it on smaller settings (the test suite does).

# %% [markdown]
# ## Four CPU devices
#
# The flag `--xla_force_host_platform_device_count=4` makes the CPU appear as 4 devices. XLA
# reads it once, when JAX initialises, so it must be set **before `jax` is imported** (in
# Jupyter: restart the kernel, then run this cell first).

# %%
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.sharding import Mesh

import learned_opt as lo

QUICK = os.environ.get("LEARNED_OPT_NOTEBOOK_QUICK") == "1"
META_STEPS = 1 if QUICK else 100

print(jax.devices())
assert len(jax.devices("cpu")) == 4, "jax was imported before XLA_FLAGS was set: restart"

# %% [markdown]
# ## The same meta-training on 1 and on 4 devices
#
# `MetaTrainer(..., mesh=...)` takes the mesh to shard over; without it, it uses every device
# JAX sees. `num_tasks` must be a multiple of the number of devices. We meta-train a small LSTM
# optimizer on the 10-dimensional quadratics of Andrychowicz et al. (2016) twice from the same
# initial state: once on a mesh of the first device only, once on all four.
#
# `trainer.shard(state)` places a state on a trainer's mesh: the task axis of the inner runs
# split over the devices, everything else replicated. It moves the 1-device initial state to
# the 4-device mesh here, as it would a checkpoint written on a machine with another number of
# devices.

# %%
cpus = jax.devices("cpu")
meshes = {
    "1 device": Mesh(np.array(cpus[:1]), ("tasks",)),
    "4 devices": Mesh(np.array(cpus), ("tasks",)),
}
optimizer = lo.LSTMOptimizer(hidden_size=10, num_layers=1)
family = lo.tasks.Quadratic(dim=10)
trainers = {
    name: lo.MetaTrainer(
        optimizer,
        family,
        lo.TruncatedBackprop(unroll_length=10, horizon=50),
        optax.adam(3e-3),
        num_tasks=8,
        mesh=mesh,
    )
    for name, mesh in meshes.items()
}

initial = trainers["1 device"].init(jax.random.key(0))
states = {name: trainer.shard(initial) for name, trainer in trainers.items()}
meta_losses = {name: [] for name in trainers}
max_diffs = []  # the largest difference between the two runs' meta-parameters, per meta-step
for _ in range(META_STEPS):
    for name, trainer in trainers.items():
        states[name], metrics = trainer.step(states[name])
        meta_losses[name].append(float(metrics["meta_loss"]))
    one, four = (jax.tree.leaves(jax.device_get(states[name].meta_params)) for name in trainers)
    max_diffs.append(max(float(np.max(np.abs(a - b))) for a, b in zip(one, four, strict=True)))
for name, losses in meta_losses.items():
    print(f"{name}: meta-loss {losses[0]:.4f} at meta-step 1, {losses[-1]:.4f} at {META_STEPS}")

# %% [markdown]
# Where do the arrays live? The inner runs (`estimator_state`, 8 tasks) are split into shards of
# 2 tasks, one per device; the meta-parameters are replicated on every device.

# %%
for name, state in states.items():
    runs = state.estimator_state.params  # (num_tasks, 10): the 8 inner runs' parameters
    meta = jax.tree.leaves(state.meta_params)[0]
    print(
        f"{name}: inner runs {runs.shape} in shards of "
        f"{[shard.data.shape for shard in runs.addressable_shards]}; a meta-parameter "
        f"{meta.shape} on {len(meta.sharding.device_set)} device(s), replicated: "
        f"{meta.sharding.is_fully_replicated}"
    )

# %% [markdown]
# After one meta-step the two runs agree up to float rounding: the per-device partial sums of
# the meta-gradient are added in a different order than on one device, nothing else changes.
# Over many meta-steps those rounding differences grow, as they would from any change of
# summation order (another number of threads, another BLAS), because training amplifies small
# perturbations; the meta-loss curves stay on top of each other. (On one CPU the four devices
# share the same cores, so this shows that sharding is correct, not that it is faster.)

# %%
print(f"max |difference| of the meta-parameters after meta-step 1: {max_diffs[0]:.2e}")
print(f"after meta-step {META_STEPS}: {max_diffs[-1]:.2e}")
largest = max(float(np.max(np.abs(leaf))) for leaf in one)
assert max_diffs[0] < 1e-5 * max(largest, 1.0)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
steps = np.arange(1, META_STEPS + 1)
for name, losses in meta_losses.items():
    axes[0].plot(steps, losses, label=name, linestyle="-" if name == "1 device" else "--")
axes[0].set(xlabel="meta-step", ylabel="meta-loss", yscale="log")
axes[0].legend()
axes[1].plot(steps, max_diffs, marker=".")
axes[1].set(xlabel="meta-step", ylabel="max |difference|", yscale="log")
axes[1].set_title("meta-parameters, 4 devices vs 1")
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## On GPUs, TPUs and several hosts
#
# Nothing in the code above is specific to CPUs. On a machine with several GPUs
# (`pip install -e ".[gpu]"`) or a TPU VM, drop the `XLA_FLAGS` line: `lo.MetaTrainer(...)`
# without `mesh=` shards the task axis over `jax.devices()`, all of them.
#
# On a multi-host GPU cluster or TPU pod, every host runs the same program and calls
# `jax.distributed.initialize()` before anything else touches JAX. Then `jax.devices()` lists
# the devices of *all* hosts, the default mesh spans them, and each host advances the tasks on
# its own devices:
#
# ```python
# import jax
# import learned_opt as lo
#
# jax.distributed.initialize()  # Cloud TPU and SLURM find the coordinator themselves
# trainer = lo.MetaTrainer(lo.LSTMOptimizer(), lo.tasks.MLP(), num_tasks=8 * jax.device_count())
# state = trainer.run(trainer.init(jax.random.key(0)), num_steps=1000)
# ```
#
# Elsewhere, pass them yourself: `jax.distributed.initialize("10.0.0.1:1234", num_processes=2,
# process_id=0)` on host 0 (whose address it is), the same with `process_id=1` on host 1. The
# command line takes `--distributed` where JAX finds them, or the three values, on every host:
#
# ```bash
# learned-opt meta-train --family mlp --tasks 64 --meta-steps 1000 --out runs/mlp \
#     --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # 1 on host 1
# ```
#
# Keep `num_tasks` a multiple of the total device count; a task per device is the minimum, and
# on accelerators several tasks per device use them better.

# %% [markdown]
# ## References
#
# - M. Andrychowicz, M. Denil, S. Gómez, M. W. Hoffman, D. Pfau, T. Schaul, B. Shillingford,
#   N. de Freitas. *Learning to learn by gradient descent by gradient descent.* NeurIPS 2016.
