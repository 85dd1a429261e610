"""Make `dvc repro study@<name>` know a study: check params/<name>.yaml exists, add the name to
params/studies.yaml (the list dvc.yaml's stage loops over) if it is not there yet.

    python workflow/scripts/register_study.py mine
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

LIST = Path("params/studies.yaml")


def main(name: str) -> int:
    if not Path(f"params/{name}.yaml").is_file():
        print(f"nextlab: params/{name}.yaml not found: a study is one params file (see params/default.yaml)",
              file=sys.stderr)
        return 2
    studies = yaml.safe_load(LIST.read_text())["studies"]
    if name not in studies:
        with LIST.open("a") as f:
            f.write(f"  - {name}\n")
        print(f"nextlab: added study {name!r} to {LIST} (commit it with params/{name}.yaml)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
