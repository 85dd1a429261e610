"""What every result records about where it came from: the code that made it, the params, the data.

The code is named three ways: the package version, the git commit (with a separate dirty flag),
and `code_hash`, a hash of the source of exactly the `nextlab` modules a stage runs. The workflow
gives each rule the same hash as a param, so editing a module reruns the jobs whose stage imports
it and no other.

Which modules a stage runs is computed from the source, not listed by hand: `stage_modules`
follows every `import` of the stage's CLI module, inside functions too (the CLI imports lazily),
transitively, plus the package `__init__` files those imports execute::

    >>> "nextlab.qa.metrics" in stage_modules("evaluate")
    True
    >>> "nextlab.qa.metrics" in stage_modules("train")
    False
"""

from __future__ import annotations

import ast
import functools
import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any

from nextlab import __version__
from nextlab.io import read_json, sha256_json

PACKAGE_DIR = Path(__file__).resolve().parent
_entry_stage: str | None = None


# ---- the code a stage runs ----------------------------------------------------------------------

def _module_file(module: str) -> Path | None:
    """The source file of a `nextlab.*` module (a package's `__init__.py`), or None."""
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.Module, deep: bool) -> list[ast.AST]:
    """Import statements that can run: all of them (`deep`), or those run when the module is
    imported (not inside functions). Never those under `if TYPE_CHECKING:`."""
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if not deep and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _resolve(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> set[str]:
    """The `nextlab` modules an import statement loads (a package's submodule named in a
    `from ... import` counts when it is a module file)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name.split(".")[0] == "nextlab"}
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    if base.split(".")[0] != "nextlab":
        return set()
    out = {base}
    for alias in node.names:
        if _module_file(f"{base}.{alias.name}") is not None:
            out.add(f"{base}.{alias.name}")
    return out


def _with_parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _closure(roots: set[str], deep: bool) -> set[str]:
    seen: set[str] = set()
    todo = set().union(*(_with_parents(r) for r in roots)) if roots else set()
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _import_nodes(tree, deep):
            for found in _resolve(node, module, path.name == "__init__.py"):
                todo |= _with_parents(found) - seen
    return seen


@functools.cache
def stage_modules(stage: str) -> frozenset[str]:
    """Every `nextlab` module the `nextlab <stage>` command can run.

    The stage's own CLI module with everything it imports anywhere, the CLI's entry point, and
    what the other subcommands import at module level (the parser imports them all)."""
    entry = f"nextlab.cli.{stage}"
    if _module_file(entry) is None:
        raise ValueError(f"no CLI module {entry}")
    others = {f"nextlab.cli.{p.stem}" for p in (PACKAGE_DIR / "cli").glob("*.py") if p.stem != "__init__"}
    top_level = set()
    for other in others - {entry}:
        tree = ast.parse(_module_file(other).read_text(encoding="utf-8"))
        for node in _import_nodes(tree, deep=False):
            top_level |= _resolve(node, other, False)
    return frozenset(_closure({entry, "nextlab.cli", "nextlab.__main__"}, deep=True)
                     | _closure(top_level, deep=False))


def stage_sources(stage: str) -> list[Path]:
    """The source files of `stage_modules(stage)`, sorted."""
    return sorted(_module_file(m) for m in stage_modules(stage))


@functools.cache
def code_hash(stage: str) -> str:
    """A short hash of the stage's source files (their paths inside the package and contents)."""
    digest = hashlib.sha256()
    for path in stage_sources(stage):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def set_entry_stage(stage: str) -> None:
    """Name the stage this process runs (the CLI does), so provenance can hash its code."""
    global _entry_stage
    _entry_stage = stage


def running_code_hash() -> str | None:
    """`code_hash` of the stage this process runs; None when the library is used directly."""
    return code_hash(_entry_stage) if _entry_stage else None


# ---- git ---------------------------------------------------------------------------------------

@functools.cache
def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the project being run: the working directory's repository, else the
    one holding this package; ("unknown", None) outside git. Dirty = tracked files changed."""
    for where in (Path.cwd(), PACKAGE_DIR):
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                    check=True, timeout=10).stdout.strip()
            # reports/ holds outputs (the committed report is refreshed by every study): not code
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)reports"], cwd=where,
                                    capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        return commit, bool(status)
    return "unknown", None


def git_commit() -> str:
    return git_state()[0]


def git_dirty() -> bool | None:
    return git_state()[1]


# ---- the block beside every result --------------------------------------------------------------

def params_hash(params: Any) -> str:
    """A short hash of (a section of) the params, as plain data."""
    if hasattr(params, "model_dump"):
        params = params.model_dump(mode="json")
    return sha256_json(params)[:16]


def provenance(params: Any, seed: int | None = None, data_hash: str | None = None) -> dict[str, Any]:
    """The block stored beside every result (`provenance.json`)."""
    commit, dirty = git_state()
    return {
        "nextlab_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "code_hash": running_code_hash(),
        "stage": _entry_stage,
        "params_hash": params_hash(params),
        "seed": seed,
        "data_hash": data_hash,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def data_hash_of(data_dir: str | Path, required: bool = True) -> str | None:
    """The data stage's hash (from its `stats.json`), which every later run carries as a tag.

    A missing or unreadable file is an error naming it, unless `required` is false (then None).
    """
    stats = Path(data_dir) / "stats.json"
    if not required and not stats.is_file():
        return None
    return read_json(stats).get("data_hash")
