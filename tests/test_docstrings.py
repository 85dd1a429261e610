"""Every worked example in the library's docstrings runs, and shows what it says (minbpe style):
the `>>>` lines of every `nextlab` module are executed as doctests."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import nextlab

MODULES = sorted(m.name for m in pkgutil.walk_packages(nextlab.__path__, "nextlab.") if m.name != "nextlab.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_worked_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"


def test_the_examples_cover_the_library():
    """Most modules carry a worked example; the count guards against the examples silently going away."""
    finder = doctest.DocTestFinder()
    with_examples = [name for name in MODULES
                     if any(t.examples for t in finder.find(importlib.import_module(name)))]
    assert len(with_examples) >= 50, with_examples
