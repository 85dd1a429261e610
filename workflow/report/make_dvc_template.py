"""Write workflow/report/dvc-plots.html: DVC's plots page with vega, vega-lite and vega-embed
inlined, so `dvc plots show/diff --html-template workflow/report/dvc-plots.html` renders offline.

DVC's default page loads these three scripts from a CDN. Its renderer puts the CDN <script> tags
in the template's `{scripts}` placeholder; this template has no such placeholder, so the tags are
dropped and the inlined copies serve instead. The versions are the ones dvc-render 1.0 targets
(vega-lite 5.2.0, which wants vega >= 5.21), all BSD-3-Clause.

The file is committed; rebuild it only to change versions (needs the npm registry once):
    python workflow/report/make_dvc_template.py
or from already unpacked packages:
    python workflow/report/make_dvc_template.py --from DIR   # DIR/<pkg>/build/<pkg>.min.js
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": "5.21.0", "vega-lite": "5.2.0", "vega-embed": "6.20.8"}
OUT = Path(__file__).with_name("dvc-plots.html")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>nextlab: DVC plots</title>
    <!-- Inlined for offline use: {versions} (BSD-3-Clause, https://vega.github.io). -->
{scripts}
    <style>
        body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fetch(dest: Path) -> Path:
    """`npm pack` each pinned package into dest and unpack it to dest/<pkg>/."""
    for name, version in PACKAGES.items():
        tgz = subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=dest, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(dest / tgz) as tar:
            tar.extractall(dest / name, filter="data")
    return dest


def minified(root: Path, name: str) -> str:
    for candidate in (root / name / "package" / "build" / f"{name}.min.js", root / name / "build" / f"{name}.min.js"):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
            # The page is filled by str.replace of these three names, and must not end a script early.
            for bad in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
                if bad in text:
                    raise SystemExit(f"{candidate}: contains {bad!r}; cannot inline it safely")
            return text
    raise SystemExit(f"{name}.min.js not found under {root / name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src", type=Path, help="folder with unpacked npm packages")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.src or fetch(Path(tmp))
        scripts = "\n".join(f'    <script type="text/javascript">\n{minified(root, name)}\n    </script>'
                            for name in PACKAGES)
    versions = ", ".join(f"{n} {v}" for n, v in PACKAGES.items())
    args.out.write_text(PAGE.format(versions=versions, scripts=scripts), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB: {versions})")


if __name__ == "__main__":
    main()
