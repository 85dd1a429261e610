"""Run the study's Snakemake DAG, first clearing a lock that a killed Snakemake left behind.

    python workflow/scripts/study.py --config params=params/default.yaml [snakemake args...]

After `kill -9` (or a power cut) Snakemake's lock stays in .snakemake/locks and every later run
refuses to start until `snakemake --unlock`. Here a lock is stale when no Snakemake process is
alive in this folder: it is removed with a message and the study resumes (`--rerun-incomplete`
reruns the job that was cut off; the invocation's MLflow runs are marked KILLED and continued
by the Snakefile's onstart). A live Snakemake in the same folder is an error naming its pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROFILE = ["--profile", "workflow/profiles/default"]


def live_snakemakes(folder: Path) -> list[int]:
    """Pids of Snakemake processes (other than this one's children) working in `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if any(Path(arg.decode(errors="replace")).name == "snakemake" for arg in argv[:2]) and cwd == folder:
            found.append(int(proc.name))
    return found


def main(argv: list[str]) -> int:
    folder = Path.cwd().resolve()
    locks = folder / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        alive = live_snakemakes(folder)
        if alive:
            print(f"nextlab: another Snakemake (pid {', '.join(map(str, alive))}) is running in {folder}; "
                  "wait for it or stop it", file=sys.stderr)
            return 1
        print("nextlab: found the lock of a Snakemake that is no longer running (killed?): unlocking and "
              "resuming", file=sys.stderr)
        subprocess.run(["snakemake", *PROFILE, *argv, "--unlock"], check=True, stdout=subprocess.DEVNULL)
    return subprocess.call(["snakemake", *PROFILE, *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
