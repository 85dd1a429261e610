"""The library's subpackages follow the data flow with no back edges (docs/architecture.md): a stage
imports only the ones before it, so each can be used and tested without the later ones."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nextlab"
# Rank in the data flow; packages of equal rank must not import each other either.
LAYERS = {
    "config": 0, "data": 1, "tokenizer": 2, "model": 3, "generate": 3, "qa": 4, "train": 5,
    "posttrain": 6, "evaluate": 7, "nondeterminism": 7, "agent": 7, "mechanisms": 8, "positions": 8, "report": 9,
}
# Beside the flow, usable by any layer: errors, io, provenance, tracking, the results' layout and
# the list of stages. The CLI sits on top.
BESIDE = {"errors", "io", "layout", "progress", "provenance", "stages", "tracking", "__init__", "__main__"}


def _package_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nextlab."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "nextlab":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("nextlab."))
    return found


def test_no_subpackage_imports_a_later_one():
    back_edges = []
    for path in sorted(SRC.rglob("*.py")):
        package = _package_of(path)
        if package not in LAYERS:
            continue
        for other in _imported_packages(path) - {package} - BESIDE:
            if other == "cli" or other not in LAYERS or LAYERS[other] >= LAYERS[package]:
                back_edges.append(f"{path.relative_to(SRC)} imports nextlab.{other}")
    assert not back_edges, "\n".join(back_edges)


def test_every_subpackage_has_a_place():
    packages = {_package_of(p) for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert packages <= set(LAYERS) | BESIDE | {"cli"}, packages - set(LAYERS) - BESIDE


# ---- the stage list (nextlab.stages) is the one the CLI, the workflow and the report use ----------

ROOT = SRC.parents[1]


def test_every_stage_is_a_subcommand_and_a_rule_file():
    from nextlab.cli import SUBCOMMANDS
    from nextlab.stages import NAMES

    assert SUBCOMMANDS[: len(NAMES)] == list(NAMES)
    assert all((SRC / "cli" / f"{stage}.py").is_file() for stage in NAMES)
    rule_files = {p.stem for p in (ROOT / "workflow" / "rules").glob("*.smk")} - {"common"}
    assert set(NAMES) <= rule_files
    # every other rule file is a stage's helpers, named after it
    assert all(any(f.startswith(f"{stage}_") for stage in NAMES) for f in rule_files - set(NAMES)), rule_files


def test_the_snakefile_includes_every_stage_in_order():
    """One `include:` per stage, in the stage list's order; a stage a study can leave out is
    included under `if "<stage>" in STAGES:`, every other one unconditionally."""
    import re

    from nextlab.stages import STAGES

    lines = (ROOT / "Snakefile").read_text().splitlines()
    included = []
    for i, line in enumerate(lines):
        m = re.fullmatch(r"(\s*)include: \"workflow/rules/(\w+)\.smk\"", line)
        if m and m.group(2) != "common":
            condition = lines[i - 1].strip() if m.group(1) else None
            included.append((m.group(2), condition))
    expected = [(s.name, f'if "{s.name}" in STAGES:' if s.world or s.switched else None) for s in STAGES]
    assert included == expected


def test_a_figure_belongs_to_a_known_stage():
    import pytest

    from nextlab.report.registry import figure, load_figures
    from nextlab.stages import NAMES

    assert {f.stage for f in load_figures().values()} <= set(NAMES)
    with pytest.raises(ValueError, match="not one of"):
        figure("x", stage="nowhere", claim="learning", title="x", caption="x")


def test_result_paths_are_spelled_only_in_the_layout():
    """The rules and the report name a results folder through `nextlab.layout`, never as a literal."""
    import re

    from nextlab import layout

    tops = {layout.top(v) for k, v in vars(layout).items() if k.isupper() and "/" in v}
    literal = re.compile(r"""f?["'](?:\{RESULTS\}/)?(?:%s)/""" % "|".join(sorted(tops)))
    files = [*(ROOT / "workflow" / "rules").glob("*.smk"), *(SRC / "report").rglob("*.py")]
    spelled = [f"{p.relative_to(ROOT)}:{i}" for p in files
               for i, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert tops >= {"data", "models", "evaluate", "agent"} and not spelled, spelled
