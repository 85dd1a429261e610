"""The library's subpackages follow the data flow with no back edges (docs/architecture.md): a stage
imports only the ones before it, so each can be used and tested without the later ones."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nextlab"
# Rank in the data flow; packages of equal rank must not import each other either.
LAYERS = {
    "config": 0, "data": 1, "tokenizer": 2, "model": 3, "generate": 3, "train": 4, "qa": 5,
    "posttrain": 6, "evaluate": 7, "nondeterminism": 7, "agent": 7, "mechanisms": 8, "positions": 8, "report": 9,
}
# Beside the flow, usable by any layer: errors, io, provenance, tracking. The CLI sits on top.
BESIDE = {"errors", "io", "progress", "provenance", "tracking", "__init__", "__main__"}


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
