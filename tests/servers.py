"""Real servers for the tests, started on 127.0.0.1 and torn down after: an MLflow tracking server
(over any backend store) and a throwaway PostgreSQL cluster from Debian's `postgresql` package."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import tool_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not answer {url}/health:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (a server and its workers, nothing else), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_mlflow_server(backend_uri: str, cwd: Path, log: Path, artifacts: Path | None = None,
                        port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on a free port; with `artifacts`, the server stores artifacts there and proxies
    them (clients need no access to the folder). Returns the process and its URL once healthy."""
    port = port or free_port()
    cmd = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", backend_uri]
    if artifacts is not None:
        cmd += ["--artifacts-destination", str(artifacts)]
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=tool_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
    except Exception:
        stop(proc)
        raise
    return proc, url


@contextmanager
def mlflow_server(backend_uri: str, cwd: Path, log: Path, artifacts: Path | None = None) -> Iterator[str]:
    proc, url = start_mlflow_server(backend_uri, cwd, log, artifacts)
    try:
        yield url
    finally:
        stop(proc)


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian keeps them versioned)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_cluster() -> Iterator[dict[str, object]]:
    """A PostgreSQL cluster of its own in a fresh temporary folder (trust auth for user `nextlab`,
    loopback only), removed after. PostgreSQL refuses to run as root, so as root it runs as the
    package's `postgres` user, in a folder that user can reach (pytest's are private to root)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="nextlab-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_owner, *cmd], check=True, capture_output=True, text=True, cwd=root)

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "nextlab", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    try:
        yield {"port": port, "bin": bin_dir, "createdb": lambda name: run(
            str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "nextlab", name),
            "url": lambda name: f"postgresql://nextlab@127.0.0.1:{port}/{name}"}
    finally:
        subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)
