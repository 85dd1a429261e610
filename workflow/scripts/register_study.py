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
    declared = (yaml.safe_load(Path(f"params/{name}.yaml").read_text()) or {}).get("study", "default")
    if declared != name:
        print(f"nextlab: params/{name}.yaml: study: {declared!r} must be {name!r}, the file's name "
              f"(DVC's stage study@{name} expects its results in results/{name})", file=sys.stderr)
        return 2
    text = LIST.read_text()
    studies = list(yaml.safe_load(text).get("studies") or [])
    if name not in studies:
        studies.append(name)
        # Rewrite only the list: the file's comments stay.
        head = text[: text.index("studies:")]
        LIST.write_text(head + "studies:\n" + "".join(f"  - {s}\n" for s in studies))
        print(f"nextlab: added study {name!r} to {LIST} (commit it with params/{name}.yaml and dvc.lock)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
