"""Several hosts: two processes joined by ``jax.distributed`` meta-train as one process does.

Each test starts two Python processes on this machine (one CPU device each, CPU collectives
over localhost), splits the task batch across them, and checks that the meta-parameters equal
a one-process run's and that process 0 alone writes the log, the manifests and the run files.
"""

import inspect
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import learned_opt as lo
from learned_opt import cli


def _trainer(lo):
    """The run both sides train: four tasks, so two per process."""
    return lo.MetaTrainer(
        lo.LSTMOptimizer(hidden_size=4),
        lo.tasks.Quadratic(dim=3),
        lo.TruncatedBackprop(unroll_length=5, horizon=10),
        num_tasks=4,
    )


#: A process of a run: ``WORKER RUN_DIR REPORT trainer PORT ID`` meta-trains ``_trainer``
#: for 3 steps, ``WORKER RUN_DIR REPORT cli ARGS...`` runs the command line. The report lists
#: the files under RUN_DIR that the process opened for writing or renamed into place.
WORKER = inspect.getsource(_trainer) + textwrap.dedent(
    """
    import json, os, sys

    run_dir, report, mode, *rest = sys.argv[1:]
    run_dir = os.path.abspath(run_dir)
    written = set()

    def audit(event, args):
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            mode, flags = args[1], args[2] or 0
            if flags & (os.O_WRONLY | os.O_RDWR) or (mode and set(mode) & set("wax+")):
                written.add(os.path.abspath(args[0]))
        elif event == "os.rename" and isinstance(args[1], (str, os.PathLike)):
            written.add(os.path.abspath(args[1]))

    sys.addaudithook(audit)
    import jax

    if mode == "cli":
        from learned_opt import cli

        cli.main(rest)
    else:
        import numpy as np

        port, process_id = rest
        jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(process_id))
        import learned_opt as lo

        trainer = _trainer(lo)
        state = trainer.init(jax.random.key(0))
        state = trainer.run(
            state, 3, checkpoint_dir=os.path.join(run_dir, "checkpoints"), checkpoint_every=1,
            log_path=os.path.join(run_dir, "metrics.jsonl"), progress=False,
        )
        leaves = jax.tree.leaves(jax.device_get(state.meta_params))
        np.savez(report + ".npz", *leaves)
    files = sorted(
        os.path.relpath(p, run_dir) for p in written
        if p.startswith(run_dir + os.sep) and not os.path.basename(p).startswith(".")
    )
    with open(report, "w") as f:
        json.dump({"devices": len(jax.devices()), "written": files}, f)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(tmp_path: Path, run_dir: Path, args_of) -> list[dict]:
    """Runs the worker as processes 0 and 1 (``args_of(port, i)``); returns their reports."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
    port = _free_port()
    reports = [tmp_path / f"report_{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(run_dir), str(reports[i]), *args_of(port, i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = "".join(f"process {i}:\n{output[-3000:]}\n" for i, output in enumerate(outputs))
    assert [p.returncode for p in procs] == [0, 0], logs
    return [json.loads(r.read_text()) for r in reports]


def _checkpoint_writes(written: list[str], name: str) -> list[str]:
    return sorted(p for p in written if Path(p).name == name)


@pytest.mark.slow
def test_two_processes_meta_train_as_one_and_write_each_file_once(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    reports = _two_processes(tmp_path, run_dir, lambda port, i: ["trainer", str(port), str(i)])
    assert [r["devices"] for r in reports] == [2, 2]  # one mesh over both processes

    trainer = _trainer(lo)
    state = trainer.run(trainer.init(jax.random.key(0)), 3, progress=False)
    one = jax.tree.leaves(jax.device_get(state.meta_params))
    for i in range(2):
        two = np.load(tmp_path / f"report_{i}.json.npz")
        for k, leaf in enumerate(one):
            np.testing.assert_allclose(two[f"arr_{k}"], leaf, rtol=1e-5, atol=1e-6)

    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in log] == [1, 2, 3]  # one line per meta-step, not one per process
    # Process 0 alone writes the log and each checkpoint's manifest; both write their shards.
    first, second = (r["written"] for r in reports)
    assert "metrics.jsonl" in first and "metrics.jsonl" not in second
    manifests = [f"checkpoints/ckpt_{s:08d}/learned_opt.json" for s in (1, 2, 3)]
    assert _checkpoint_writes(first, "learned_opt.json") == manifests
    assert _checkpoint_writes(second, "learned_opt.json") == []
    # The checkpoint both processes wrote restores in one process, intact, to the same state.
    restored = trainer.restore_checkpoint(run_dir / "checkpoints")
    assert int(restored.step) == 3
    for a, b in zip(jax.tree.leaves(restored.meta_params), one, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


RUN = [
    "meta-train", "--family", "quadratic", "--family-option", "dim=4", "--unroll", "5",
    "--horizon", "10", "--tasks", "4", "--hidden-size", "4", "--layers", "1", "--no-progress",
    "--meta-steps", "3", "--checkpoint-every", "1", "--validate-every", "2",
    "--validate-tasks", "4",
]  # fmt: skip


@pytest.mark.slow
def test_the_command_line_on_two_processes_writes_the_run_of_one(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    cli.main([*RUN, "--out", str(one)])
    capsys.readouterr()

    def args_of(port, i):
        where = ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
        return ["cli", *RUN, "--out", str(two), *where, "--process-id", str(i)]

    first, second = (r["written"] for r in _two_processes(tmp_path, two, args_of))
    for name in ("optimizer.msgpack", "optimizer_last.msgpack"):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            lo.load(two / name)[1],
            lo.load(one / name)[1],
        )
    log = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in log] == [1, 2, 3]
    assert [m["step"] for m in log if "validation" in m] == [2, 3]
    run_files = {"config.json", "metrics.jsonl", "optimizer_last.msgpack", "meta_training.png"}
    assert run_files | {"optimizer.msgpack"} <= set(first)
    assert not (run_files | {"optimizer.msgpack"}) & set(second)
    assert _checkpoint_writes(second, "learned_opt.json") == []
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "ckpt_00000002",
        "ckpt_00000003",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--num-processes", "2", "--process-id", "2"], "--process-id: expected an integer below"),
        (["--coordinator", "localhost"], "--coordinator: expected HOST:PORT, got 'localhost'"),
        (["--num-processes", "0"], "--num-processes: expected an integer >= 1, got 0"),
        (["--num-processes", "2", "--process-id", "1"], "--distributed: "),
    ],
)
def test_bad_multi_host_options_are_refused_in_one_line(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*RUN, "--out", str(tmp_path / "run"), *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()
