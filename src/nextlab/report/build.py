"""Build every figure and the report of a study from its results tables alone.

    build_report(study, results="results/smoke", out="reports/smoke")

writes, for each planned figure, `<out>/figures/<stem>.png` and a caption `<stem>.rst` (what the
Snakemake report shows beside it), the figure's tidy data as
`<data_out>/plots/<figure>/<stem>.csv` (flat files DVC plots read; `data_out` defaults to
`<results>/report`, inside the study's DVC-versioned results so `dvc plots diff` can compare
commits), the findings as flat `<data_out>/findings.json`, and the report as `<out>/report.md`
and a self-contained `<out>/report.html`. No model is loaded: editing a figure's code and
rebuilding takes seconds.

A figure whose input file or column is missing becomes an image saying so (the others still
build); a study with no results at all is an error naming what is missing and how to make it.
"""

from __future__ import annotations

import logging
import math
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nextlab import layout
from nextlab.errors import NextlabError
from nextlab.io import atomic_path, write_json, write_text
from nextlab.report import document
from nextlab.report.claims import CLAIMS
from nextlab.report.registry import Drawn, Instance, check, load_figures, needed_paths, plan
from nextlab.report.stats import Finding
from nextlab.report.style import placeholder, save, style
from nextlab.report.tables import MissingInput, Tables

log = logging.getLogger(__name__)


@dataclass
class FigureResult:
    instance: Instance
    png: Path
    csv: Path | None = None
    status: str = "ok"  # ok | missing (an input is absent) | failed (the figure code raised)
    problem: str | None = None
    findings: list[Finding] = field(default_factory=list)
    verdict: str | None = None
    note: str | None = None
    seconds: float = 0.0


@dataclass
class ReportResult:
    figures: list[FigureResult]
    markdown: Path
    html: Path
    findings: Path
    seconds: float

    @property
    def failed(self) -> list[FigureResult]:
        return [f for f in self.figures if f.status == "failed"]


# A finding whose key starts so is a measured time (a speed, a cost ratio): the report shows it,
# findings.json leaves it out, timing.json holds it (MLflow: under `time/`).
TIMING_PREFIX = "time."


def _require_some_results(instances: list[Instance], tables: Tables, study: Any, params_file: str) -> None:
    """A study with none of the planned figures' inputs is an error, before any drawing."""
    missing: list[str] = []
    for inst in instances:
        paths = [p for p, _ in needed_paths(inst, study)]
        absent = [p for p in paths if not tables.exists(p)]
        if not absent:
            return
        missing += [str(tables.path(p)) for p in absent if str(tables.path(p)) not in missing]
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    raise NextlabError(
        f"{tables.results}: no results to report on (missing {shown}); make them with "
        f"`snakemake --cores 2 --config params={params_file}` (or `make study STUDY={study.study}`), "
        "then run `nextlab report` again"
    )


# The dozen numbers a reader compares across runs (`dvc exp show`, `dvc metrics diff`): the rest
# of the findings stay in findings.json. Patterns over finding keys, so every model counts.
HEADLINE = [re.compile(p) for p in (
    r"^data\.singleton_rate$",
    r"^pretrain\.[^.]+\.val_loss_end$",
    r"^pretrain\.[^.]+\.qa_acc_k(1|16)$",
    r"^evaluate\.[^.]+\.(none|binary)\.hallucination$",
    r"^evaluate\.[^.]+\.penalized-(0\.5|0\.75|0\.9)\.score_t\1$",
    r"^evaluate\.[^.]+\.penalized-(0\.5|0\.75|0\.9)\.share_threshold_cand$",
    r"^evaluate\.[^.]+\.calibrated\.(stated_)?(auroc|ece)$",
    r"^nondeterminism\.[^.]+\.(float32|bfloat16)\..*\.default\.differ_b\d+$",
)]


def headline(findings: dict[str, float]) -> dict[str, float]:
    """The findings whose keys match `HEADLINE`, rounded to 4 significant digits.

    >>> headline({"data.singleton_rate": 0.25004, "data.facts_seen": 1200})
    {'data.singleton_rate': 0.25}
    """
    return {k: float(f"{v:.4g}") for k, v in findings.items() if any(p.match(k) for p in HEADLINE)}


def _rst(text: str) -> str:
    """Our inline marks in reStructuredText: `code` -> ``code``."""
    return document._CODE.sub(r"``\1``", text)


def _lead(result: FigureResult) -> str:
    """The sentence a figure's findings open with: its verdict, then its note (context such as
    the power of the design), either alone where the figure has only one."""
    return " ".join(text for text in (result.verdict, result.note) if text)


def _caption_rst(result: FigureResult, claim_title: str) -> str:
    fig = result.instance.figure
    lines = [f"**{result.instance.title}.** {_rst(fig.caption)}", ""]
    if result.status != "ok":
        lines += [f"**Not available:** {_rst(result.problem or '')}".replace("\n", " "), ""]
    else:
        lines += [f"Claim: *{claim_title}*. {_rst(_lead(result))}", ""]
        lines += [f"- {_rst(f.text())}" for f in result.findings]
    return "\n".join(lines).rstrip() + "\n"


def draw_one(inst: Instance, tables: Tables, study: Any, figures_dir: Path, plots_dir: Path) -> FigureResult:
    """Draw one figure (or its placeholder) and write its PNG and data table."""
    start = time.perf_counter()
    png = figures_dir / inst.filename
    csv = plots_dir / inst.figure.name / f"{inst.stem}.csv"
    result = FigureResult(inst, png)
    try:
        check(inst, tables, study)
        with style():
            drawn: Drawn = inst.figure.make(tables, **inst.labels)
            if callable(drawn.figure):  # a stage's own function that writes the file itself
                drawn.figure(png)
            else:
                save(drawn.figure, png)
        if drawn.data is not None:
            with atomic_path(csv) as tmp:
                drawn.data.to_csv(tmp, index=False, float_format="%.6g", na_rep="NaN")
            result.csv = csv
        result.findings, result.verdict, result.note = drawn.findings, drawn.verdict, drawn.note
    except MissingInput as err:
        result.status, result.problem = "missing", str(err)
    except Exception as err:  # a bug or a malformed table: report it in place of the figure
        log.error("figure %s failed:\n%s", inst.stem, traceback.format_exc())
        result.status, result.problem = "failed", f"{type(err).__name__}: {err}"
    if result.status != "ok":
        placeholder(inst.title, result.problem or "", png)
        csv.unlink(missing_ok=True)  # never leave a stale table beside a placeholder
        log.warning("figure %s not available: %s", inst.stem, result.problem)
    result.seconds = time.perf_counter() - start
    return result


def _summary_rows(results: list[FigureResult]) -> list[list[str]]:
    rows = []
    for claim in CLAIMS:
        mine = [r for r in results if r.instance.figure.claim == claim.id]
        verdicts = []
        for r in mine:
            if r.status == "ok" and r.verdict:
                where = ", ".join(f"{k} {v}" for k, v in r.instance.labels.items())
                verdicts.append(f"{r.verdict} ({where})" if where else r.verdict)
        if verdicts:
            status = " ".join(verdicts)
        elif mine and all(r.status != "ok" for r in mine):
            status = "Not measured yet: inputs missing (see its section)."
        elif mine:
            status = "Measured; see its section."
        else:
            status = f"Not in this report yet: no figure reads the `{claim.stage}` stage's results."
        rows.append([claim.title, status])
    return rows


def _stats_table(tables: Tables, relative: str) -> list[list[str]] | None:
    if not tables.exists(relative):
        return None
    try:
        data = tables.json(relative)
    except MissingInput:
        return None
    rows = []
    for key, value in sorted(data.items()):
        if isinstance(value, float):
            value = f"{value:.4g}"
        rows.append([f"`{key}`", str(value)])
    return rows


def _document(study: Any, results: list[FigureResult], tables: Tables, params_file: str,
              logs: Path | None) -> list[tuple]:
    from nextlab.report.card import environment, stage_times

    ok = sum(r.status == "ok" for r in results)
    blocks: list[tuple] = [
        ("h1", f"nextlab report: study `{study.study}`"),
        ("p", f"Every number and figure below is computed from the tables in `{tables.results}`; no model "
              f"is loaded. {ok} of {len(results)} figures were drawn. Regenerate with "
              f"`nextlab report --params {params_file}` or `make report STUDY={study.study}`."),
        ("h2", "Where and how it ran"),
        ("table", ["", ""], [[what, value] for what, value in environment(study, tables.results)]),
    ]
    times = stage_times(logs / "benchmarks") if logs is not None else []
    if times:
        blocks += [("p", "Seconds per stage, from Snakemake's benchmark files (jobs run side by side, so summed "
                         "seconds exceed the wall time; the report's own job is not finished when it writes this):"),
                   ("table", ["stage", "jobs", "summed s", "longest job s", "peak RSS MB"],
                    [[t["rule"], str(t["jobs"]), f"{t['seconds']:.1f}", f"{t['longest']:.1f}",
                      f"{t['max_rss_mb']:.0f}"] for t in times])]
    blocks += [("h2", "Findings"), ("table", ["claim", "finding"], _summary_rows(results))]
    number = 0

    def figure_blocks(r: FigureResult) -> list[tuple]:
        nonlocal number
        number += 1
        where = ", ".join(f"{k} `{v}`" for k, v in r.instance.labels.items())
        lead = f"**Finding{' (' + where + ')' if where else ''}.** "
        out: list[tuple] = []
        if r.status == "ok":
            out.append(("p", lead + _lead(r)))
            if r.findings:
                out.append(("list", [f.text() for f in r.findings]))
        else:
            kind = "Not measured yet" if r.status == "missing" else "The figure failed"
            out.append(("p", lead + f"{kind}: `{r.problem}`"))
        out.append(("figure", number, r.png, f"{r.png.parent.name}/{r.png.name}", r.instance.title,
                    r.instance.figure.caption))
        return out

    for claim in CLAIMS:
        blocks += [("h2", claim.title), ("p", f"**Claim.** {claim.statement}"),
                   ("p", f"**Experiment.** {claim.experiment}")]
        mine = [r for r in results if r.instance.figure.claim == claim.id and not r.instance.figure.appendix]
        runs = [r for r in results if r.instance.figure.claim == claim.id and r.instance.figure.appendix]
        if not mine and not runs:
            blocks.append(("p", f"**Finding.** Not in this report yet: no figure reads the `{claim.stage}` "
                                "stage's results."))
        for r in mine:
            blocks += figure_blocks(r)
        if runs:
            blocks.append(("p", f"Per-run figures for this claim: {len(runs)} in the appendix."))

    appendix = [r for r in results if r.instance.figure.appendix]
    if appendix:
        blocks.append(("h2", "Appendix: per-run figures"))
        for r in appendix:
            blocks += figure_blocks(r)

    blocks.append(("h2", "Setup"))
    for relative, what in ((layout.DATA_STATS, "The synthetic world"), (layout.TOKENIZER_STATS, "The tokenizer")):
        rows = _stats_table(tables, relative)
        if rows:
            blocks += [("h3", f"{what} (`{relative}`)"), ("table", ["metric", "value"], rows)]
    for model in study.models:
        metrics = layout.PRETRAIN_METRICS.format(model=model)
        rows = _stats_table(tables, metrics)
        if rows:
            blocks += [("h3", f"Pretraining of `{model}` (`{metrics}`)"),
                       ("table", ["metric", "value"], rows)]

    blocks += [("h2", "Figure files"),
               ("table", ["figure", "stage", "status", "data"],
                [[f"`{r.png.name}`", r.instance.figure.stage, r.status,
                  f"`{r.csv}`" if r.csv else "—"] for r in results])]
    return blocks


def build_report(
    study: Any,
    results: str | Path,
    out: str | Path,
    data_out: str | Path | None = None,
    params_file: str | Path | None = None,
    stages: list[str] | None = None,
    only: list[str] | None = None,
    logs: str | Path | None = None,
) -> ReportResult:
    """Draw the planned figures and write report.md, report.html, findings.json and headline.json
    (see module doc); `logs`: the study's logs folder, for the per-stage time table."""
    start = time.perf_counter()
    results, out = Path(results), Path(out)
    data_out = Path(data_out) if data_out is not None else out
    params_file = str(params_file or Path("params") / f"{study.study}.yaml")
    tables = Tables(results, params_file, study)
    load_figures()
    instances = plan(study, stages, only)
    if not instances:
        raise NextlabError(f"no figure to draw for stages {stages} and figures {only}")
    _require_some_results(instances, tables, study, params_file)

    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    drawn = [draw_one(inst, tables, study, figures_dir, data_out / "plots") for inst in instances]
    titles = {c.id: c.title for c in CLAIMS}
    for r in drawn:
        write_text(figures_dir / f"{r.instance.stem}.rst", _caption_rst(r, titles.get(r.instance.figure.claim, "")))

    if only:  # a quick redraw of some figures leaves the documents and findings of the full build alone
        return ReportResult(drawn, out / "report.md", out / "report.html", data_out / "findings.json",
                            time.perf_counter() - start)
    # Every figure's table folder exists, empty where the study has nothing to draw (no trained
    # scheme, no synthetic world): DVC's `plots:` name them all for every study.
    for name in load_figures():
        (data_out / "plots" / name).mkdir(parents=True, exist_ok=True)
    findings: dict[str, float] = {}
    timings: dict[str, float] = {}  # findings that are measured times (keys `time.*`): they differ run to run
    for r in drawn:
        for f in r.findings:
            for k, v in f.metrics().items():
                if v is not None and math.isfinite(v):
                    if k.startswith(TIMING_PREFIX):
                        timings[k.removeprefix(TIMING_PREFIX)] = v
                    else:
                        findings[k] = v
    findings["report.figures"] = len(drawn)
    findings["report.figures_drawn"] = sum(r.status == "ok" for r in drawn)
    findings_path = data_out / "findings.json"
    write_json(findings_path, findings)
    write_json(data_out / "headline.json", headline(findings))
    # apart from the findings, so that two runs of a study give the same findings.json
    write_json(data_out / "timing.json", timings)

    blocks = _document(study, drawn, tables, params_file, Path(logs) if logs is not None else None)
    write_text(out / "report.md", document.to_markdown(blocks))
    write_text(out / "report.html", document.to_html(blocks, f"nextlab report: {study.study}"))
    return ReportResult(drawn, out / "report.md", out / "report.html", findings_path, time.perf_counter() - start)
