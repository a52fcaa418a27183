"""``learned-opt meta-train``: everything checked first, then the run written to ``--out``."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from learned_opt.cli.arguments import UsageError
from learned_opt.cli.builders import (
    architecture_options,
    blame,
    check_out_is_a_folder,
    load_optimizer,
    make_family,
    make_optimizer,
)

#: What a ``meta-train`` writes in ``--out`` (and ``--overwrite`` removes).
RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "checkpoints",
    "optimizer.msgpack",
    "optimizer_last.msgpack",
    "meta_training.png",
)


def _file_digest(path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    """What defines a command-line run beyond the trainer's own configuration."""
    init = None
    if args.init_from is not None:
        init = _file_digest(args.init_from) if Path(args.init_from).is_file() else args.init_from
    return {
        "seed": args.seed,
        "meta_optimizer": {"name": "adam", "learning_rate": args.meta_lr},
        "validation": {"every": args.validate_every, "tasks": args.validate_tasks},
        "init_from": init,
    }


def _make_trainer(args: argparse.Namespace, optimizer, family):
    import jax
    import optax

    import learned_opt as lo

    train_family = family
    if args.random_scaling:
        with blame("--random-scaling"):
            train_family = lo.tasks.RandomScaling(family, args.random_scaling)
    chunk = args.task_chunk
    if chunk is None and jax.default_backend() == "cpu":
        chunk = 1
    estimator: lo.GradientEstimator
    with blame():
        if args.estimator == "pes":
            estimator = lo.PES(
                args.unroll, args.horizon, args.meta_loss, std=args.pes_std, task_chunk=chunk
            )
        else:
            estimator = lo.TruncatedBackprop(
                args.unroll,
                args.horizon,
                args.meta_loss,
                second_order=args.second_order,
                task_chunk=chunk,
            )
        return lo.MetaTrainer(
            optimizer,
            train_family,
            estimator,
            optax.adam(args.meta_lr),
            num_tasks=args.tasks,
            clip_norm=args.clip_norm,
            max_task_grad_norm=args.max_task_grad_norm,
            run_config=_run_config(args),
        )


def _existing_run(out: Path) -> list[str]:
    return [name for name in RUN_FILES if (out / name).exists()]


def _check_out(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """Refuses an ``--out`` holding another run, or a resume of a run with other settings."""
    from learned_opt.meta.checkpoint import config_differences

    out: Path = args.out
    check_out_is_a_folder(out)
    existing = _existing_run(out) if out.is_dir() else []
    if not existing or args.overwrite:
        return
    if not args.resume:
        raise UsageError(
            f"--out: {out} holds another run ({', '.join(existing)}); pass --resume to "
            f"continue it or --overwrite to replace it"
        )
    stored_path = out / "config.json"
    if not stored_path.is_file():
        raise UsageError(
            f"--resume: {out} holds run files but no config.json to check them against; "
            f"pass --overwrite to replace them"
        )
    try:
        stored = json.loads(stored_path.read_text())
    except (ValueError, OSError) as e:
        raise UsageError(f"--resume: {stored_path} is unreadable ({e})") from e
    names = ("the run", "this command")
    differences = config_differences(stored, json.loads(json.dumps(config)), names)
    if differences:
        raise UsageError(
            f"--resume: {out} holds a run with other settings: {'; '.join(differences)}"
        )


def meta_train(args: argparse.Namespace) -> None:
    """``learned-opt meta-train``: validates everything, then writes and runs."""
    _initialize_distributed(args)
    import jax

    import learned_opt as lo
    from learned_opt._files import atomic_write_bytes
    from learned_opt.meta import checkpoint

    family = make_family(args)
    initial = None
    if args.init_from is not None:
        architecture_options(args)  # refuses architecture options beside --init-from
        optimizer, initial = load_optimizer(args.init_from, "--init-from")
    else:
        optimizer = make_optimizer(args)
    trainer = _make_trainer(args, optimizer, family)
    config = trainer.config()
    _check_out(args, config)
    out: Path = args.out
    ckpt_dir, log_path = out / "checkpoints", out / "metrics.jsonl"
    with blame():  # the estimator checks the tasks against task_chunk and the devices
        jax.eval_shape(trainer.initial_state, jax.random.key(0))
    state = None
    if args.resume and checkpoint.steps(ckpt_dir):
        state = trainer.restore_checkpoint(ckpt_dir)
        if int(state.step) > args.meta_steps:
            raise UsageError(
                f"--meta-steps: expected at least the {int(state.step)} meta-steps the run in "
                f"{out} has taken, got {args.meta_steps}"
            )
        print(f"resumed from meta-step {int(state.step)} ({ckpt_dir})", file=sys.stderr)

    # Everything is checked: from here on the run writes (under multi-host, process 0 only).
    primary = jax.process_index() == 0
    if args.overwrite and primary:
        for name in _existing_run(out):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    if state is None:
        state = trainer.init(jax.random.key(args.seed), initial)
    if primary:
        config_json = json.dumps(config, indent=2, sort_keys=True).encode()
        atomic_write_bytes(out / "config.json", config_json)
    _sync("learned_opt meta-train start")
    t0 = time.perf_counter()
    state = trainer.run(
        state,
        args.meta_steps,
        checkpoint_dir=ckpt_dir,
        checkpoint_every=args.checkpoint_every,
        log_path=log_path,
        progress=not args.no_progress,
        callback=_keep_best(args, trainer, family, out / "optimizer.msgpack", log_path),
    )
    last = jax.device_get(state.meta_params)
    if not primary:
        return
    lo.save(out / "optimizer_last.msgpack", optimizer, last)
    if not args.validate_every:
        lo.save(out / "optimizer.msgpack", optimizer, last)
    metrics = [json.loads(line) for line in log_path.read_text().splitlines()]
    if metrics:
        from learned_opt.plotting import plot_meta_training

        plot_meta_training(metrics, out / "meta_training.png")
    validations = [m["validation"] for m in metrics if "validation" in m]
    print(
        json.dumps(
            {
                "optimizer_file": str(out / "optimizer.msgpack"),
                "meta_steps": int(state.step),
                "seconds": round(time.perf_counter() - t0, 1),
                "final_meta_loss": metrics[-1]["meta_loss"] if metrics else None,
                "best_validation": min(validations, default=None),
                "masked_tasks": int(sum(m["masked_tasks"] for m in metrics)),
            }
        )
    )


def _initialize_distributed(args: argparse.Namespace) -> None:
    """Calls ``jax.distributed.initialize`` for ``--distributed`` and its three options."""
    given = {
        "coordinator_address": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    if not args.distributed and all(v is None for v in given.values()):
        return
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--coordinator: expected HOST:PORT, got {args.coordinator!r}")
    if None not in (args.num_processes, args.process_id) and (
        args.process_id >= args.num_processes
    ):
        raise UsageError(
            f"--process-id: expected an integer below --num-processes ({args.num_processes}), "
            f"got {args.process_id}"
        )
    import jax

    try:
        jax.distributed.initialize(**given)
    except (ValueError, RuntimeError) as e:  # JAX's word on a missing or unusable setting
        raise UsageError(f"--distributed: {e}") from e


def _sync(name: str) -> None:
    """A barrier across the processes of a multi-host run (nothing on one host)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _keep_best(args, trainer, family, path: Path, log_path: Path):
    """A ``MetaTrainer.run`` callback: validate every ``args.validate_every`` meta-steps.

    Validation trains ``args.validate_tasks`` tasks of ``family``'s validation split (without
    any random scaling) for one horizon with the current meta-parameters and takes the median
    final loss; the best meta-parameters so far are saved to ``path``. Neither the tasks
    ``evaluate`` tunes baselines on (the ``"train"`` split) nor those it reports on (``"test"``)
    are used.
    """
    if not args.validate_every:
        return None
    import jax
    import numpy as np

    import learned_opt as lo
    from learned_opt import evaluation

    keys = evaluation.task_keys(args.seed, args.validate_tasks, "validation")
    horizon = args.horizon if isinstance(args.horizon, int) else args.horizon[1]
    logged = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
    best = min((m["validation"] for m in logged if "validation" in m), default=np.inf)

    def callback(step, metrics, state):
        nonlocal best
        if step % args.validate_every and step != args.meta_steps:
            return None
        meta_params = jax.device_get(state.meta_params)
        curves = evaluation.learned_curves(family, trainer.optimizer, meta_params, keys, horizon)
        value = float(np.median(np.where(np.isfinite(curves.final), curves.final, np.inf)))
        if (value < best or not path.exists()) and jax.process_index() == 0:
            lo.save(path, trainer.optimizer, meta_params)
        best = min(best, value)
        return {"validation": value}

    return callback
