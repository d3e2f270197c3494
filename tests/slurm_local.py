#!/usr/bin/env python3
"""A one-node SLURM cluster on localhost, for tests/test_slurm.py and for anyone who wants to try the
SLURM profile without a cluster.  Needs root and Debian/Ubuntu's packages (slurmctld, slurmd, munge,
slurm-client).

    python tests/slurm_local.py install   # apt-get the packages (root; does nothing if they are there)
    python tests/slurm_local.py start     # munged, then slurmctld and slurmd; waits for the node to be idle
    python tests/slurm_local.py status    # sinfo and squeue
    python tests/slurm_local.py stop      # stops the daemons this script started, nothing else

What it sets up: /etc/slurm/slurm.conf (the path srun inside a job reads: the SLURM executor's job step
drops SLURM_CONF from the environment), refused if a slurm.conf not written by this script is there;
state, spool, pid files and logs under --state (default /var/tmp/pgprobe-slurm).  No accounting
(accounting_storage/none): `sacct` cannot answer, so Snakemake must poll with
`--slurm-status-command squeue`, and a finished job stays visible to squeue for MinJobAge seconds
(default here 3600; the plugin falls back to sacct when MinJobAge is under 3x its first status-check
delay).  ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: no cgroups needed, nothing
enforces a job's memory or CPUs.  The node gets this machine's CPU count and memory.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "munge", "slurm-client")
BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "sinfo", "srun")
CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# pgprobe local one-node cluster (tests/slurm_local.py)"
DEFAULT_STATE = Path("/var/tmp/pgprobe-slurm")
PARTITION = "local"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")


def missing() -> list[str]:
    """The SLURM and munge executables not on PATH (sbin included)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _sbin(name: str) -> str:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])) or name


def install() -> None:
    """apt-get the packages when any executable is missing (root only)."""
    if not missing():
        return
    if os.geteuid() != 0:
        sys.exit(f"slurm_local: missing {', '.join(missing())}; as root: apt-get install {' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], check=True, env=env)


def node_name() -> str:
    return socket.gethostname().split(".")[0]


def machine() -> tuple[int, int]:
    """(CPUs, memory in MB) of this machine."""
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return os.cpu_count() or 1, mem_kb // 1024


def slurm_conf(state: Path, min_job_age: int) -> str:
    cpus, mem = machine()
    host = node_name()
    return f"""{MARKER}; rewritten by every start
ClusterName=pgprobe-local
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge={min_job_age}
KillWait=5
InactiveLimit=0
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _run(*cmd, check=False, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=check)


def munge_ok() -> bool:
    try:
        cred = _run("munge", "-n").stdout
        return bool(cred) and subprocess.run(["unmunge"], input=cred, capture_output=True, text=True,
                                             timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def controller_up() -> bool:
    try:
        return _run("scontrol", "ping").stdout.count("UP") >= 1
    except (OSError, subprocess.SubprocessError):
        return False


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _started(state: Path) -> Path:
    return state / "started-by-slurm_local"


def _record(state: Path, started: list[str], daemon: str) -> None:
    """Note a daemon as started by this script (at once: stop() finds it even if start() fails later)."""
    started.append(daemon)
    state.mkdir(parents=True, exist_ok=True)
    _started(state).write_text("\n".join(started) + "\n")


def start(state: Path = DEFAULT_STATE, min_job_age: int = 3600, timeout: float = 60) -> list[str]:
    """Start munged (unless one answers), slurmctld and slurmd; returns the daemons it started."""
    if os.geteuid() != 0:
        raise PermissionError("slurm_local: the daemons must be started as root")
    if missing():
        raise FileNotFoundError(f"slurm_local: missing {', '.join(missing())} (python tests/slurm_local.py install)")
    if CONF.exists() and not CONF.read_text().startswith(MARKER):
        raise FileExistsError(f"slurm_local: {CONF} was not written by this script; not touching it")
    state = Path(state)
    stop(state)  # what an earlier start() with this state left running (after a crash, say)
    started: list[str] = []
    if not munge_ok():
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(1024))
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o400)
        for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        _run("runuser", "-u", "munge", "--", _sbin("munged"), check=True)
        _record(state, started, "munged")
        deadline = time.time() + timeout
        while not munge_ok():
            if time.time() > deadline:
                raise TimeoutError("slurm_local: munged does not answer")
            time.sleep(0.2)
    if controller_up():
        raise RuntimeError("slurm_local: a slurmctld not started by this script (with this --state) answers; "
                           "stop it first")
    for sub in ("ctld", "spool"):
        shutil.rmtree(state / sub, ignore_errors=True)
        (state / sub).mkdir(parents=True)
    for log in ("slurmctld.log", "slurmd.log"):
        (state / log).unlink(missing_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(slurm_conf(state, min_job_age))
    _run(_sbin("slurmctld"), "-c", check=True)  # -c: a clean start, no jobs from an earlier run
    _record(state, started, "slurmctld")
    _run(_sbin("slurmd"), "-N", node_name(), check=True)
    _record(state, started, "slurmd")
    deadline = time.time() + timeout
    while True:
        states = _run("sinfo", "-h", "-N", "-o", "%T").stdout.split()
        if states and all(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states):
            return started
        if states and any(s.rstrip("*~#") in ("down", "drained", "draining") for s in states):
            _run("scontrol", "update", f"nodename={node_name()}", "state=resume")
        if time.time() > deadline:
            raise TimeoutError(f"slurm_local: the node is {states} after {timeout:.0f} s; see {state}/*.log")
        time.sleep(0.5)


def stop(state: Path = DEFAULT_STATE, timeout: float = 30) -> None:
    """Stop the daemons that start() recorded as its own (slurmd, slurmctld, then munged)."""
    state = Path(state)
    record = _started(state)
    if CONF.exists() and CONF.read_text().startswith(MARKER):
        # Ours, and no controller behind it any more: left in place, every `scontrol` (which the SLURM
        # executor plugin runs at import, i.e. in every `snakemake` call) would wait ~9 s for it.
        CONF.unlink()
    if not record.exists():
        return
    mine = record.read_text().split()
    pids = {"slurmd": state / "slurmd.pid", "slurmctld": state / "slurmctld.pid", "munged": MUNGE_PID}
    for name in ("slurmd", "slurmctld", "munged"):
        pid = _pid(pids[name]) if name in mine else None
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while _pid(pids[name]) == pid and time.time() < deadline:
            time.sleep(0.2)
    record.unlink()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["install", "start", "stop", "status"])
    ap.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state, spool, pid files and logs")
    ap.add_argument("--min-job-age", type=int, default=3600,
                    help="seconds a finished job stays visible to squeue (>= 120 for the SLURM executor)")
    args = ap.parse_args(argv)
    if args.command == "install":
        install()
    elif args.command == "start":
        print("started:", " ".join(start(args.state, args.min_job_age)) or "nothing")
        print(_run("sinfo").stdout, end="")
    elif args.command == "stop":
        stop(args.state)
    else:
        print(_run("sinfo").stdout + _run("squeue").stdout, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
