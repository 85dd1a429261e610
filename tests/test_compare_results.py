"""benchmarks/compare_results.py, the check behind "this change moved no result": it must see a
one-ulp change in a checkpoint or a table, and must not see where a result was made."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_results.py"


def _results(root: Path) -> Path:
    (root / "models/tiny/sft").mkdir(parents=True)
    torch.save({"model": {"w": torch.linspace(0, 1, 12).reshape(3, 4)}, "step": 5},
               root / "models/tiny/sft/ckpt.pt")
    pd.DataFrame({"k": [1, 2], "acc": [0.5, float("nan")]}).to_parquet(root / "models/tiny/table.parquet")
    (root / "models/tiny/sft/metrics.json").write_text(json.dumps({"loss": 0.25, "code_hash": "aaaa"}))
    (root / "models/tiny/sft/timing.json").write_text(json.dumps({"seconds": 1.0}))
    return root


def _compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_same_values_pass_whatever_the_provenance_and_timing(tmp_path):
    first, second = _results(tmp_path / "a"), _results(tmp_path / "b")
    (second / "models/tiny/sft/metrics.json").write_text(json.dumps({"loss": 0.25, "code_hash": "bbbb"}))
    (second / "models/tiny/sft/timing.json").write_text(json.dumps({"seconds": 9.0}))
    proc = _compare(first, second)
    assert proc.returncode == 0, proc.stdout
    assert "all 3 files value-identical" in proc.stdout


def test_one_ulp_in_a_checkpoint_or_a_table_is_a_difference(tmp_path):
    first = _results(tmp_path / "a")
    second = tmp_path / "b"
    shutil.copytree(first, second)
    ckpt = torch.load(second / "models/tiny/sft/ckpt.pt", weights_only=True)
    ckpt["model"]["w"][1, 1] = torch.nextafter(ckpt["model"]["w"][1, 1], torch.tensor(2.0))
    torch.save(ckpt, second / "models/tiny/sft/ckpt.pt")
    table = pd.read_parquet(second / "models/tiny/table.parquet")
    table.loc[0, "acc"] = 0.5000000000000001
    table.to_parquet(second / "models/tiny/table.parquet")
    proc = _compare(first, second)
    assert proc.returncode == 1
    assert "models/tiny/sft/ckpt.pt: /model/w: values differ" in proc.stdout
    assert "models/tiny/table.parquet: column 'acc', row 0" in proc.stdout
    assert "2 of 3 files differ" in proc.stdout


def test_a_missing_file_is_named(tmp_path):
    first, second = _results(tmp_path / "a"), _results(tmp_path / "b")
    (second / "models/tiny/table.parquet").unlink()
    proc = _compare(first, second)
    assert proc.returncode == 1 and f"models/tiny/table.parquet: only in {first}" in proc.stdout
