"""``learned-opt evaluate``: a learned optimizer against tuned baselines on held-out tasks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from learned_opt.cli.arguments import UsageError
from learned_opt.cli.builders import check_out_is_a_folder, load_optimizer, make_family


def evaluate(args: argparse.Namespace) -> None:
    """``learned-opt evaluate``: the learned optimizer against tuned baselines."""
    import learned_opt as lo
    from learned_opt import evaluation
    from learned_opt.plotting import plot_loss_curves

    family = make_family(args)
    if args.loss_scale != 1.0:
        family = lo.tasks.ScaledLoss(family, args.loss_scale)
    baselines = [b for b in args.baselines.split(",") if b]
    unknown = [b for b in baselines if b not in evaluation.BASELINES]
    if unknown:
        raise UsageError(f"--baselines: unknown {unknown}; known: {sorted(evaluation.BASELINES)}")
    check_out_is_a_folder(args.out)
    optimizer, meta_params = load_optimizer(args.optimizer_file, "optimizer_file")
    source = Path(args.optimizer_file)
    out = args.out or (source.parent if source.exists() else Path("."))
    test = evaluation.task_keys(args.seed, args.tasks, "test")
    tune = evaluation.task_keys(args.seed, args.tune_tasks, "train")
    results, curves = {}, {}
    name = f"learned ({type(optimizer).__name__})"
    c = evaluation.train_curves(family, optimizer.as_optax(meta_params), test, args.steps)
    results[name], curves[name] = {"lr": None, **evaluation.summarize(c.final)}, c.losses
    for base in baselines:
        tuned = evaluation.tune_baseline(family, base, tune, args.steps)
        c = evaluation.train_curves(family, tuned.transformation(), test, args.steps)
        results[base] = {**tuned.hyperparams, **evaluation.summarize(c.final)}
        curves[base] = c.losses
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
