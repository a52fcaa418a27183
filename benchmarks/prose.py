"""The prose of the README and the model cards that cites measured figures, written from JSON.

Each function returns the Markdown of one block of README.md or docs/pretrained.md (the text
between ``<!-- name:begin -->`` and ``<!-- name:end -->``); ``benchmarks/render.py`` writes
them next to the tables. Every figure, count, list of problems and verdict is computed from the
committed documents in ``benchmarks/results/``; a verdict word (*wins*, *beats*) is written only
for a ratio whose stored verdict is ``"win"`` or ``"loss"``, that is whose bootstrap interval
excludes 1. Ratios without an interval are reported as numbers with no verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import l2l_study

from learned_opt import evaluation

ADAM_DEFAULT = evaluation.ADAM_DEFAULT
TUNED = evaluation.TUNED_SUFFIX


def _fmt(x: float) -> str:
    """Three significant digits, as the tables print ratios."""
    return f"{x:.3g}"


def _join(items: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes"


def verdict_clause(pairs: Iterable[tuple[str, evaluation.Ratio]]) -> str:
    """``"wins on *a* (0.8x); ties on *b* (1.1x); loses on *c* (2x)"`` from stored verdicts.

    Args:
        pairs: ``(problem label, Ratio)``; every ratio must carry an interval.

    Returns:
        The non-empty groups, in the order wins, ties, losses, each problem with its ratio.
    """
    groups: dict[str, list[str]] = {"win": [], "tie": [], "loss": []}
    for label, r in pairs:
        if r.verdict is None:
            raise ValueError(f"{label}: a ratio without an interval has no verdict")
        groups[r.verdict].append(f"*{label}* ({_fmt(r.ratio)}x)")
    words = {"win": "wins on", "tie": "ties on", "loss": "loses on"}
    return "; ".join(f"{words[v]} {_join(g)}" for v, g in groups.items() if g)


def _counts(ratios: Sequence[evaluation.Ratio]) -> str:
    verdicts = [r.verdict for r in ratios]
    wins, losses = verdicts.count("win"), verdicts.count("loss")
    return f"wins on {wins} of {len(ratios)}, ties on {len(ratios) - wins - losses}"


def l2l_notes(doc: dict[str, Any]) -> str:
    """What the L2L study says of the suite's optimizer, against tuned Adam, the best tuned
    baseline of each problem and Adam at 1e-3 (verdicts only where the table has intervals)."""
    name = doc["suite"]
    columns = [(col["label"], c) for col, c in l2l_study.comparisons(doc)]
    cs = [c for _, c in columns]
    if not l2l_study.has_intervals(cs):
        ratios = [(label, c.ratio(name, "adam").ratio) for label, c in columns]
        low, high = min(ratios, key=lambda x: x[1]), max(ratios, key=lambda x: x[1])
        below = [label for label, r in ratios if r < 1]
        return (
            "On the L2L grid (its evaluation table) the committed results have no intervals, "
            "so they support no verdict: its median final loss over tuned Adam's ranges from "
            f"{_fmt(low[1])}x (*{low[0]}*) to {_fmt(high[1])}x (*{high[0]}*), below 1 on "
            f"{len(below)} of {len(ratios)} problems"
            + (f" ({_join([f'*{b}*' for b in below])})." if below else ".")
        )
    against_adam = verdict_clause((label, c.ratio(name, "adam")) for label, c in columns)
    against_best = verdict_clause(
        (f"{label}, {c.best_baseline}", c.ratio(name, c.best_baseline)) for label, c in columns
    )
    default = [c.ratio(name, ADAM_DEFAULT) for c in cs]
    return (
        f"On the L2L grid (its evaluation table, {len(columns)} problems), against tuned Adam "
        f"it {against_adam}. Against the best tuned baseline of each problem it {against_best}. "
        f"Against Adam at its default learning rate it {_counts(default)}."
    )


def _generalization_ratios(
    doc: dict[str, Any], run: str, reference: str
) -> list[tuple[str, evaluation.Ratio]]:
    optimizer = run.removesuffix(TUNED)
    out = []
    for entry in doc["problems"]:
        data = entry["learned"].get(optimizer)
        if data is None:
            continue
        c = evaluation.Comparison.from_dict(data)
        if run in c.runs:
            out.append((entry["name"], c.ratio(run, reference)))
    return out


def generalization_notes(doc: dict[str, Any], optimizer: str) -> str:
    """What the generalisation benchmark says of ``optimizer``, as shipped and with its step
    size tuned: verdicts against tuned Adam per problem, against Adam at 1e-3, non-finite runs,
    tuned step sizes at the edge of the grid."""
    comparisons = [
        (entry["name"], evaluation.Comparison.from_dict(entry["learned"][optimizer]))
        for entry in doc["problems"]
        if optimizer in entry["learned"]
    ]
    sentences = []
    for run, how in ((optimizer, "as shipped"), (optimizer + TUNED, "with its step size tuned")):
        pairs = _generalization_ratios(doc, run, "adam")
        if not pairs:
            continue
        default = [r for _, r in _generalization_ratios(doc, run, ADAM_DEFAULT)]
        nonfinite = sum(c.runs[run].nonfinite for _, c in comparisons if run in c.runs)
        total = sum(c.num_tasks for _, c in comparisons if run in c.runs)
        sentences.append(
            f"On the generalisation benchmark (its block above, {len(pairs)} problems), {how}, "
            f"against tuned Adam it {verdict_clause(pairs)}; against Adam at its default "
            f"learning rate it {_counts(default)}; non-finite final losses in {nonfinite} of "
            f"{total} runs."
        )
    edge = [
        f"*{name}*"
        for name, c in comparisons
        if optimizer + TUNED in c.runs and c.runs[optimizer + TUNED].at_edge
    ]
    if edge:
        sentences.append(f"Its tuned step size sits at the edge of the grid on {_join(edge)}.")
    return " ".join(sentences)


def step_cost_notes(doc: dict[str, Any], optimizer: str) -> str:
    """The cost of ``optimizer``'s step over Adam's, from the step-cost table."""
    rows = sorted(
        (r for r in doc["rows"] if r["optimizer"] == optimizer), key=lambda r: int(r["n"])
    )
    if not rows:
        return "It is not in the step-cost table of RESULTS.md."
    cells = [f"{r['ratio_to_adam']:.0f}x at {int(r['n']):,} parameters" for r in rows]
    return (
        "Its step time over Adam's (the step-cost table of RESULTS.md, on a "
        f"{doc['machine'].get('cpu_count', '?')}-core CPU): {_join(cells)}."
    )


def generalist_training(doc: dict[str, Any]) -> str:
    """How long ``lstm_general``'s meta-training took and the validation it was selected on."""
    adam, selected = doc["adam_validation"], doc["selected"]
    names = list(adam)
    ratios = {n: selected[n] / adam[n]["final"] for n in names}
    below = [f"`{n}` ({_fmt(r)}x)" for n, r in ratios.items() if r < 1]
    above = [f"`{n}` ({_fmt(r)}x)" for n, r in ratios.items() if r >= 1]
    cpus = doc["machine"].get("cpu_count", "?")
    return (
        f"Meta-training ran {doc['meta_steps']:,} meta-steps in "
        f"{_minutes(doc['meta_training_seconds'])} on a {cpus}-core CPU shared with other jobs "
        f"({_minutes(doc['seconds'])} for the whole command, validations included). The file is "
        f"the best validation score, at meta-step {selected['meta_step']:,}: there its median "
        f"final loss over tuned Adam's is below 1 on {len(below)} of {len(names)} validation "
        f"problems ({_join(below)}) and above on {_join(above) or 'none'}; these medians have "
        "no interval, so they support no verdict. Its score there, the mean clipped log ratio "
        f"to tuned Adam (0 is tuned Adam, lower is better), is {selected['score']:+.2f}."
    )


def generalist_seeds(doc: dict[str, Any], shipped: dict[str, Any]) -> str:
    """The other seeds of ``lstm_general``'s recipe against the shipped one's score."""
    scores = [run["selected"]["score"] for run in doc["runs"]]
    mine = shipped["selected"]["score"]
    higher = sum(s > mine for s in scores)
    return (
        f"The recipe is seed-sensitive: {len(scores)} more seeds, shortened to "
        f"{doc['meta_steps']} meta-steps, reached validation scores "
        f"{_join([f'{s:+.2f}' for s in scores])}, higher than the shipped one's {mine:+.2f} "
        f'at {higher} of {len(scores)} (RESULTS.md, "Stability of the generalist\'s recipe").'
    )


def card_notes(
    name: str, docs: dict[str, dict[str, Any] | None], l2l_section: str | None = None
) -> str:
    """The measured part of model card ``name``'s "Where it is not expected to work".

    Args:
        name: the shipped optimizer.
        docs: results documents by stem (``None`` where missing): ``generalization``,
            ``step_cost``, ``generalist`` and ``generalist_seeds`` are read when present.
        l2l_section: the stem of the optimizer's L2L study document.

    Returns:
        One paragraph of sentences, each computed from the documents.
    """
    parts = []
    if l2l_section and (l2l := docs.get(l2l_section)) is not None:
        parts.append(l2l_notes(l2l))
    general = docs.get("generalization")
    if general is not None and name in general["optimizers"]:
        parts.append(generalization_notes(general, name))
    if name == "lstm_general" and (generalist := docs.get("generalist")) is not None:
        parts.append(generalist_training(generalist))
        if (seeds := docs.get("generalist_seeds")) is not None:
            parts.append(generalist_seeds(seeds, generalist))
    if (step_cost := docs.get("step_cost")) is not None:
        parts.append(step_cost_notes(step_cost, name))
    return "**Measured.** " + " ".join(p for p in parts if p)


def grid_sentence(doc: dict[str, Any]) -> str:
    """The tuning protocol both evaluations of the cards share, from the generalisation
    document's first comparison."""
    c = evaluation.Comparison.from_dict(doc["problems"][0]["baselines"])
    momentum = sorted({m for g in c.extra_grids.values() for m in g.get("momentum", ())})
    return (
        "In both, every baseline is tuned per problem on training tasks (learning rate over "
        f"{len(c.grid)} log-spaced values from {c.grid[0]:g} to {c.grid[-1]:g}; momentum over "
        f"{', '.join(f'{m:g}' for m in momentum)} for SGD with momentum and NAG) and all "
        "optimizers then train the same held-out test tasks; numbers are median final losses, "
        f"ratios carry paired bootstrap {100 * c.confidence_level:g}% intervals and a *win* or "
        "*loss* only where the interval excludes 1."
    )


def readme_generalist(generalist: dict[str, Any]) -> str:
    """The README's paragraph introducing ``lstm_general``."""
    cpus = generalist["machine"].get("cpu_count", "?")
    return (
        f"`lstm_general` is a {generalist['optimizer']['hidden_size']}-unit coordinatewise LSTM "
        f"meta-trained in {_minutes(generalist['meta_training_seconds'])} on a {cpus}-core CPU "
        "on a mixture of small problems over the 8x8 digits, with every tensor, loss and "
        "initialisation randomly rescaled. It reads no loss, so `tx.update(grads, state, params)` "
        "and flax's `TrainState.apply_gradients` work. How it compares with tuned Adam on "
        "problems it never saw is measured below ([Results](#results)) and in its "
        "[model card](docs/pretrained.md#lstm_general)."
    )


def readme_setup(job: dict[str, Any]) -> str:
    """The README's set-up paragraph, with the times of ``benchmarks/main_job.py``'s run."""
    seeds = job["seeds"]
    train = [s["train_seconds"] / 60 for s in seeds]
    c = evaluation.Comparison.from_dict(seeds[0]["comparison"])
    cpus = job["machine"].get("cpu_count", "?")
    return (
        "Meta-train a small LSTM optimizer on an MLP over the handwritten digits that ship with "
        "scikit-learn, then compare it with Adam, SGD, RMSprop and NAG at their tuned learning "
        f"rates on {c.num_tasks} held-out tasks (`evaluate` prints each optimizer's median final "
        "loss and the ratio to each tuned baseline with its 95% interval). In "
        "[`benchmarks/main_job.py`](benchmarks/main_job.py)'s run of the same commands at "
        f"{len(seeds)} seeds on a {cpus}-core CPU, meta-training took {min(train):.1f} to "
        f"{max(train):.1f} minutes per seed, and the whole run, evaluations included, "
        f"{_minutes(job['seconds'])}:"
    )


def readme_fewshot(doc: dict[str, Any]) -> str:
    """The README's few-shot sentence: MAML's 5-shot error on new sinusoids, and the budgets
    of the committed comparison."""
    protocol, methods = doc["protocol"], doc["methods"]
    mse = methods["maml"]["results"]["5"]["mse"]
    steps = [s for s in (1, 5, 10) if s < len(mse)]
    groups: dict[tuple[int, int], list[str]] = {}
    for name, m in methods.items():
        groups.setdefault((m["iterations"], m["meta_batch"]), []).append(f"`{name}`")
    budgets = [
        f"{_join(names)}: {iterations:,} iterations of {batch} tasks"
        for (iterations, batch), names in groups.items()
    ]
    if len(groups) == 1:
        budget = (
            f"The committed sinusoid comparison gives every method the same budget: {budgets[0]}."
        )
    else:
        budget = (
            "The committed sinusoid comparison gives the methods unequal budgets: "
            + "; ".join(budgets)
            + "."
        )
    return (
        f"On the few-shot sinusoids MAML's 5-shot query MSE on {protocol['test_tasks']:,} new "
        f"tasks is {mse[0]:.2f} before adapting and "
        f"{' / '.join(f'{mse[s]:.2f}' for s in steps)} after "
        f"{' / '.join(map(str, steps))} steps. {budget}"
    )


def readme_ablation(doc: dict[str, Any]) -> str:
    """The README's summary of the generalist's ablation (``benchmarks/ablation.py``).

    Scores are means over the validation suite's problems of clipped log ratios to tuned Adam,
    with no interval, so the sentence ranks them and gives no verdict.
    """
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for run in doc["runs"]:
        by_variant.setdefault(run["variant"], []).append(run)

    def mean(runs: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    trained = {v: runs for v, runs in by_variant.items() if runs[0]["meta_steps"] > 0}
    best_tuned = min(trained, key=lambda v: mean(trained[v], "tuned_score"))
    best_untuned = min(trained, key=lambda v: mean(trained[v], "score"))
    rivals = doc.get("rivals", {})
    best_rival = min(rivals, key=lambda n: rivals[n]["score"]) if rivals else None
    control = by_variant.get("adam", [])
    controls = len(by_variant) - len(trained)

    def described(variant: str, key: str) -> str:
        runs = trained[variant]
        values = ", ".join(f"{r[key]:+.2f}" for r in runs)
        return f"`{variant}` ({values} at {len(runs)} seed{'s' if len(runs) > 1 else ''})"

    text = (
        f"The generalist's ablation ([`benchmarks/ablation.py`](benchmarks/ablation.py), "
        f"{len(doc['runs'])} runs: {len(trained)} recipe variants and "
        f"{controls} untrained control{'s' if controls != 1 else ''}) "
        "scores each variant on a validation suite of "
        f"{len(doc['references']['settings']['problems'])} problems unlike the meta-training "
        "ones and the benchmarks' (0: tuned Adam; lower is better; no intervals)."
    )
    if control:
        text += (
            f" The control, which is Adam, reads {control[0]['tuned_score']:+.2f} with its step "
            f"size tuned and {control[0]['score']:+.2f} at its built-in step."
        )
    text += (
        f" Lowest with the step size tuned: {described(best_tuned, 'tuned_score')}; lowest at "
        f"the built-in step: {described(best_untuned, 'score')}"
    )
    if best_rival is not None:
        score = rivals[best_rival]["score"]
        text += f"; the best tuning-free optimizer, {best_rival}, reads {score:+.2f}"
    return text + ". Every run is in the ablation section of the results."
