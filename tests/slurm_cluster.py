"""A one-node SLURM cluster on this machine, for the scale-out tests: Debian's `slurmctld`, `slurmd`,
`slurmdbd` (accounting, so `sacct` sees every job) on a MariaDB of its own, and `munge`, all
started here from a configuration written into a temporary folder and stopped after. Needs root
(the daemons run as root on this test node) and the packages `make test-scaleout` installs.

    with slurm_cluster() as cluster:          # {"env": {"SLURM_CONF": ...}, "partition": ..., ...}
        subprocess.run(["sinfo"], env=cluster["env"])
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTITION = "nextlab"
ACCOUNT = "nextlab"
CLUSTER = "nextlab"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sacctmgr")


def missing() -> list[str]:
    """What this machine lacks to run the cluster."""
    lacking = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if os.geteuid() != 0:
        lacking.append("root")
    return lacking


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, seconds: float = 60, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"SLURM test cluster: {what} did not come up in {seconds:.0f} s\n{tail}")
        time.sleep(0.3)


def _ok(cmd: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(cmd, env=env, capture_output=True).returncode == 0


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return int(total_kb / 1024 * 0.8)


@contextmanager
def slurm_cluster() -> Iterator[dict[str, object]]:
    root = Path(tempfile.mkdtemp(prefix="nextlab-slurm-"))
    os.chmod(root, 0o755)
    host = socket.gethostname().split(".")[0]
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    procs: list[subprocess.Popen] = []
    munge_pid: Path | None = None
    logs = root / "logs"
    logs.mkdir()
    try:
        # munge at its standard socket (SLURM's clients look there): reuse a running one.
        if not _ok(["bash", "-c", "munge -n | unmunge"], env):
            run_dir = Path("/run/munge")
            run_dir.mkdir(exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, capture_output=True)
            munge_pid = run_dir / "munged.pid"
            _wait("munged", lambda: _ok(["bash", "-c", "munge -n | unmunge"], env))

        # MariaDB for slurmdbd, on its own socket and port.
        db_dir, db_port = root / "mysql", _free_port()
        db_socket = root / "mysql.sock"
        subprocess.run(["mariadb-install-db", f"--datadir={db_dir}", "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=socket"], check=True, capture_output=True)
        procs.append(subprocess.Popen(
            ["mariadbd", f"--datadir={db_dir}", f"--socket={db_socket}", f"--port={db_port}", "--user=root",
             "--bind-address=127.0.0.1", f"--pid-file={root / 'mysql.pid'}", f"--log-error={logs / 'mysql.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait("MariaDB", lambda: _ok(["mariadb", f"--socket={db_socket}", "-e", "select 1"], env), log=logs / "mysql.log")
        subprocess.run(["mariadb", f"--socket={db_socket}", "-e",
                        "CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm'; "
                        "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
                        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; "
                        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"], check=True, capture_output=True)

        ports = {name: _free_port() for name in ("dbd", "ctld", "d")}
        common = ["AuthType=auth/munge"]
        dbd_conf = root / "slurmdbd.conf"  # read from beside $SLURM_CONF
        dbd_conf.write_text("\n".join([
            *common, "DbdHost=localhost", f"DbdPort={ports['dbd']}", "SlurmUser=root",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={db_port}",
            "StorageUser=slurm", "StoragePass=slurm", "StorageLoc=slurm_acct_db",
            f"LogFile={logs / 'slurmdbd.log'}", f"PidFile={root / 'slurmdbd.pid'}", ""]))
        dbd_conf.chmod(0o600)
        (root / "slurm.conf").write_text("\n".join([
            f"ClusterName={CLUSTER}", f"SlurmctldHost={host}", "SlurmUser=root", *common,
            f"SlurmctldPort={ports['ctld']}", f"SlurmdPort={ports['d']}",
            f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={logs / 'slurmctld.log'}", f"SlurmdLogFile={logs / 'slurmd.log'}",
            # Configless: slurmd fetches this file from slurmctld and caches it where the commands
            # inside a job look (/run/slurm/conf), since the executor plugin drops SLURM_CONF there.
            "SlurmctldParameters=enable_configless", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory", "ReturnToService=2",
            "SchedulerType=sched/backfill", "JobAcctGatherType=jobacct_gather/linux",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=localhost",
            f"AccountingStoragePort={ports['dbd']}", "AccountingStorageEnforce=associations",
            "AccountingStoreFlags=job_comment", "MinJobAge=600", "SlurmdTimeout=60", "InactiveLimit=0", "KillWait=5",
            f"NodeName={host} CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
        for folder in ("state", "spool"):
            (root / folder).mkdir()

        procs.append(subprocess.Popen(["slurmdbd", "-D"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        _wait("slurmdbd", lambda: _ok(["sacctmgr", "-n", "list", "cluster"], env), log=logs / "slurmdbd.log")
        for cmd in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, f"Cluster={CLUSTER}"],
                    ["add", "user", "root", f"Account={ACCOUNT}", f"Cluster={CLUSTER}"]):
            subprocess.run(["sacctmgr", "-i", *cmd], env=env, check=True, capture_output=True)
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        _wait("slurmctld", lambda: _ok(["scontrol", "ping"], env), log=logs / "slurmctld.log")
        procs.append(subprocess.Popen(["slurmd", "-D", "--conf-server", f"{host}:{ports['ctld']}"],
                                      env={k: v for k, v in env.items() if k != "SLURM_CONF"},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        idle = ["sinfo", "-h", "-N", "-o", "%t"]
        _wait("slurmd (node idle)", lambda: subprocess.run(idle, env=env, capture_output=True, text=True)
              .stdout.strip().startswith("idle"), log=logs / "slurmd.log")
        yield {"env": env, "root": root, "partition": PARTITION, "account": ACCOUNT, "host": host}
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if munge_pid is not None and munge_pid.exists():
            try:
                os.kill(int(munge_pid.read_text().strip()), 15)
            except (OSError, ValueError):
                pass
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree("/run/slurm/conf", ignore_errors=True)  # slurmd's cache of this cluster's config


if __name__ == "__main__":  # bring one up by hand: python tests/slurm_cluster.py
    with slurm_cluster() as cluster:
        print(f"export SLURM_CONF={cluster['env']['SLURM_CONF']}  # Ctrl-C stops the cluster", flush=True)
        subprocess.run(["sinfo"], env=cluster["env"])
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
