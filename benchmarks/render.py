"""Renders every results section of RESULTS.md, and the README's results table, from JSON alone.

Each registered section ``name`` has its document in ``benchmarks/results/<name>.json``
(written by its script, with the ``"command"`` that made it and the ``"machine"``) and a
``render(doc) -> str`` in its script; this program replaces the text between
``<!-- name:begin -->`` and ``<!-- name:end -->`` of RESULTS.md with it (appending the section
if the markers are missing) and leaves every other line alone. The README's block between
``<!-- results-table:begin -->`` and ``<!-- results-table:end -->`` and the evaluation table of
each model card in docs/pretrained.md (``<!-- pretrained/NAME:begin -->``) come from the L2L
study's documents. The prose that cites measured figures (the README's ``readme-*`` blocks, the
cards' ``pretrained-protocol`` and ``pretrained-notes/NAME`` blocks) comes from
``benchmarks/prose.py``. Nothing is measured here: numbers come from the committed JSON.

Usage:
    python benchmarks/render.py            # rewrite RESULTS.md, README.md, docs/pretrained.md
    python benchmarks/render.py --check    # exit 1 if one differs from what it would write

A new benchmark registers its sections in :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import prose

HERE = common.HERE


class Section(NamedTuple):
    """A block of RESULTS.md: its marker name (= JSON stem) and the script that renders it."""

    name: str
    script: str


#: Every rendered section of RESULTS.md, in the order they appear.
SECTIONS: list[Section] = [
    Section("l2l_mnist", "l2l_study"),
    Section("l2l_digits", "l2l_study"),
    Section("l2l_quadratic", "l2l_study"),
    Section("l2l_meta_lstm", "l2l_study"),
    Section("l2l_general", "l2l_study"),
    Section("main_job", "main_job"),
    Section("generalist", "train_generalist"),
    Section("generalist_seeds", "generalist_seeds"),
    Section("generalization", "generalization"),
    Section("ablation", "ablation"),
    Section("l2l_ablation", "l2l_ablation"),
    Section("meta_lstm_gates", "meta_lstm_gates"),
    Section("fewshot_sinusoid", "fewshot_sinusoid"),
    Section("fewshot_speed", "fewshot_speed"),
    Section("fewshot_glyphs", "fewshot_glyphs"),
    Section("step_cost", "step_cost"),
    Section("meta_throughput", "meta_throughput"),
    Section("faults", "faults"),
]
README_BLOCK = "results-table"
#: The model cards whose evaluation table comes from a study section: name -> section.
MODEL_CARDS = {
    "lstm_mnist": "l2l_mnist",
    "lstm_digits": "l2l_digits",
    "rnnprop_quadratic": "l2l_quadratic",
    "meta_lstm_digits": "l2l_meta_lstm",
    "lstm_general": "l2l_general",
}
ROOT = HERE.parent


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of block ``name``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with block ``name``'s content replaced by ``body`` (appended if absent)."""
    begin, end = markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    start, stop = text.find(begin), text.find(end)
    if start != -1 and stop > start:
        return text[:start] + block + text[stop + len(end) :]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def load(results_dir: Path, name: str) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _render_fn(script: str) -> Callable[[dict[str, Any]], str]:
    return importlib.import_module(script).render


def render_results(text: str, results_dir: Path, problems: list[str]) -> str:
    """RESULTS.md's text with every registered section whose JSON exists re-rendered."""
    for section in SECTIONS:
        doc = load(results_dir, section.name)
        if doc is None:
            if markers(section.name)[0] in text:
                problems.append(f"{section.name}: published, but {section.name}.json is missing")
            continue
        for key in ("command", "machine"):
            if key not in doc:
                problems.append(f"{section.name}.json: no {key!r} key")
        text = replace_block(text, section.name, _render_fn(section.script)(doc))
    return text


def readme_table(docs: dict[str, dict[str, Any]]) -> str:
    """The README's results block: ``lstm_general`` on the L2L grid and out of distribution."""
    import generalization
    import l2l_study

    from learned_opt import evaluation

    name = "lstm_general"
    columns = l2l_study.comparisons(docs["l2l_general"])
    lines = [
        "| problem | `lstm_general` | tuned Adam | / tuned Adam | best tuned baseline "
        "| / best tuned | with its step size tuned: / tuned Adam |",
        "| --- | ---: | ---: | --- | ---: | --- | --- |",
    ]
    tuned = name + evaluation.TUNED_SUFFIX
    for col, c in columns:
        best = c.runs[c.best_baseline]
        tuned_cell = c.ratio(tuned, "adam").cell() if tuned in c.runs else "—"
        lines.append(
            f"| {col['label']} | {c.runs[name].median:.3g} | {c.runs['adam'].median:.3g} | "
            f"{c.ratio(name, 'adam').cell()} | {best.median:.3g} ({c.best_baseline}) | "
            f"{c.ratio(name, c.best_baseline).cell()} | {tuned_cell} |"
        )
    first = columns[0][1]
    hidden, activation = first.family["hidden_sizes"], first.family["activation"]
    header = (
        "`lstm_general` was meta-trained on the 8x8 digits only; every problem below is outside "
        "its meta-training distribution. The L2L grid "
        "([`benchmarks/l2l_study.py`](benchmarks/l2l_study.py)): the MLP problems of "
        f"Andrychowicz et al. (2016) on MNIST, {len(hidden)} hidden layer of {hidden[0]} "
        f"{activation} units at {first.num_steps} steps, then the paper's generalisation "
        "columns; Adam, RMSprop, SGD, SGD with momentum and NAG each tuned per problem on "
        f"{first.num_tune_tasks} training tasks; median final training loss on "
        f"{first.num_tasks} held-out tasks; ratios with paired bootstrap 95% intervals, *win* "
        "or *loss* only where the interval excludes 1."
    )
    notes = []
    job = docs.get("main_job")
    if job is not None:
        ratios = []
        for seed in job["seeds"]:
            c = evaluation.Comparison.from_dict(seed["comparison"])
            ratios.append((seed["seed"], c.ratio("learned", "adam"), c.best_baseline))
        wins = sum(r.verdict == "win" for _, r, _ in ratios)
        cells = "; ".join(f"seed {s}: {r.cell()} (best tuned baseline: {b})" for s, r, b in ratios)
        notes.append(
            "The set-up command's optimizer (`learned-opt meta-train --family mlp --meta-steps "
            f"200`, [`benchmarks/main_job.py`](benchmarks/main_job.py)) against tuned Adam on "
            f"its held-out test tasks beats it at {wins} of {len(ratios)} seeds: {cells}."
        )
    general = docs.get("generalization")
    if general is not None:
        runs = (name, tuned)
        summary = [
            line
            for line in generalization.summary(general)
            if line.startswith(tuple(f"- `{r}`:" for r in runs))
        ]
        notes.append(
            f"On the generalisation benchmark ({len(general['problems'])} problems outside the "
            "training distribution: deeper and wider MLPs, conv nets and MLPs on Fashion-MNIST, "
            "a character-level transformer, a deep autoencoder, regressions at loss scales from "
            "1e-3 to 1e4, ill-conditioned quadratics, Rosenbrock; "
            "[`benchmarks/RESULTS.md`](benchmarks/RESULTS.md)):\n\n" + "\n".join(summary)
        )
    return "\n".join([header, "", *lines, "", *[f"{n}\n" for n in notes]]).rstrip()


#: The README's prose blocks: name -> (the results they are written from, their renderer).
README_PROSE: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "readme-generalist": ("generalist", prose.readme_generalist),
    "readme-setup": ("main_job", prose.readme_setup),
    "readme-fewshot": ("fewshot_sinusoid", prose.readme_fewshot),
    "readme-ablation": ("ablation", prose.readme_ablation),
}


def _replace_marked(text: str, name: str, body: str, where: str, problems: list[str]) -> str:
    """``text`` with block ``name`` replaced, or unchanged (and a problem noted) when the
    block's markers are missing: a prose block is never appended."""
    if markers(name)[0] not in text:
        problems.append(f"{where}: no {markers(name)[0]} marker")
        return text
    return replace_block(text, name, body)


def render_readme(text: str, results_dir: Path, problems: list[str]) -> str:
    """README.md's text with its results block and its prose blocks re-rendered."""
    for name, (stem, render) in README_PROSE.items():
        doc = load(results_dir, stem)
        if doc is None:
            problems.append(f"README {name}: missing {stem}.json")
            continue
        text = _replace_marked(text, name, render(doc), "README", problems)
    needed = ("l2l_general", "generalization", "main_job")
    docs = {n: load(results_dir, n) for n in needed}
    missing = [n for n in needed if docs[n] is None]
    if missing:
        problems.append(f"README results table: missing {missing}")
        return text
    if markers(README_BLOCK)[0] not in text:
        problems.append(f"README: no {markers(README_BLOCK)[0]} marker")
        return text
    return replace_block(
        text, README_BLOCK, readme_table({n: d for n, d in docs.items() if d is not None})
    )


def render_cards(text: str, results_dir: Path, problems: list[str]) -> str:
    """docs/pretrained.md's text with every model card's evaluation table re-rendered."""
    import l2l_study

    for name, section in MODEL_CARDS.items():
        doc = load(results_dir, section)
        if doc is None or markers(f"pretrained/{name}")[0] not in text:
            problems.append(f"model card {name}: no {section}.json or no marker")
            continue
        text = replace_block(text, f"pretrained/{name}", l2l_study.render_card(doc))
    general = load(results_dir, "generalization")
    if general is not None:
        import generalization

        for name in general["optimizers"]:
            block = f"pretrained-generalization/{name}"
            if markers(block)[0] not in text:
                problems.append(f"model card {name}: no {markers(block)[0]} marker")
                continue
            text = replace_block(text, block, generalization.render_card(general, name))
        text = _replace_marked(
            text, "pretrained-protocol", prose.grid_sentence(general), "model cards", problems
        )
    stems = ("generalization", "step_cost", "generalist", "generalist_seeds")
    docs = {stem: load(results_dir, stem) for stem in (*stems, *MODEL_CARDS.values())}
    for name, section in MODEL_CARDS.items():
        body = prose.card_notes(name, docs, section)
        text = _replace_marked(text, f"pretrained-notes/{name}", body, "model cards", problems)
    return text


#: Every file with rendered blocks (relative to the repository root) and its renderer.
DOCUMENTS: dict[str, Callable[[str, Path, list[str]], str]] = {
    "README.md": render_readme,
    "docs/pretrained.md": render_cards,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--model-cards", type=Path, default=ROOT / "docs" / "pretrained.md")
    p.add_argument(
        "--results-only",
        action="store_true",
        help="render RESULTS.md only, leaving the README and the model cards alone",
    )
    args = p.parse_args(argv)
    problems: list[str] = []
    outputs = [(args.results_md, render_results)]
    if not args.results_only:
        outputs += [(args.readme, render_readme), (args.model_cards, render_cards)]
    stale = []
    for path, render in outputs:
        old = path.read_text() if path.exists() else f"{common.TITLE}\n"
        new = render(old, args.results_dir, problems)
        if new == old:
            continue
        stale.append(path)
        if args.check:
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), str(path), "rendered", lineterm="", n=1
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            common.write_atomic(path, new)
    for problem in problems:
        print(f"render: {problem}", file=sys.stderr)
    if args.check and stale:
        print(
            f"render: {', '.join(map(str, stale))} differ from the committed JSON; run "
            "python benchmarks/render.py",
            file=sys.stderr,
        )
    return int(bool(problems) or (args.check and bool(stale)))


if __name__ == "__main__":
    sys.exit(main())
