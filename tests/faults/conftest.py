"""The fault suite: every fault and bad input we know of, each a test of the exact behaviour.

Every test here carries ``@pytest.mark.fault(outcome)`` with the outcome it asserts:

* ``"survived"``: the fault happens and the run goes on, the fault contained (a bad task
  masked, a corrupt checkpoint skipped for an intact one, ...);
* ``"refused"``: the bad input is rejected with one clear error naming what was wrong (a
  ``ValueError``/``TypeError`` from the library, one line and a non-zero exit from the CLI).

A parametrized test counts once per case. ``benchmarks/faults.py`` runs this folder and counts
the faults tried, survived and refused. Adding a fault is a few lines: a test in the file of its
area (``test_fault_<area>.py``) with its marker.
"""

from pathlib import Path

import pytest

OUTCOMES = ("survived", "refused")
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    unmarked = []
    for item in items:
        if _HERE not in item.path.parents:
            continue
        marks = list(item.iter_markers("fault"))
        if len(marks) != 1 or tuple(marks[0].args) not in {(o,) for o in OUTCOMES}:
            unmarked.append(item.nodeid)
            continue
        item.user_properties.append(("fault", marks[0].args[0]))
    if unmarked:
        raise pytest.UsageError(
            f"tests in {_HERE} need exactly one @pytest.mark.fault(outcome), outcome one of "
            f"{OUTCOMES}: {unmarked}"
        )
