"""Links into the MLflow UI that show a study's runs with no clicking.

The UI nests child runs under their pipeline run and starts with them collapsed. MLflow can load
a saved view from an experiment tag `mlflow.sharedViewState.<key>` (its "share view" feature);
`share_view` writes one sorted by run name, which the UI shows as a flat list, so

    http://127.0.0.1:5000/#/experiments/<id>/runs?viewStateShareKey=nextlab

lists every stage's run, and `viewStateShareKey=nextlab-schemes` lists the evaluation runs with
their headline metrics (accuracy, hallucination, abstention, scores, ECE, ...) as columns: the
reward schemes side by side. `compare_path` is MLflow's compare page for the latest evaluation run
of each (model, scheme, seed).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

VIEW_KEY = "nextlab"  # every run, flat
SCHEMES_KEY = "nextlab-schemes"  # the evaluation runs, headline metrics as columns
VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_TAG = f"{VIEW_PREFIX}{VIEW_KEY}"
BY_NAME = {"orderByKey": "tags.`mlflow.runName`", "orderByAsc": True}
SCHEME_FILTER = "tags.`nextlab.stage` = 'evaluate' and tags.`nextlab.scheme` != 'all'"


# MLflow 3's UI opens on its GenAI pages unless told the workflow is machine learning (it keeps
# the choice per browser; the experiment's `mlflow.experimentKind` tag is the fallback).
WORKFLOW = "workflowType=machine_learning"


def runs_path(experiment_id: str, key: str = VIEW_KEY) -> str:
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={key}&{WORKFLOW}"


def compare_path(experiment_id: str, run_ids: list[str]) -> str:
    compact = {"separators": (",", ":")}
    return (f"#/compare-runs?runs={quote(json.dumps(run_ids, **compact))}"
            f"&experiments={quote(json.dumps([experiment_id], **compact))}&{WORKFLOW}")


def latest_by_name(runs: list[Any], stage: str) -> list[Any]:
    """The newest run of each run name of one stage (a rerun replaces, in the comparison, the old one)."""
    newest: dict[str, Any] = {}
    for run in runs:
        if run.data.tags.get("nextlab.stage") != stage:
            continue
        name = run.data.tags.get("mlflow.runName", run.info.run_name)
        if name not in newest or run.info.start_time > newest[name].info.start_time:
            newest[name] = run
    return [newest[name] for name in sorted(newest)]


def scheme_runs(runs: list[Any]) -> list[Any]:
    """The newest evaluation run of each (model, scheme, seed); not the across-seed summary."""
    return [r for r in latest_by_name(runs, "evaluate")
            if r.data.tags.get("nextlab.scheme", "all") != "all" and r.data.tags.get("nextlab.seed")]


def share_view(client: Any, experiment_id: str, headline: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Write the shared views; return the UI paths of the runs page, the schemes' table (headline
    metric columns, one row per evaluation run) and the schemes' compare page."""
    # The UI nests child runs only when sorting by start time; sorted by run name, the list is flat
    # and reads in stage order per model, scheme and seed. (A shared view cannot carry expanded rows.)
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(BY_NAME))
    paths = {"runs": runs_path(experiment_id)}
    runs = client.search_runs([experiment_id], max_results=5000)
    evaluated = scheme_runs(runs)
    if evaluated:
        columns = [f"metrics.`{key}`" for key in headline] + ["tags.`nextlab.scheme`", "tags.`nextlab.seed`"]
        schemes = {**BY_NAME, "searchFilter": SCHEME_FILTER, "selectedColumns": columns}
        client.set_experiment_tag(experiment_id, f"{VIEW_PREFIX}{SCHEMES_KEY}", json.dumps(schemes))
        paths["schemes"] = runs_path(experiment_id, SCHEMES_KEY)
        paths["compare_schemes"] = compare_path(experiment_id, [r.info.run_id for r in evaluated])
    return paths


def study_links(study: Any, base: str | None = None) -> list[str]:
    """Save the study's shared views and return the UI links to print (the runs, the schemes'
    table, the schemes' compare page); empty when the tracking store has no such experiment."""
    from nextlab.evaluate.summary import headline_keys
    from nextlab.tracking import _client, experiment_name, metric_name, tracking_uri

    client = _client()
    experiment = client.get_experiment_by_name(experiment_name(study))
    if experiment is None:
        return []
    uri = tracking_uri()
    base = base or (uri.rstrip("/") + "/" if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000/")
    headline = [metric_name(key) for key in headline_keys(study.evaluate.targets)]
    labels = {"runs": "every run", "schemes": "the evaluation runs, headline metrics as columns",
              "compare_schemes": "the reward schemes side by side"}
    return [f"MLflow UI, {labels[what]}: {base}{path}"
            for what, path in share_view(client, experiment.experiment_id, headline).items()]
