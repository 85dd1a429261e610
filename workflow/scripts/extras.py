"""Print the pinned requirements of one optional-dependency group of pyproject.toml (for pip).

    python workflow/scripts/extras.py scaleout
"""

import sys
import tomllib
from pathlib import Path

groups = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
print(" ".join(groups["optional-dependencies"][sys.argv[1]]))
