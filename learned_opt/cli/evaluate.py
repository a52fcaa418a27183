"""``learned-opt evaluate``: a learned optimizer against tuned baselines on held-out tasks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from learned_opt.cli.arguments import UsageError
from learned_opt.cli.builders import check_out_is_a_folder, load_optimizer, make_family

#: The learned optimizer's name in the table and the JSON.
LEARNED = "learned"


def evaluate(args: argparse.Namespace) -> None:
    """``learned-opt evaluate``: the protocol of ``lo.evaluation.compare``, printed and saved.

    Writes ``eval_<family>.json`` (the :class:`~learned_opt.evaluation.Comparison`) and
    ``eval_<family>.png`` (training-loss curves) to ``--out`` (default: beside the file).
    """
    import learned_opt as lo
    from learned_opt import evaluation
    from learned_opt._files import atomic_write_bytes
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
    comparison = evaluation.compare(
        family,
        args.steps,
        {LEARNED: (optimizer, meta_params)},
        tune_keys=evaluation.task_keys(args.seed, args.tune_tasks, "train"),
        test_keys=evaluation.task_keys(args.seed, args.tasks, "test"),
        baselines=baselines,
        tune_learned=not args.no_tune_step_size,
        keep_curves=True,
        seed=args.seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"eval_{family.name}.png"
    curves = {name: run.curve for name, run in comparison.runs.items() if run.curve is not None}
    plot_loss_curves(curves, png, title=f"{family.name}: {args.tasks} held-out tasks")
    print(comparison.table())
    document = comparison.to_dict()
    atomic_write_bytes(out / f"eval_{family.name}.json", json.dumps(document, indent=2).encode())
    print(f"wrote {png}")
