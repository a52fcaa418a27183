"""The built wheel installs into a fresh virtualenv and runs a shipped optimizer from there."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run from outside the source tree: train a linear model on the digits with a shipped optimizer.
SCRIPT = textwrap.dedent(
    """
    import json, jax, jax.numpy as jnp, optax
    import learned_opt as lo

    tx = lo.pretrained("lstm_digits")
    x, y, _ = lo.tasks.load_dataset("digits")
    params = {"w": jnp.zeros((64, 10))}
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(x @ p["w"], y).mean()

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    state, losses = tx.init(params), []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    print(json.dumps({"file": lo.__file__, "first": losses[0], "last": losses[-1],
                      "names": lo.list_pretrained()}))
    """
)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_virtualenv_and_runs_a_pretrained_optimizer(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "learned_opt",
        src / "learned_opt",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )

    def run(*cmd, cwd=tmp_path):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{cmd}: {done.stderr[-3000:]}"
        return done.stdout

    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(*pip, "wheel", "--no-deps", "-w", str(dist), str(src))  # builds in isolation (PEP 517)
    (wheel,) = dist.glob("learned_opt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "learned_opt/py.typed" in names
    assert "learned_opt/weights/lstm_digits.msgpack" in names
    assert any(n.endswith(".dist-info/METADATA") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps",
        "--no-index", "--ignore-installed", str(wheel))  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = json.loads(run(str(python), "-c", SCRIPT, cwd=elsewhere).splitlines()[-1])
    assert Path(out["file"]).is_relative_to(venv)  # the wheel's copy, not the source tree's
    assert "lstm_digits" in out["names"]
    assert out["last"] < 0.5 * out["first"]
