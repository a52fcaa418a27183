"""Optimizer state layouts: per-leaf state following the parameters, flat state, bfloat16 state."""

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt as lo

GENERALIST = lo.LSTMOptimizer(
    hidden_size=4,
    num_layers=1,
    use_loss=False,
    normalized_inputs=True,
    input_decays=(0.5, 0.9),
    param_input=True,
    step_input=True,
    update_norm="rms",
    magnitude_output="tensor",
    output_scale=1e-3,
)

#: Every architecture, with every per-coordinate state field present.
ARCHITECTURES = {
    "lstm": lo.LSTMOptimizer(hidden_size=4, momentum_size=3, normalized_inputs=True),
    "meta_lstm": lo.MetaLSTMOptimizer(hidden_size=4),
    "rule": lo.LearnedRule(),
}


def _params():
    return {
        "w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
        "b": [jnp.array([0.5, -0.25]), jnp.asarray(0.3)],
    }


def _run(opt, meta_params, steps=10):
    """Updates of ``steps`` steps on a fixed sequence of gradients (one jitted scan)."""

    @jax.jit
    def go(params):
        def body(carry, t):
            params, state = carry
            grads = jax.tree.map(lambda p: jnp.sin(3.0 * p + t) + 0.1 * t, params)
            updates, state = opt.step(meta_params, state, grads, params, 1.0 / (t + 1.0))
            return (jax.tree.map(jnp.add, params, updates), state), updates

        init = (params, opt.init_state(meta_params, params))
        return jax.lax.scan(body, init, jnp.arange(steps, dtype=jnp.float32))[1]

    return go(_params())


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_per_leaf_and_flat_layouts_give_the_same_updates(name):
    per_leaf = ARCHITECTURES[name]
    flat = type(per_leaf)(**{**per_leaf.config(), "layout": "flat"})
    meta_params = per_leaf.init(jax.random.key(0))
    # Same meta-parameters, same updates; only the matmuls' blocking differs (float rounding).
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-9),
        _run(per_leaf, meta_params),
        _run(flat, meta_params),
    )


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_per_leaf_state_has_each_parameters_shape_plus_a_feature_axis(name):
    opt = ARCHITECTURES[name]
    params = _params()
    state = opt.init_state(opt.init(jax.random.key(0)), params)
    shapes = {"w": (3, 4), "b0": (2,), "b1": ()}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        key = jax.tree_util.keystr(path)
        if ".spec" in key or key.endswith(("count", "mean", "std", "first")):
            continue
        param = "w" if "'w'" in key else "b0" if "[0]" in key.split("'b'")[-1] else "b1"
        assert leaf.shape[: len(shapes[param])] == shapes[param], key
        assert leaf.ndim <= len(shapes[param]) + 1, key


def test_flat_layout_refuses_per_tensor_options():
    with pytest.raises(ValueError, match="layout: 'flat' treats all parameters as one vector"):
        lo.LSTMOptimizer(update_norm="rms", layout="flat")


@pytest.mark.parametrize(
    ("opt", "state_floats"),
    [
        (lo.LSTMOptimizer(), 2 * 2 * 20),
        (lo.LSTMOptimizer(normalized_inputs=True, momentum_size=10), 2 * 2 * 20 + 2 * 10 + 2),
        (lo.MetaLSTMOptimizer(), 2 * 20 + 2),
        (lo.LearnedRule(), 3 + 1),
        (GENERALIST, 2 * 4 + 2 + 1),
    ],
)
def test_bfloat16_state_halves_the_state_bytes(opt, state_floats):
    n = 1000
    params = {"a": jnp.zeros((10, 50)), "b": [jnp.zeros(500)]}
    meta_params = opt.init(jax.random.key(0))
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        variant = type(opt)(**{**opt.config(), "state_dtype": dtype})
        state = variant.init_state(meta_params, params)
        sizes[dtype] = sum(x.nbytes for x in jax.tree.leaves(state))
    scalars = 64  # counters and loss statistics
    assert state_floats * 4 * n <= sizes["float32"] <= state_floats * 4 * n + scalars
    assert state_floats * 2 * n <= sizes["bfloat16"] <= state_floats * 2 * n + scalars


@pytest.mark.parametrize("opt", [ARCHITECTURES["lstm"], GENERALIST], ids=["lstm", "generalist"])
def test_bfloat16_state_stays_close_to_float32(opt):
    meta_params = opt.init(jax.random.key(0))
    low = type(opt)(**{**opt.config(), "state_dtype": "bfloat16"})
    want, got = (jax.tree.leaves(_run(o, meta_params)) for o in (opt, low))
    for x, y in zip(want, got, strict=True):
        scale = float(jnp.max(jnp.abs(x))) + 1e-12
        assert float(jnp.max(jnp.abs(x - y))) <= 0.05 * scale


_SHARDED = textwrap.dedent(
    r"""
    import json, re, sys
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    import optax
    import learned_opt as lo

    sys.path.insert(0, sys.argv[1])
    from test_layouts import ARCHITECTURES, GENERALIST

    mesh = jax.make_mesh((4,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = lambda x: NamedSharding(mesh, P("fsdp") if x.ndim else P())
    from learned_opt.optimizers import _chunks

    # "big" is above the chunking threshold: it is updated a chunk at a time.
    params = {"w1": jnp.ones((64, 32)), "b1": jnp.ones(32), "w2": jnp.ones((32, 8)),
              "big": jnp.ones((128, 288))}
    assert _chunks.plan(params["big"].shape, jax.device_count()) is not None
    params = jax.device_put(params, jax.tree.map(shard, params))
    grads = jax.tree.map(lambda p: 0.1 * p, params)
    kinds = "all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter"
    pattern = re.compile(rf"= (\([^)]*\)|\S+) ({kinds})(-start)?\(")
    optimizers = {**ARCHITECTURES, "generalist": GENERALIST}
    out = {}
    for name, opt in [*optimizers.items(), ("adam", None)]:
        tx = optax.adam(1e-3) if opt is None else opt.as_optax(opt.init(jax.random.key(0)))
        state = jax.jit(tx.init)(params)
        # Scalars (counters) come out on one device, as optax.adam's whole state does:
        # replicate them over the mesh.
        replicate = NamedSharding(mesh, P())
        state = jax.tree.map(
            lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicate),
            state)
        hlo = jax.jit(tx.update).lower(grads, state, params, value=1.0).compile().as_text()
        found = [m.groups() for m in map(pattern.search, hlo.splitlines()) if m]
        ops = [op for _, op, _ in found]
        shapes = [shape for shape, _, _ in found]
        state_sharded = all(
            x.sharding.spec[:1] == ("fsdp",)
            for x in jax.tree.leaves(state) if x.ndim >= 2 and x.shape[0] in (64, 128))
        out[name] = {"ops": ops, "shapes": shapes, "state_sharded": state_sharded}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def sharded_hlo():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    here = os.path.dirname(__file__)
    done = subprocess.run(
        [sys.executable, "-c", _SHARDED, here], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [*sorted(ARCHITECTURES), "adam"])
def test_update_on_sharded_parameters_needs_no_collective(sharded_hlo, name):
    # Parameters split along their first axis over 4 devices (FSDP-style): the compiled update
    # of every architecture, like optax.adam's, communicates nothing.
    assert sharded_hlo[name]["ops"] == []
    if name != "adam":
        assert sharded_hlo[name]["state_sharded"]  # the state inherits the parameters' sharding


def test_per_tensor_options_need_only_scalar_all_reduces(sharded_hlo):
    # The RMS of a sharded tensor is one float summed across its shards: nothing is gathered.
    got = sharded_hlo["generalist"]
    assert got["ops"] and set(got["ops"]) <= {"all-reduce", "all-reduce-start"}
    scalars = re.compile(r"^\(?([fs]32\[\](, )?)+\)?$")  # f32[] or (f32[], s32[], ...)
    assert all(scalars.match(shape) for shape in got["shapes"]), got["shapes"]
