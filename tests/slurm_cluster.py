"""A real single-node Slurm cluster in a temporary directory, for tests: munged, slurmctld and slurmd with their
own key, sockets, ports and state, and fake GPUs (device nodes that Slurm hands out through gres).

Nothing outside the directory is touched: the daemons and clients find their config through SLURM_CONF.
Needs root (mknod, SlurmUser=root) and `apt-get install slurm-wlm munge`."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
NODE = "localhost"


def missing() -> str | None:
    """Why a cluster can't be started here, or None."""
    tools = [t for t in (*DAEMONS, "sbatch", "squeue", "sinfo", "scancel") if not shutil.which(t)
             and not Path("/usr/sbin", t).exists()]
    if tools:
        return f"Slurm is not installed (missing {', '.join(tools)}; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (mknod for fake GPUs, SlurmUser=root)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    def __init__(self, root: Path, gpus: int = 2, cpus: int = 4):
        self.root = Path(root)
        self.gpus = gpus
        self.cpus = cpus
        self.conf = self.root / "slurm.conf"
        self.env = os.environ | {"SLURM_CONF": str(self.conf)}

    def start(self) -> "SlurmCluster":
        root = self.root
        for sub in ("munge", "state", "spool", "log", "dev"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "munge").chmod(0o700)
        key = root / "munge" / "key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.munge_socket = root / "munge" / "socket"
        subprocess.run([_daemon("munged"), "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                        f"--pid-file={root / 'munge' / 'pid'}", f"--seed-file={root / 'munge' / 'seed'}",
                        f"--log-file={root / 'munge' / 'log'}"], check=True)
        for index in range(self.gpus):
            os.mknod(root / "dev" / f"nvidia{index}", 0o600 | 0o020000, os.makedev(195, index))
        gres = f"Gres=gpu:{self.gpus} " if self.gpus else ""
        self.conf.write_text("\n".join([
            "ClusterName=ptbtest",
            f"SlurmctldHost={NODE}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "MpiDefault=none",
            *(["GresTypes=gpu"] if self.gpus else []),
            f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=4000 {gres}State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")
        if self.gpus:
            last = self.gpus - 1
            (root / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File={root / 'dev'}/nvidia[0-{last}]\n")
        subprocess.run([_daemon("slurmctld")], env=self.env, check=True)
        subprocess.run([_daemon("slurmd"), "-N", NODE], env=self.env, check=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True)
            if out.stdout.strip() == "idle":
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the test Slurm node did not become idle; see {root / 'log'}")

    def stop(self) -> None:
        """Cancel every job, wait for the queue to drain, then stop the daemons."""
        subprocess.run(["scancel", "-u", "root"], env=self.env, capture_output=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(["squeue", "-h", "-t", "PD,R,CG"], env=self.env, capture_output=True, text=True)
            if out.returncode != 0 or not out.stdout.strip():
                break
            time.sleep(0.5)
        for pid_file in (self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munge" / "pid"):
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
