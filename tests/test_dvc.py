"""DVC as a researcher uses it: `make study` for a new params file, a queued sweep of two
experiments, `dvc exp show` that fits a terminal and `dvc exp diff` between them, and MLflow runs
of the two experiments told apart by their tags. Real DVC, Snakemake and MLflow (SQLite store).

One project copy of its own, with a study smaller than smoke (no post-training, fewer decodes), so the three runs
of it (the study, then two experiments) take about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from conftest import BIN, make_project_copy, project_env, run

pytestmark = pytest.mark.e2e


def _sweep_params(smoke: str) -> str:
    text = smoke.replace("study: smoke", "study: sweep")
    text = text.replace("schemes: [none, binary, penalized-0.75, calibrated]", "schemes: [none]")
    text = text.replace("invariant_control: [binary]", "invariant_control: []")  # no scheme post-trains
    text = text.replace("steps: 30\n", "steps: 20\n").replace("batch_sizes: [1, 2, 4]", "batch_sizes: [1, 2]")
    text = text.replace("qa_prompts: 4", "qa_prompts: 2").replace("repeat_requests: 4", "repeat_requests: 2")
    assert "study: sweep" in text and "schemes: [none]\n" in text and "steps: 20\n" in text
    return text


def test_make_study_then_a_queued_sweep(tmp_path):
    path = make_project_copy(tmp_path / "project")
    env = project_env(path, {"COLUMNS": "200"})
    (path / "params" / "sweep.yaml").write_text(_sweep_params((path / "params" / "smoke.yaml").read_text()))

    # `make study` for a params file it has never seen: registers it, runs it through DVC
    # the test's own environment, taken as set up (-o: never reinstalled into from this copy)
    run(["make", "study", "STUDY=sweep", f"VENV={BIN.parent}", "-o", "setup", "-o", str(BIN.parent / ".installed")],
        path, env)
    assert "  - sweep\n" in (path / "params" / "studies.yaml").read_text()
    assert "study@sweep" in (path / "dvc.lock").read_text()
    assert (path / "reports" / "sweep" / "headline.json").is_file()
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-q", "-m", "sweep study"], path, env)

    for seed in (8, 9):
        run(["dvc", "exp", "run", "--queue", "study@sweep", "-S", f"params/sweep.yaml:seed={seed}"], path, env)
    run(["dvc", "exp", "run", "--run-all"], path, env, timeout=900)

    table = run(["dvc", "exp", "show", "--no-pager"], path, env).stdout
    assert max(len(line) for line in table.splitlines()) <= 200, table
    exps = json.loads(run(["dvc", "exp", "show", "--json"], path, env).stdout)
    done = [e for base in exps for e in (base.get("experiments") or [])]
    assert [e["executor"]["state"] for e in done] == ["success", "success"], done
    names = [e["name"] for e in done]
    assert all(n in table for n in names), table

    diff = json.loads(run(["dvc", "exp", "diff", names[0], names[1], "--json"], path, env).stdout)
    seeds = diff["params"]["params/sweep.yaml"]["seed"]
    assert {seeds["old"], seeds["new"]} == {8, 9}
    assert diff["metrics"]["reports/sweep/headline.json"], diff  # the findings differ with the seed

    # MLflow: the evaluate runs of the two experiments carry their experiment name and study hash
    with sqlite3.connect(path / "mlflow.db") as db:
        rows = db.execute(
            "SELECT t1.value, t2.value FROM tags t1 JOIN tags t2 ON t1.run_uuid = t2.run_uuid "
            "JOIN tags t3 ON t1.run_uuid = t3.run_uuid "
            "WHERE t1.key = 'nextlab.dvc_exp' AND t2.key = 'nextlab.study_params_hash' "
            "AND t3.key = 'nextlab.stage' AND t3.value = 'evaluate'").fetchall()
    by_exp: dict[str, set[str]] = {}
    for exp, study_hash in rows:
        by_exp.setdefault(exp, set()).add(study_hash)
    assert set(by_exp) == set(names), rows
    assert all(len(h) == 1 for h in by_exp.values()) and len(set.union(*by_exp.values())) == 2, by_exp
    assert os.path.isdir(path / "results" / "sweep")
