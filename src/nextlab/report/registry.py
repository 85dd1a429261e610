"""The registry of figures: each figure is a function from results tables to a matplotlib figure.

A figure declares what it draws from (files under `results/<study>/` and their columns), which
claim it bears on, and over which factors it is repeated (one per model, or per model and
scheme, ...). Adding a figure is one decorated function in a module of `nextlab.report.figures`:

    @figure("pretrain-loss", stage="train", claim="learning", per=("model",),
            needs=[Need(layout.PRETRAIN_CURVE, ("step", "train_loss", "val_loss"))],
            title="Loss while pretraining", caption="Cross-entropy per token ...")
    def loss(tables, model):
        curve = tables.csv(layout.PRETRAIN_CURVE.format(model=model), ("step", "train_loss", "val_loss"))
        ...
        return Drawn(fig, data=curve, findings=[...])

`plan(study)` lists the figure files a study gets (from its params alone, so a workflow can
declare them before anything runs); `check` verifies a figure's inputs before it is drawn.
"""

from __future__ import annotations

import itertools
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nextlab import layout, stages
from nextlab.report.stats import Finding

if TYPE_CHECKING:
    from nextlab.report.tables import Tables

FACTORS = ("model", "scheme", "seed", "control")


@dataclass(frozen=True)
class Need:
    """A results file (a `nextlab.layout` template) and the columns or keys a figure reads.

    The path may hold the fields of `factor_values` (`{model}`, `{scheme}`, `{seed}`, `{control}`,
    `{ndjob}`, `{variant}`); a field the figure is not repeated over is expanded over all of the
    study's values (e.g. every seed of an aggregate figure).
    """

    path: str
    columns: tuple[str, ...] = ()


@dataclass
class Drawn:
    """What a figure function returns: the figure, the tidy table it plots (written beside it
    as CSV, for DVC plots and for readers), and its findings with intervals."""

    figure: Any
    data: Any = None  # pandas.DataFrame or None
    findings: list[Finding] = field(default_factory=list)
    verdict: str | None = None  # one sentence judging the claim from the findings' intervals
    note: str | None = None  # a sentence of context that judges nothing (kept out of the summary)


@dataclass(frozen=True)
class Figure:
    name: str
    stage: str
    claim: str
    title: str
    caption: str
    per: tuple[str, ...]
    needs: tuple[Need, ...]
    make: Callable[..., Drawn]
    when: Callable[[dict[str, str]], bool] | None = None
    appendix: bool = False  # one of many per-run figures: listed after the claims, not inside them
    world: bool = False  # reads the synthetic world's facts (absent when a user corpus replaces it)


@dataclass(frozen=True)
class Instance:
    """One figure file: a figure at one value of each factor it is repeated over."""

    figure: Figure
    labels: dict[str, str]

    @property
    def stem(self) -> str:
        return "-".join([self.figure.name, *((f"seed{self.labels[f]}" if f == "seed" else self.labels[f])
                                              for f in self.figure.per)])

    @property
    def filename(self) -> str:
        return f"{self.stem}.png"

    @property
    def title(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in self.labels.items())
        return f"{self.figure.title} ({where})" if where else self.figure.title


FIGURES: dict[str, Figure] = {}


def figure(name: str, *, stage: str, claim: str, title: str, caption: str, per: tuple[str, ...] = (),
           needs: list[Need] | tuple[Need, ...] = (),
           when: Callable[[dict[str, str]], bool] | None = None,
           appendix: bool = False, world: bool = False) -> Callable[[Callable[..., Drawn]], Callable[..., Drawn]]:
    """Register the decorated function `make(tables, **labels) -> Drawn` as a figure.

    `when(labels)` keeps only some factor combinations (e.g. schemes that post-train); `appendix`
    places a per-run figure after the claims in the report document; `world` marks a figure of the
    synthetic world's facts, left out of a study whose user corpus replaces the world."""
    if stage not in stages.NAMES:
        raise ValueError(f"figure {name!r}: stage {stage!r} is not one of {stages.NAMES}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"figure {name!r}: use lower-case letters, digits and '-'")
    if unknown := set(per) - set(FACTORS):
        raise ValueError(f"figure {name!r}: per has unknown factors {sorted(unknown)}")

    def register(make: Callable[..., Drawn]) -> Callable[..., Drawn]:
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is registered twice")
        FIGURES[name] = Figure(name, stage, claim, title, caption, tuple(per), tuple(needs), make, when, appendix,
                               world)
        return make

    return register


def load_figures() -> dict[str, Figure]:
    """Import every module of `nextlab.report.figures` (each registers its figures on import).

    The package imports its modules by name; one present but not listed there is an error, since
    its figures would silently be missing and its edits would not rerun the report."""
    import nextlab.report.figures as package

    present = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
    unlisted = sorted(name for name in present if not hasattr(package, name))
    if unlisted:
        raise ImportError(f"nextlab.report.figures: module(s) {unlisted} are not imported by the package's "
                          "__init__.py; list them there")
    return FIGURES


def factor_values(study: Any) -> dict[str, list[str]]:
    """The values each factor takes in a study, from its params. `ndjob` (a path field only) is
    each nondeterminism job's folder, `<dtype>/<attention>/threads<k>`; `variant` (a path field
    only) each positional variant of the positions stage."""
    nd = getattr(study, "nondeterminism", None)
    positions = getattr(study, "positions", None)
    return {
        "model": list(study.models),
        "scheme": list(study.posttrain.schemes),
        "seed": [str(s) for s in study.posttrain.seeds],
        # schemes post-trained again through the batch-invariant kernels (posttrain.invariant_control)
        "control": list(getattr(study.posttrain, "invariant_control", ())),
        "ndjob": [layout.nd_job(d, a, t) for d in nd.dtypes for a in nd.attention for t in nd.threads] if nd else [],
        "variant": list(positions.variants) if positions is not None and positions.enabled else [],
    }


def plan(study: Any, stages: list[str] | tuple[str, ...] | None = None,
         only: list[str] | tuple[str, ...] | None = None) -> list[Instance]:
    """Every figure file of a study, in registry order; `stages`/`only` narrow it down."""
    figures = load_figures()
    if only:
        unknown = sorted(set(only) - set(figures))
        if unknown:
            from nextlab.errors import NextlabError

            raise NextlabError(f"unknown figure(s) {unknown}; known: {sorted(figures)}")
    values = factor_values(study)
    out = []
    for fig in figures.values():
        if stages is not None and fig.stage not in stages:
            continue
        if only and fig.name not in only:
            continue
        if fig.world and not study.data.synthetic:
            continue
        for combo in itertools.product(*(values[f] for f in fig.per)):
            labels = dict(zip(fig.per, combo))
            if fig.when is None or fig.when(labels):
                out.append(Instance(fig, labels))
    return out


def needed_paths(instance: Instance, study: Any) -> list[tuple[str, tuple[str, ...]]]:
    """The figure's needs with every `{field}` filled: labels first, then all study values."""
    values = factor_values(study)
    out = []
    for need in instance.figure.needs:
        free = [f for f in layout.fields(need.path) if f not in instance.labels]
        for combo in itertools.product(*(values[f] for f in free)):
            out.append((need.path.format(**instance.labels, **dict(zip(free, combo))), need.columns))
    return out


def check(instance: Instance, tables: "Tables", study: Any) -> None:
    """Raise `MissingInput` for the first needed file or column that is absent."""
    for path, columns in needed_paths(instance, study):
        tables.read(path, columns)
