"""Static checks (ruff): undefined names, unused imports and import order, over the library, tests,
benchmarks and the workflow's scripts."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_undefined_names_unused_or_unsorted_imports():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: run `make setup` (it is pinned in requirements.lock)")
    result = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "workflow"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
