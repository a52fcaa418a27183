"""The ``learned-opt`` command line: ``meta-train`` and ``evaluate``.

Examples::

    learned-opt meta-train --family mlp --meta-steps 300 --out runs/digits
    learned-opt evaluate runs/digits/optimizer.msgpack --family mlp --steps 100
    learned-opt meta-train --config run.toml        # same options, from a TOML file
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

OPTIMIZERS = ("lstm", "meta_lstm", "rule")
ESTIMATORS = ("tbptt", "pes")


def _value(text: str) -> Any:
    """Parses an option value: JSON scalars, or comma-separated lists of them as a tuple."""
    if "," in text:
        return tuple(_value(t) for t in text.split(",") if t)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs: list[str], flag: str = "--family-option") -> dict[str, Any]:
    options = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"{flag}: expected NAME=VALUE, got {pair!r}")
        options[name.strip()] = _value(text.strip())
    return options


def _add_family(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="mlp", help="task family (quadratic, mlp, conv, ...)")
    p.add_argument(
        "--family-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="family option, repeatable (e.g. dataset=mnist, hidden_sizes=20,20)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="learned-opt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("meta-train", help="meta-train a learned optimizer on a task family")
    train.add_argument("--config", type=Path, help="TOML file with any of these options")
    _add_family(train)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="lstm")
    train.add_argument("--hidden-size", type=int, default=20)
    train.add_argument("--layers", type=int, default=2, help="LSTM layers (lstm only)")
    train.add_argument("--momentum-size", type=int, default=0, help="momentum LSTM units (lstm)")
    train.add_argument("--output-scale", type=float, default=0.1, help="lstm output scale")
    train.add_argument(
        "--normalized-inputs", action="store_true", help="lstm: add RNNprop g/sqrt(v), m/sqrt(v)"
    )
    train.add_argument("--no-loss-input", action="store_true", help="do not feed the loss")
    train.add_argument(
        "--optimizer-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other constructor option of the optimizer, repeatable "
        "(e.g. input_bias=-1,0 for meta_lstm)",
    )
    train.add_argument(
        "--random-scaling",
        type=float,
        default=0.0,
        metavar="S",
        help="meta-train on the family with each coordinate rescaled by exp(U[-S, S]) "
        "(Lv et al. 2017); validation uses the unscaled family",
    )
    train.add_argument(
        "--init-from",
        type=Path,
        metavar="FILE",
        help="start from this optimizer file (or a pretrained name): its architecture and "
        "weights replace the architecture options above",
    )
    train.add_argument("--meta-steps", type=int, default=300)
    train.add_argument("--unroll", type=int, default=20, help="steps per truncation")
    train.add_argument("--horizon", type=int, default=100, help="inner steps before a task resets")
    train.add_argument("--tasks", type=int, default=8, help="tasks per meta-step")
    train.add_argument("--estimator", choices=ESTIMATORS, default="tbptt")
    train.add_argument(
        "--task-chunk",
        type=int,
        help="tasks run at once (lax.map over chunks); default 1 on CPU, all on accelerators",
    )
    train.add_argument("--pes-std", type=float, default=0.01)
    train.add_argument("--second-order", action="store_true")
    train.add_argument("--meta-loss", choices=("sum", "log_mean"), default="log_mean")
    train.add_argument("--meta-lr", type=float, default=3e-3)
    train.add_argument("--clip-norm", type=float, default=1.0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=Path("runs/latest"))
    train.add_argument("--checkpoint-every", type=int, default=50)
    train.add_argument(
        "--validate-every",
        type=int,
        default=50,
        help="meta-steps between validations on held-out training tasks; the best meta-"
        "parameters are saved as optimizer.msgpack (0: save the last ones)",
    )
    train.add_argument("--validate-tasks", type=int, default=32)
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoints")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host GPU/TPU)",
    )

    ev = sub.add_parser("evaluate", help="compare a trained optimizer with tuned baselines")
    ev.add_argument("optimizer_file", type=Path, help="an optimizer file or a pretrained name")
    _add_family(ev)
    ev.add_argument("--steps", type=int, default=100)
    ev.add_argument("--loss-scale", type=float, default=1.0, help="multiply the tasks' loss")
    ev.add_argument("--tasks", type=int, default=100, help="held-out test tasks")
    ev.add_argument("--tune-tasks", type=int, default=16, help="training tasks for lr tuning")
    ev.add_argument("--baselines", default="adam,sgd,rmsprop,nag")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--out", type=Path, help="directory for the PNG and JSON (default: beside file)"
    )
    return parser


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None:
        return args
    config = tomllib.loads(args.config.read_text())
    family_options = config.pop("family_options", {})
    sub = parser._subparsers._group_actions[0].choices[args.command]
    known = {a.dest for a in sub._actions}
    defaults = {}
    for name, value in config.items():
        dest = name.replace("-", "_")
        if dest not in known:
            raise SystemExit(f"{args.config}: unknown option {name!r}")
        defaults[dest] = Path(value) if dest == "out" else value
    sub.set_defaults(**defaults)
    args = parser.parse_args(argv)  # command-line options override the file
    args.family_option = [f"{k}={json.dumps(v)}" for k, v in family_options.items()] + list(
        args.family_option
    )
    return args


def _make_optimizer(args):
    import learned_opt as lo

    use_loss = not args.no_loss_input
    extra = _options(args.optimizer_option, "--optimizer-option")
    try:
        if args.optimizer == "lstm":
            options = {
                "hidden_size": args.hidden_size,
                "num_layers": args.layers,
                "momentum_size": args.momentum_size,
                "output_scale": args.output_scale,
                "normalized_inputs": args.normalized_inputs,
                "use_loss": use_loss,
            }
            return lo.LSTMOptimizer(**{**options, **extra})
        if args.optimizer == "meta_lstm":
            options = {"hidden_size": args.hidden_size, "use_loss": use_loss}
            return lo.MetaLSTMOptimizer(**{**options, **extra})
        return lo.LearnedRule(**extra)
    except TypeError as e:
        raise SystemExit(f"--optimizer-option: {e}") from None


def _load_optimizer(source: Path):
    """``(optimizer, meta_params)`` from a file, or from a pretrained name if no such file."""
    import learned_opt as lo

    if source.exists() or str(source) not in lo.list_pretrained():
        return lo.load(source)
    return lo.load_pretrained(str(source))


def meta_train(args: argparse.Namespace) -> None:
    if args.distributed:
        import jax

        jax.distributed.initialize()
    import jax
    import optax

    import learned_opt as lo
    from learned_opt.meta import checkpoint
    from learned_opt.plotting import plot_meta_training

    family = lo.tasks.get_family(args.family, **_options(args.family_option))
    train_family = family
    if args.random_scaling:
        train_family = lo.tasks.RandomScaling(family, args.random_scaling)
    initial = None
    if args.init_from is not None:
        optimizer, initial = _load_optimizer(args.init_from)
    else:
        optimizer = _make_optimizer(args)
    chunk = args.task_chunk
    if chunk is None and jax.default_backend() == "cpu":
        chunk = 1
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
    trainer = lo.MetaTrainer(
        optimizer,
        train_family,
        estimator,
        optax.adam(args.meta_lr),
        num_tasks=args.tasks,
        clip_norm=args.clip_norm,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir, log_path = out / "checkpoints", out / "metrics.jsonl"
    if args.resume and checkpoint.steps(ckpt_dir):
        state = trainer.restore_checkpoint(ckpt_dir)
        print(f"resumed from meta-step {int(state.step)} ({ckpt_dir})", file=sys.stderr)
    else:
        state = trainer.init(jax.random.key(args.seed), initial)
        log_path.unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(trainer.config(), indent=2, sort_keys=True))
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
    lo.save(out / "optimizer_last.msgpack", optimizer, last)
    if not args.validate_every:
        lo.save(out / "optimizer.msgpack", optimizer, last)
    metrics = [json.loads(line) for line in log_path.read_text().splitlines()]
    if metrics:
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
                "nonfinite_tasks": sum(m["nonfinite_tasks"] for m in metrics),
            }
        )
    )


def _keep_best(args, trainer, family, path: Path, log_path: Path):
    """A ``MetaTrainer.run`` callback: validate every ``args.validate_every`` meta-steps.

    Validation trains ``args.validate_tasks`` tasks of ``family``'s training split (without any
    random scaling) for one horizon with
    the current meta-parameters and takes the median final loss; the best meta-parameters so far
    are saved to ``path``. Test tasks (the ``"test"`` split of ``evaluate``) are never used.
    """
    if not args.validate_every:
        return None
    import jax
    import numpy as np

    import learned_opt as lo
    from learned_opt import evaluation

    keys = evaluation.task_keys(args.seed, args.validate_tasks, "train")
    logged = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
    best = min((m["validation"] for m in logged if "validation" in m), default=np.inf)

    def callback(step, metrics, state):
        nonlocal best
        if step % args.validate_every and step != args.meta_steps:
            return None
        meta_params = jax.device_get(state.meta_params)
        curves = evaluation.learned_curves(
            family, trainer.optimizer, meta_params, keys, args.horizon
        )
        value = float(np.median(np.where(np.isfinite(curves.final), curves.final, np.inf)))
        if value < best or not path.exists():
            best = min(best, value)
            lo.save(path, trainer.optimizer, meta_params)
        return {"validation": value}

    return callback


def evaluate(args: argparse.Namespace) -> None:
    import learned_opt as lo
    from learned_opt import evaluation
    from learned_opt.plotting import plot_loss_curves

    family = lo.tasks.get_family(args.family, **_options(args.family_option))
    if args.loss_scale != 1.0:
        family = lo.tasks.ScaledLoss(family, args.loss_scale)
    optimizer, meta_params = _load_optimizer(args.optimizer_file)
    test = evaluation.task_keys(args.seed, args.tasks, "test")
    tune = evaluation.task_keys(args.seed, args.tune_tasks, "train")
    results, curves = {}, {}
    name = f"learned ({type(optimizer).__name__})"
    c = evaluation.train_curves(family, optimizer.as_optax(meta_params), test, args.steps)
    results[name], curves[name] = {"lr": None, **evaluation.summarize(c.final)}, c.losses
    for base in filter(None, args.baselines.split(",")):
        if base not in evaluation.BASELINES:
            raise SystemExit(f"--baselines: unknown {base!r}; known {sorted(evaluation.BASELINES)}")
        tuned = evaluation.tune_baseline(family, base, tune, args.steps)
        c = evaluation.train_curves(family, tuned.transformation(), test, args.steps)
        results[base] = {**tuned.hyperparams, **evaluation.summarize(c.final)}
        curves[base] = c.losses
    out = args.out or args.optimizer_file.parent
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"eval_{family.name}.png"
    plot_loss_curves(curves, png, title=f"{family.name}: {args.tasks} held-out tasks")
    print(f"final loss after {args.steps} steps on {args.tasks} held-out {family.name} tasks")
    print(f"{'optimizer':<28}{'lr':>9}{'median':>11}{'q05':>11}{'q95':>11}{'finite':>8}")
    for n, r in results.items():
        lr = "-" if r["lr"] is None else f"{r['lr']:.0e}"
        print(
            f"{n:<28}{lr:>9}{r['median']:>11.4g}{r['q05']:>11.4g}{r['q95']:>11.4g}"
            f"{r['finite']:>8.0%}"
        )
    (out / f"eval_{family.name}.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _apply_config(build_parser(), argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    {"meta-train": meta_train, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
