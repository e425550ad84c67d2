"""The import contracts of ``.importlinter`` hold, and they can fail.

``make test`` runs ``lint-imports`` on the tree; these tests also break a copy of the package on purpose
(an upward import inside a function, a private name taken from another package, a cycle) and check that
the right contract reports it, so the guard is known to bite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed (make setup)")


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT / "tools")]), "COLUMNS": "250"}
    res = subprocess.run(
        [str(LINT), "--no-cache", str(ROOT / ".importlinter")],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    res.stdout = " ".join(res.stdout.split())  # one line: rich wraps long messages
    return res


@pytest.fixture
def src_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src" / "survpgc", tmp_path / "survpgc", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_contracts_hold_on_the_tree():
    res = _lint(ROOT / "src")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_an_upward_function_level_import_breaks_layers_and_acyclic(src_copy: Path):
    _append(
        src_copy / "survpgc" / "survival" / "metrics.py",
        "def _probe():\n    from survpgc.train import cv\n\n    return cv",
    )
    res = _lint(src_copy)
    assert res.returncode != 0
    assert "survpgc.survival is not allowed to import survpgc.train" in res.stdout
    assert "No import cycles" in res.stdout.split("Broken contracts")[-1]


def test_a_private_name_from_another_package_is_refused(src_copy: Path):
    # report is above survival, so the layers allow the import; only the private name is wrong
    _append(src_copy / "survpgc" / "survival" / "metrics.py", "def _secret():\n    return 1")
    _append(
        src_copy / "survpgc" / "report" / "run.py",
        "def _probe():\n    from survpgc.survival.metrics import _secret\n\n    return _secret",
    )
    res = _lint(src_copy)
    assert res.returncode != 0
    assert "imports private name _secret from survpgc.survival.metrics" in res.stdout


def test_a_cycle_between_modules_of_one_package_is_refused(src_copy: Path):
    # rundir -> inputs exists; inputs -> rundir (inside a function) closes a cycle
    _append(
        src_copy / "survpgc" / "inputs.py", "def _probe():\n    from survpgc.rundir import RunDir\n\n    return RunDir"
    )
    res = _lint(src_copy)
    assert res.returncode != 0
    assert "No import cycles" in res.stdout.split("Broken contracts")[-1]
