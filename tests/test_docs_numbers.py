"""Every measured figure in the README and the docs is written by ``benchmarks/render.py``.

A *measured figure* is any of these in the prose of ``README.md`` or ``docs/*.md`` (not
``docs/_build``):

- a number followed by a unit of ratio, share, time or size: ``x`` or the multiplication
  sign written against the number (``0.60x``, ``6e11x``; ``8x8`` is a shape and ``2 x 20`` a
  size, not ratios), ``%``, ``ms``, ``s``, ``sec``, ``seconds``, ``min``, ``minutes``, ``h``,
  ``hours``, ``KB``, ``MB``, ``GB``, ``KiB``, ``MiB`` or ``GiB`` (``4.7 ms``, ``26 min``,
  ``7-22 KB``);
- a count ``N of M`` (``2 of 14``);
- a number in scientific notation (``6e11``, ``2.03e+03``, ``1e-3``).

Not prose, hence never scanned: fenced code blocks, inline code, headings, HTML comment lines
(the block markers among them) and the rendered blocks between ``<!-- name:begin -->`` and
``<!-- name:end -->``. A setting that reads like a figure (a default learning rate, the
confidence level of the intervals) is allowed by :data:`ALLOWED`, each entry with its reason;
an entry that no longer matches anything fails, so the list stays short.

The rendered blocks themselves must be the renderer's: emptied, each file renders back to
itself from the committed JSON, so a hand-typed paragraph cannot hide between markers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_NUMBER = r"\d+(?:[.,]\d+)*"
_SCIENTIFIC = r"\d+(?:\.\d+)?e[+-]?\d+"
_UNITS = r"ms|s|sec|seconds|min|minutes|h|hours|KB|MB|GB|KiB|MiB|GiB"
#: What counts as a measured figure (see the module docstring).
FIGURE = re.compile(
    rf"(?<![\w.])(?:"
    rf"(?:{_SCIENTIFIC}|{_NUMBER})[x\u00d7](?!\w)"  # a ratio: 0.60x, 6e11x
    rf"|{_NUMBER} ?%"  # a share: 12%, 95 %
    rf"|{_NUMBER} ?(?:{_UNITS})(?!\w)"  # a time or a size: 4.7 ms, 26 min, 7 KB
    rf"|{_NUMBER} of {_NUMBER}(?!\w)"  # a count: 2 of 14
    rf"|{_SCIENTIFIC}(?!\w)"  # scientific notation: 6e11, 2.03e+03
    rf")"
)

#: Settings that read like measured figures: (pattern, why it is allowed).
ALLOWED: list[tuple[str, str]] = [
    (r"95% intervals?", "the confidence level of the bootstrap intervals, a setting"),
    (r"5\u201395%", "the percentiles `evaluate` prints and the tables show, a setting"),
    (
        r"Adam\s+\d(?:\.\d+)?e-\d",
        "a learning rate given to Adam (its default, or a meta-optimizer's), a setting",
    ),
    (r"condition number 1e3", "a problem of `lstm_general`'s training mixture, a setting"),
    (r"\(default 1e6\)", "the default of `max_task_grad_norm`, a setting"),
]

_BLOCK = re.compile(r"<!-- (\S+):begin -->.*?<!-- \1:end -->", re.S)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"(`+).+?\1", re.S)


def _blank(match: re.Match[str]) -> str:
    """The match replaced by its newlines only, so that line numbers survive."""
    return "\n" * match.group(0).count("\n")


def prose(text: str) -> str:
    """``text`` with everything that is not prose blanked out, line numbers kept."""
    text = _BLOCK.sub(_blank, text)
    text = _FENCE.sub(_blank, text)
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        lines.append("" if stripped.startswith(("#", "<!--")) else line)
    return _INLINE_CODE.sub(lambda m: " " * len(m.group(0).replace("\n", "")), "\n".join(lines))


def measured_figures(text: str) -> list[tuple[int, str]]:
    """Every measured figure in the prose of ``text`` that :data:`ALLOWED` does not cover, as
    ``(line number, the figure)``."""
    body = prose(text)
    allowed = [m.span() for pattern, _ in ALLOWED for m in re.finditer(pattern, body)]
    found = []
    for m in FIGURE.finditer(body):
        if not any(lo <= m.start() and m.end() <= hi for lo, hi in allowed):
            found.append((body.count("\n", 0, m.start()) + 1, m.group(0)))
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_measured_figure_outside_a_rendered_block(path: Path) -> None:
    found = measured_figures(path.read_text())
    assert not found, (
        f"{path.relative_to(ROOT)}: measured figures outside a rendered block (write them from "
        f"the results JSON in benchmarks/prose.py, or cut them): {found}"
    )


def test_every_allowance_is_still_needed() -> None:
    bodies = [prose(path.read_text()) for path in FILES]
    for pattern, reason in ALLOWED:
        assert reason
        assert any(re.search(pattern, body) for body in bodies), f"unused allowance {pattern!r}"


def test_a_planted_figure_is_found_and_code_headings_and_blocks_are_not(tmp_path: Path) -> None:
    planted = tmp_path / "planted.md"
    planted.write_text(
        "# A heading with 0.60x in it\n"
        "\n"
        "The step costs 4.7 ms, 26 minutes to train and 3.4x Adam's; it beats Adam on 2 of 14\n"
        "problems, loses by 6e11 on one and by 12% on another. An 8x8 image, a 2 x 20 LSTM,\n"
        "`lr=1e-3` and a 2-core CPU are not figures; Adam 1e-3 is allowed.\n"
        "\n"
        "```python\n"
        "print(0.5x, 3 of 4)\n"
        "```\n"
        "\n"
        "<!-- table:begin -->\n"
        "Rendered: 1.09x, 9 of 14, 2.03e+03.\n"
        "<!-- table:end -->\n"
        "Then 18.5 s.\n"
    )
    found = measured_figures(planted.read_text())
    assert found == [
        (3, "4.7 ms"),
        (3, "26 minutes"),
        (3, "3.4x"),
        (3, "2 of 14"),
        (4, "6e11"),
        (4, "12%"),
        (14, "18.5 s"),
    ]


@pytest.fixture
def render():
    """``benchmarks/render.py`` as a module."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import render

        yield render
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rendered_block_is_written_by_the_renderer(render, path: Path) -> None:
    text = path.read_text()
    relative = str(path.relative_to(ROOT))
    emptied = _BLOCK.sub(lambda m: f"<!-- {m.group(1)}:begin -->\n<!-- {m.group(1)}:end -->", text)
    if relative not in render.DOCUMENTS:
        assert emptied == text, f"{relative} has rendered blocks but no renderer"
        return
    problems: list[str] = []
    rendered = render.DOCUMENTS[relative](emptied, BENCHMARKS / "results", problems)
    assert not problems
    assert rendered == text


def test_prose_without_intervals_reads_no_verdict(render) -> None:
    import json

    import prose as card_prose

    doc = json.loads((BENCHMARKS / "results" / "l2l_mnist.json").read_text())
    notes = card_prose.l2l_notes(doc)
    assert "no verdict" in notes
    assert not re.search(r"\b(wins?|beats?|loses?|better than|outperforms)\b", notes)
