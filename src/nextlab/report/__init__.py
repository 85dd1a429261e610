"""The report: every figure and the report document, from the results tables alone.

    from nextlab.report import build_report
    build_report(study, results="results/default", out="reports/default")

`registry` holds the figures (one decorated function each, in `figures/<stage>.py`), `claims` the
claims the lab tests, `tables` the checked reading of results files, `stats` the intervals,
`style` the one matplotlib look, `document` the Markdown/HTML rendering, `build` the whole.
"""

__all__ = ["FigureResult", "ReportResult", "build_report"]


def __getattr__(name: str):
    # Lazy, so that planning figures (the workflow does it at parse time) imports no matplotlib.
    if name in __all__:
        from nextlab.report import build

        return getattr(build, name)
    raise AttributeError(name)
