"""Few-shot sinusoid regression with the MAML protocol, every method at the same budget and tuned.

Tasks (Finn et al. 2017, section 5.1): ``y = A sin(x - φ)``, amplitude U[0.1, 5], phase U[0, π],
inputs U[-5, 5]; a 1-40-40-1 ReLU network (LeCun-normal weights, zero biases). Meta-training
episodes have K = 10 support and 10 query points.

Budget: every method meta-trains on the same stream of episodes -- ``--iterations``
meta-iterations of ``--meta-batch`` tasks (default 3,000 x 25 = 75,000 task visits, each of the
same 20 points) -- whatever a meta-iteration costs it. Per method (the protocol of
``fewshot_common``), each point of its grid is meta-trained at that budget and scored on 200
validation tasks; at every K the point and number of adaptation steps with the lowest
validation MSE are chosen, and only that point is run on the 1,000 test tasks:

- pre-training (Adam 1e-3 on the support and query loss of every task; its grid is the
  fine-tuning SGD rate alpha, so it is trained once);
- MAML and first-order MAML: one inner SGD step of alpha during meta-training, Adam 1e-3 as
  meta-optimizer (the paper's settings); grid: alpha;
- Reptile (the library's defaults: 5 inner steps of Adam with b1 = 0 alternating between the
  support and query sets, the plain Reptile update); grid: the inner Adam rate and the meta
  step ε (Nichol et al. use 1, annealed to 0, on Omniglot; 0.1 in their sine demo);
- the Meta-LSTM learner (Ravi & Larochelle): ``MetaLSTMOptimizer()`` (20 hidden units) and the
  network's initial parameters meta-trained through 5 inner steps, Adam 1e-3 on the
  meta-gradient clipped to norm 0.25; its input gate starts at the alpha chosen for MAML at
  K = 5 and its forget gate near 1 (the paper's initialisation), so it has no grid of its own.

Evaluation: the same test tasks for every method (their own key); for K = 5, 10, 20 support
points each method adapts with its own inner optimizer and the MSE on 100 fresh query points per
task is recorded after 0..10 steps, as a mean with its 95% interval (1.96 standard errors over
tasks). The Meta-LSTM learner's error is compared with MAML's, each at its validation-chosen
step, by the ratio of mean errors with a paired bootstrap interval over the test tasks. Its
gates (the forget gate and the learning rate, i.e. the input gate, pooled over coordinates and
test tasks) are recorded at every adaptation step.

Usage:
    nice -n 10 python benchmarks/fewshot_sinusoid.py \
        --json-out benchmarks/results/fewshot_sinusoid.json \
        --plot benchmarks/figures/fewshot_sinusoid.png
    python benchmarks/fewshot_sinusoid.py --quick   # smoke test: a few iterations

One JSON document goes to stdout (and to ``--json-out``); ``python benchmarks/render.py`` renders
it (:func:`render`) into this benchmark's section of ``benchmarks/RESULTS.md``, between
``<!-- fewshot_sinusoid:begin -->`` and ``<!-- fewshot_sinusoid:end -->``; ``--results-md``
writes that section of a file directly. :func:`render` also reads a document of the first
protocol (a fixed step size and a budget of its own per method, no grid, no validation tasks),
which is what ``benchmarks/results/fewshot_sinusoid.json`` holds until the benchmark is re-run.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import fewshot_common as common

import learned_opt as lo
from learned_opt import fewshot

SECTION = "fewshot_sinusoid"
BEGIN_MARKER, END_MARKER = f"<!-- {SECTION}:begin -->", f"<!-- {SECTION}:end -->"
SHOTS = (5, 10, 20)
NUM_STEPS = 10
K_TRAIN = 10
QUERY_POINTS = 100
ALPHAS = (0.003, 0.01, 0.03, 0.1)
REPTILE_RATES = (0.003, 0.01, 0.03)
REPTILE_META_STEPS = (0.3, 1.0)
#: Finn et al. 2017, figure 2 / text: 5-shot MSE after 1, 5 and 10 steps.
PAPER_5SHOT = {"maml": (0.67, 0.38, 0.35), "pretrain": (2.41, 2.23, 2.19)}
#: The Meta-LSTM learner's target: at most this multiple of MAML's error at K = 5.
META_LSTM_TARGET = 1.10
LABELS = {
    "pretrain": "pre-training",
    "maml": "MAML",
    "first_order_maml": "first-order MAML",
    "reptile": "Reptile",
    "meta_lstm": "Meta-LSTM learner",
}


#: The Meta-LSTM of the Meta-LSTM learner (its input-gate range is set from MAML's alpha).
META_LSTM = lo.MetaLSTMOptimizer()


def grid(name: str, family: lo.tasks.Sinusoid, maml_alpha: float) -> list[common.Candidate]:
    """The candidates of method ``name`` (see the module docstring)."""
    apply = family.apply
    if name == "pretrain":
        return [
            common.Candidate({"alpha": a}, fewshot.pretrain(apply, inner=a), None if i == 0 else 0)
            for i, a in enumerate(ALPHAS)
        ]
    if name in ("maml", "first_order_maml"):
        method = getattr(fewshot, name)
        return [common.Candidate({"alpha": a}, method(apply, inner=a)) for a in ALPHAS]
    if name == "reptile":
        return [
            common.Candidate(
                {"adam_rate": rate, "meta_step": eps},
                fewshot.reptile(apply, inner=optax.adam(rate, b1=0.0), meta_step_size=eps),
            )
            for rate in REPTILE_RATES
            for eps in REPTILE_META_STEPS
        ]
    if name == "meta_lstm":
        learner = fewshot.meta_lstm(apply, optimizer=META_LSTM, learning_rate=maml_alpha)
        return [common.Candidate({"initial_input_gate": maml_alpha}, learner)]
    raise ValueError(f"unknown method {name!r}")


def find_gates(state: Any) -> Any:
    """The Meta-LSTM's own state (it holds the ``forget`` and ``input`` gates) in an optax state."""
    if hasattr(state, "forget") and hasattr(state, "input"):
        return state
    if isinstance(state, tuple):
        for part in state:
            found = find_gates(part)
            if found is not None:
                return found
    return None


def gate_trace(
    family: lo.tasks.Sinusoid, state: fewshot.FewShotState, support: Any, num_steps: int
) -> dict[str, list[list[float]]]:
    """The 5th, 50th and 95th percentiles of both gates over coordinates and tasks, per step."""
    loss_fn = lambda params, batch: fewshot.mse(family.apply(params, batch[0]), batch[1])
    tx = META_LSTM.as_optax(state.optimizer_params)

    def one(support):
        params, opt_state, gates = state.params, tx.init(state.params), []
        for _ in range(num_steps):
            loss, grads = jax.value_and_grad(loss_fn)(params, support)
            updates, opt_state = tx.update(grads, opt_state, params, value=loss)
            params = optax.apply_updates(params, updates)
            found = find_gates(opt_state)
            gates.append(
                [
                    jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(g)])
                    for g in (found.forget, found.input)
                ]
            )
        return gates

    gates = jax.jit(jax.vmap(one))(support)
    return {
        gate: [np.percentile(np.asarray(step[index]), [5, 50, 95]).tolist() for step in gates]
        for index, gate in enumerate(("forget", "input"))
    }


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    family = lo.tasks.Sinusoid()
    init_params = family.init(None, jax.random.key(args.seed))
    train_key = jax.random.key(args.seed + 1)  # the same episodes for every method
    test_key, validation_key = jax.random.key(args.seed + 2), jax.random.key(args.seed + 3)
    settings = {
        str(k): common.Setting(
            fewshot.sample_episodes(family, validation_key, args.validation_tasks, k, QUERY_POINTS),
            fewshot.sample_episodes(family, test_key, args.test_tasks, k, QUERY_POINTS),
        )
        for k in args.shots
    }
    sample = functools.partial(
        fewshot.sample_episodes,
        family,
        num_tasks=args.meta_batch,
        k_support=K_TRAIN,
        k_query=K_TRAIN,
    )
    doc: dict[str, Any] = {
        "command": _common.command_line("benchmarks/fewshot_sinusoid.py", args.argv),
        "machine": _common.machine(),
        "protocol": {
            "k_train": K_TRAIN,
            "query_points": QUERY_POINTS,
            "iterations": args.iterations,
            "meta_batch": args.meta_batch,
            "task_visits": args.iterations * args.meta_batch,
            "validation_tasks": args.validation_tasks,
            "test_tasks": args.test_tasks,
            "shots": list(args.shots),
            "num_steps": NUM_STEPS,
            "seed": args.seed,
            "quick": args.quick,
        },
        "methods": {},
    }
    per_task, states = {}, {}
    maml_alpha = 0.01  # the library's default, if MAML is not run
    for name in args.methods:
        candidates = grid(name, family, maml_alpha)
        doc["methods"][name], per_task[name], states[name] = common.tune_and_test(
            name,
            candidates,
            init_params,
            sample,
            train_key,
            args.iterations,
            args.chunk,
            settings,
            NUM_STEPS,
            None,
            False,
            log,
        )
        if name == "maml":
            first = str(args.shots[0])
            maml_alpha = doc["methods"][name]["settings"][first]["hyperparameters"]["alpha"]
    if "meta_lstm" in per_task and "maml" in per_task:
        doc["meta_lstm_vs_maml"] = {
            k: dict(
                zip(
                    ("ratio", "low", "high"),
                    common.paired_interval(per_task["meta_lstm"][k], per_task["maml"][k], "ratio"),
                    strict=True,
                )
            )
            for k in settings
        }
    if "meta_lstm" in per_task:
        first = str(args.shots[0])
        doc["meta_lstm_gates"] = {
            "shots": int(first),
            **gate_trace(
                family, states["meta_lstm"][first], settings[first].test.support, NUM_STEPS
            ),
        }
    return doc


def plot(doc: dict[str, Any], path: Path) -> None:
    """Test MSE against adaptation steps, one panel per K, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = doc["protocol"]["shots"]
    fig, axes = plt.subplots(1, len(shots), figsize=(4.5 * len(shots), 3.6), squeeze=False)
    steps = np.arange(doc["protocol"]["num_steps"] + 1)
    for ax, k in zip(axes[0], shots, strict=True):
        for name, method in doc["methods"].items():
            r = method["settings"][str(k)]
            mean = np.array(r["mean"], dtype=float)
            ci = np.array(r["ci95"], dtype=float)
            ax.errorbar(steps, mean, yerr=ci, label=LABELS[name], capsize=2, marker=".")
        ax.set_title(f"{k}-shot sinusoid regression")
        ax.set_xlabel("adaptation steps")
        ax.set_ylabel("test query MSE")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def describe(name: str, hyperparameters: dict[str, Any]) -> str:
    """A method's chosen hyperparameters in words."""
    if name == "reptile":
        return f"Adam {hyperparameters['adam_rate']:g}, ε {hyperparameters['meta_step']:g}"
    if name == "meta_lstm":
        return f"input gate from {hyperparameters['initial_input_gate']:g}"
    return f"alpha {hyperparameters['alpha']:g}"


def cell(mean: float | None, ci: float | None, bold: bool = False) -> str:
    if mean is None:
        return "diverged"
    text = f"{mean:.3f} ± {ci:.3f}"
    return f"**{text}**" if bold else text


def render(doc: dict[str, Any]) -> str:
    """The Markdown of this benchmark's section, from its JSON document alone.

    Args:
        doc: what :func:`run` returned, or a document of the first protocol (its methods carry
            ``"results"`` instead of a ``"grid"``), rendered by :func:`render_first_protocol`.

    Returns:
        The section's Markdown, without its begin and end markers.
    """
    proto, methods = doc["protocol"], doc["methods"]
    if any("grid" not in method for method in methods.values()):
        return render_first_protocol(doc)
    names = list(methods)
    train_s = {n: sum(g["train_seconds"] for g in m["grid"]) for n, m in methods.items()}
    lines = [
        "## Few-shot sinusoid regression (MAML protocol, equal budgets)",
        "",
        f"Command: `{doc['command']}`",
        "",
        common.machine_line(doc["machine"])
        + (" No GPU was available to this run." if doc["machine"]["backend"] == "cpu" else ""),
        "",
        f"Budget: every method meta-trains on the same {proto['iterations']:,} meta-iterations "
        f"of {proto['meta_batch']} tasks ({proto['task_visits']:,} task visits of "
        f"K = {proto['k_train']} support + {proto['k_train']} query points). Each point of a "
        f"method's grid is trained at that budget; at every K the point and the number of "
        f"adaptation steps with the lowest mean MSE on {proto['validation_tasks']} validation "
        f"tasks are chosen, and only they meet the {proto['test_tasks']} test tasks "
        f"({proto['query_points']} query points each). Grids: pre-training, MAML and "
        f"first-order MAML alpha ∈ {{{', '.join(f'{a:g}' for a in ALPHAS)}}} (inner SGD); Reptile "
        f"inner Adam rate ∈ {{{', '.join(f'{a:g}' for a in REPTILE_RATES)}}} x meta step ε ∈ "
        f"{{{', '.join(f'{a:g}' for a in REPTILE_META_STEPS)}}}; the Meta-LSTM learner none "
        "(its input gate starts at MAML's chosen alpha, its forget gate near 1). Meta-training "
        "time, all grid points: "
        + ", ".join(f"{LABELS[n]} {train_s[n]:.0f} s" for n in names)
        + ". Settings are in `benchmarks/fewshot_sinusoid.py`'s docstring.",
        "",
    ]
    steps = range(proto["num_steps"] + 1)
    for k in proto["shots"]:
        rows = {n: methods[n]["settings"][str(k)] for n in names}
        lines += [
            f"**K = {k}**: test MSE (mean ± 95% interval) after each number of adaptation steps; "
            "bold: the step chosen on validation tasks.",
            "",
            "| steps | " + " | ".join(LABELS[n] for n in names) + " |",
            "| --- |" + " --- |" * len(names),
            "| chosen | "
            + " | ".join(describe(n, rows[n]["hyperparameters"]) for n in names)
            + " |",
        ]
        for s in steps:
            lines.append(
                f"| {s} | "
                + " | ".join(
                    cell(r["mean"][s], r["ci95"][s], s == r["chosen_step"]) for r in rows.values()
                )
                + " |"
            )
        lines.append(
            "| lowest (step) | "
            + " | ".join(
                f"{r['mean'][r['peak_step']]:.3f} ({r['peak_step']})" for r in rows.values()
            )
            + " |"
        )
        lines.append("")
    lines += findings(doc)
    lines += ["", "![few-shot sinusoid MSE against adaptation steps](figures/fewshot_sinusoid.png)"]
    return "\n".join(lines) + "\n"


def findings(doc: dict[str, Any]) -> list[str]:
    """Statements computed from the numbers: the paper's, the ranking, the Meta-LSTM target."""
    proto, methods = doc["protocol"], doc["methods"]
    out = []
    if 5 in proto["shots"]:
        for name, paper in PAPER_5SHOT.items():
            if name in methods:
                mean = methods[name]["settings"]["5"]["mean"]
                here = " / ".join(f"{mean[s]:.2f}" for s in (1, 5, 10))
                out.append(
                    f"- {LABELS[name]} at K = 5 after 1 / 5 / 10 steps: {here} here, "
                    f"{' / '.join(map(str, paper))} in Finn et al. 2017 (70,000 meta-iterations "
                    "of 25 tasks)."
                )
    for k in proto["shots"]:
        rows = {n: m["settings"][str(k)] for n, m in methods.items()}
        at_chosen = {n: r["mean"][r["chosen_step"]] for n, r in rows.items()}
        order = sorted(at_chosen, key=lambda n: np.inf if at_chosen[n] is None else at_chosen[n])
        out.append(
            f"- K = {k}, each at its chosen step (best first): "
            + ", ".join(
                f"{LABELS[n]} {cell(at_chosen[n], rows[n]['ci95'][rows[n]['chosen_step']])}"
                for n in order
            )
            + "."
        )
    for k, r in doc.get("meta_lstm_vs_maml", {}).items():
        if r["high"] <= META_LSTM_TARGET:
            verdict = "meets the target"
        elif r["low"] > META_LSTM_TARGET:
            verdict = "misses the target"
        else:
            verdict = "the interval straddles the target"
        if k == "5":
            out.append(
                f"- Meta-LSTM learner / MAML error at K = 5: {r['ratio']:.2f} [{r['low']:.2f}, "
                f"{r['high']:.2f}] (paired bootstrap over test tasks): {verdict} of at most "
                f"{META_LSTM_TARGET:.2f}."
            )
    gates = doc.get("meta_lstm_gates")
    if gates:
        forget, rate = np.array(gates["forget"]), np.array(gates["input"])
        out.append(
            f"- The Meta-LSTM learner's gates on the K = {gates['shots']} test tasks (median "
            "[5th, 95th percentile] over coordinates and tasks) at steps 1 / 5 / 10: forget "
            + " / ".join(
                f"{forget[s, 1]:.3f} [{forget[s, 0]:.3f}, {forget[s, 2]:.3f}]" for s in (0, 4, 9)
            )
            + "; learning rate (input gate) "
            + " / ".join(
                f"{rate[s, 1]:.3g} [{rate[s, 0]:.3g}, {rate[s, 2]:.3g}]" for s in (0, 4, 9)
            )
            + "."
        )
    return out


def render_first_protocol(doc: dict[str, Any]) -> str:
    """The section of a document of the first protocol, as that protocol's script wrote it.

    That protocol gave every method one fixed inner step size (SGD alpha = 0.01) and its own
    number of meta-iterations, without validation tasks; each method records its test MSE per
    K (``"results"``) and its budget.
    """
    proto, methods = doc["protocol"], doc["methods"]
    show = [0, 1, 2, 5, 10]
    mse = {n: {int(k): r["mse"] for k, r in m["results"].items()} for n, m in methods.items()}

    def row(name: str, k: int) -> str:
        r = methods[name]["results"][str(k)]
        return " | ".join(f"{r['mse'][s]:.3f} ± {r['ci95'][s]:.3f}" for s in show)

    lines = [
        "## Few-shot sinusoid regression (MAML protocol)",
        "",
        f"Command: `{doc['command']}`",
        "",
        common.machine_line(doc["machine"]),
        "",
        f"Meta-training: K = {proto['k_train']} support + {proto['k_train']} query points per "
        "task; iterations (meta-batch): "
        + ", ".join(
            f"{LABELS[n]} {m['iterations']} ({m['meta_batch']}) in {m['train_seconds']:.0f} s"
            for n, m in methods.items()
        )
        + ". Settings are in `benchmarks/fewshot_sinusoid.py`'s docstring.",
        f"Evaluation: {proto['test_tasks']} test tasks (the same for every method), "
        f"{proto['query_points']} query points each; mean query MSE ± 95% interval after "
        f"fine-tuning on K support points with each method's inner optimizer (SGD alpha = "
        f"{proto['alpha']:g}; the Meta-LSTM learner its learned optimizer).",
        "",
    ]
    for k in proto["shots"]:
        lines += [
            f"**K = {k}**",
            "",
            "| method | " + " | ".join(f"step {s}" for s in show) + " |",
            "| --- |" + " --- |" * len(show),
            *(f"| {LABELS[n]} | {row(n, k)} |" for n in methods),
            "",
        ]
    if 5 in proto["shots"]:
        lines += [
            "Comparison with Finn et al. 2017 (5-shot MSE after 1 / 5 / 10 steps):",
            "",
            "| method | paper | here |",
            "| --- | --- | --- |",
        ]
        for name, paper in PAPER_5SHOT.items():
            if name in methods:
                here = " / ".join(f"{mse[name][5][s]:.2f}" for s in (1, 5, 10))
                lines.append(f"| {LABELS[name]} | {' / '.join(map(str, paper))} | {here} |")
        lines.append("")
        if "maml" in mse:
            one, ten = mse["maml"][5][1], mse["maml"][5][10]
            verdict = "meets" if one <= 0.7 and ten <= 0.4 else "misses"
            lines.append(
                f"- 5-shot MAML: {one:.3f} after 1 step, {ten:.3f} after 10 ({verdict} the target "
                "of <= 0.7 and <= 0.4)."
            )
        order = sorted(mse, key=lambda n: mse[n][5][10])
        lines.append(
            "- Ranking after 10 steps at K = 5 (best first): "
            + ", ".join(f"{LABELS[n]} {mse[n][5][10]:.3f}" for n in order)
            + "."
        )
    command = shlex.split(doc["command"])
    if "--plot" in command:
        figure = Path(command[command.index("--plot") + 1]).name
        lines += ["", f"![few-shot sinusoid MSE against adaptation steps]({figure})"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations (smoke test)")
    parser.add_argument("--methods", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    parser.add_argument("--iterations", type=int, default=3000, help="meta-iterations")
    parser.add_argument("--meta-batch", type=int, default=25)
    parser.add_argument("--validation-tasks", type=int, default=200)
    parser.add_argument("--test-tasks", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=500, help="iterations per compiled call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    parser.add_argument("--results-md", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.iterations, args.meta_batch = 6, 4
        args.validation_tasks, args.test_tasks, args.chunk = 20, 50, 6
    if min(args.iterations, args.meta_batch, args.chunk) < 1:
        parser.error("--iterations, --meta-batch and --chunk must be positive")
    if min(args.test_tasks, args.validation_tasks) < 2:
        parser.error("--test-tasks, --validation-tasks: need at least 2 tasks for an interval")
    if "meta_lstm" in args.methods and "maml" in args.methods:
        args.methods = [m for m in args.methods if m != "meta_lstm"] + ["meta_lstm"]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    doc = run(args, log)
    _common.emit_json(doc, args.json_out)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(doc, args.plot)
    if args.results_md:
        section = f"{BEGIN_MARKER}\n{render(doc)}{END_MARKER}\n"
        _common.write_section(args.results_md, section, BEGIN_MARKER, END_MARKER)
        log(f"wrote section of {args.results_md}")
    return doc


if __name__ == "__main__":
    main()
