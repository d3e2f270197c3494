"""The smoke pipeline through a real SLURM: the SLURM profile, on a one-node cluster on localhost.

tests/slurm_local.py starts munged, slurmctld and slurmd (root; Debian's packages, which .ci/run
installs when it runs as root).  Snakemake runs with `--profile profiles/slurm` in a copy of the
repository, as README "On a cluster (SLURM)" says: the partition with `--default-resources
slurm_partition=...`, no account (the plugin would check it with sacctmgr, which needs accounting), and
three settings for a cluster without accounting whose jobs take seconds:
- `--slurm-status-command squeue`: sacct cannot answer without accounting; the local cluster keeps a
  finished job visible to squeue for MinJobAge = 3600 s;
- `--slurm-init-seconds-before-status-checks 2`: the plugin waits 40 s before its first poll (jobs of
  hours); it switches back to sacct when MinJobAge is under 3x this delay and `which sacct` finds it;
- `--max-threads` = the node's CPUs.

The run goes through what README says about a preemption: one running job is requeued (SLURM's
preemption with requeue) and Snakemake waits for it; then the Snakemake process itself is killed
(SIGKILL: a login node going away), the run's remaining jobs cancelled with `scancel --name <run ID>`,
the directory unlocked, and the same command finishes the pipeline without redoing finished jobs.
The landscape planes are split into two shard jobs each (params `shards:`), gathered by their probe jobs.
Every figure comes out of it, and SLURM's own records (scontrol show job, slurmctld's log) show that
every job went through sbatch with the threads, memory and time limit pgprobe.pipeline.resources gives it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import slurm_local
from test_pipeline import (ALL_SMOKE, FIGS, LANDSCAPE_PROBES, VENV_BIN, _env, copy_repo, dry_run, job_counts,
                           params_of, sh)

pytestmark = pytest.mark.slow

STATE = Path(os.environ.get("PGPROBE_SLURM_STATE", slurm_local.DEFAULT_STATE))
# the order of each rule's wildcards in its output pattern: the plugin's job comment and log path
WILDCARDS = {"train": ("run", "env", "algo", "seed"), "checkpoint": ("run", "env", "algo", "seed", "iteration"),
             "probe": ("run", "probe", "env", "algo", "seed", "iteration"), "aggregate": ("run", "figure"),
             "figure": ("figure",), "shard": ("run", "probe", "env", "algo", "seed", "iteration", "shard", "shards")}
# the landscape planes split in two shard jobs each (README "Split a plane into jobs"): a job of its own each
SHARDS = {"shards": {"landscape": 2}}
OVERLAYS = ("config/smoke.yaml", "config/shards.yaml")


def slurm_cmd(cpus: int) -> list[str]:
    return ["snakemake", "--profile", "profiles/slurm", "--default-resources", f"slurm_partition={slurm_local.PARTITION}",
            "--max-threads", str(cpus), "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2", "--configfile", *OVERLAYS]


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (slurmd runs jobs as their users)")
    if slurm_local.missing():
        pytest.fail(f"SLURM is not installed ({', '.join(slurm_local.missing())} missing): "
                    "`python tests/slurm_local.py install` (.ci/run does it when run as root)")
    slurm_local.start(STATE, min_job_age=3600)
    try:
        yield STATE
    finally:
        slurm_local.stop(STATE)
        # a slurm.conf with no controller behind it would cost every later `snakemake` call ~9 s
        assert not slurm_local.CONF.exists()


def jobs_of_slurm() -> list[dict]:
    """Every job slurmctld knows of (finished ones for MinJobAge), as `scontrol show job` fields."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True).stdout
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.splitlines() if line.strip()]


def running(run_id: str, started_within: float | None = None) -> list[tuple[str, str]]:
    """(SLURM job id, comment) of the run's RUNNING jobs (that started at most `started_within` s ago)."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "--name", run_id, "-o", "%i|%k|%M"],
                         capture_output=True, text=True).stdout
    jobs = []
    for line in out.splitlines():
        if line.count("|") != 2:
            continue
        job_id, comment, elapsed = line.split("|")
        seconds = sum(int(x) * 60**i for i, x in enumerate(reversed(elapsed.split("-")[-1].split(":"))))
        if started_within is None or seconds <= started_within:
            jobs.append((job_id, comment))
    return jobs


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"Snakemake ended (exit {proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def run_id_of(log: Path) -> str:
    m = re.search(r"SLURM run ID: (\S+)", log.read_text())
    return m.group(1) if m else ""


def expected_requests(cfg: dict, cpus: int) -> dict[str, tuple[int, int, int]]:
    """Job comment -> (CPUs, memory MB, time limit in minutes) from pgprobe.pipeline.resources."""
    from pgprobe.pipeline import dag, resources

    out = {}
    for job in dag.plan(cfg):
        w = dict(job.wildcards, run=cfg["run"])
        comment = f"rule_{job.kind}_wildcards_" + "_".join(str(w[k]) for k in WILDCARDS[job.kind])
        ns = SimpleNamespace(**w)
        threads = min(resources.threads(cfg, job.kind, ns), cpus)
        out[comment] = (threads, resources.mem_mb(cfg, job.kind, ns),
                        resources.runtime(cfg, job.kind, ns, threads, attempt=1))
    return out


def minutes(limit: str) -> int:
    days, _, hms = limit.rpartition("-")
    h, m, s = map(int, hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def test_smoke_pipeline_through_slurm(cluster, tmp_path):
    t0 = time.time()
    root = copy_repo(tmp_path / "repo")
    (root / OVERLAYS[1]).write_text(yaml.safe_dump(SHARDS))
    cpus = slurm_local.machine()[0]
    cmd = slurm_cmd(cpus)
    env = _env(root)
    env["PYTHONUNBUFFERED"] = "1"

    # -- run 1: a requeued job (preemption), then the Snakemake process dies ----------------------
    log1 = tmp_path / "run1.log"
    with open(log1, "w") as f:
        proc = subprocess.Popen([str(VENV_BIN / cmd[0]), *cmd[1:]], cwd=root, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        run1 = wait_for("a SLURM run ID", lambda: run_id_of(log1), proc, log1)
        # preempt a training job that only figs 8 and curves wait for (SLURM delays a requeued job ~2 min)
        requeued, _ = wait_for("a running ppo_m training job",
                               lambda: next((j for j in running(run1) if j[1].startswith("rule_train_")
                                             and "_ppo_m_" in j[1]), None), proc, log1)
        subprocess.run(["scontrol", "requeue", requeued], check=True)

        def requeued_job_done():
            job = next(j for j in jobs_of_slurm() if j["JobId"] == requeued)
            return job["JobState"] == "COMPLETED"

        wait_for(f"the requeued job {requeued} completing", requeued_job_done, proc, log1)
        # a job that has just started (it still runs when scancel comes)
        victims = wait_for("a job starting after the requeued one", lambda: running(run1, started_within=2),
                           proc, log1)
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake (and nothing else: the jobs are SLURM's) dies
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # README: cancel what the dead run left, unlock, run the same command again
    subprocess.run(["scancel", "--name", run1], check=True)
    deadline = time.time() + 60
    while running(run1) and time.time() < deadline:
        time.sleep(0.5)
    assert not running(run1), "scancel left jobs running"
    sh(root, "snakemake", "--profile", "profiles/slurm", "--unlock", "--configfile", *OVERLAYS)

    # -- run 2: the same command finishes the pipeline --------------------------------------------
    proc2 = sh(root, *cmd, timeout=1500)
    run2 = re.search(r"SLURM run ID: (\S+)", proc2.stdout).group(1)
    counts2 = job_counts(proc2.stdout)
    wall = time.time() - t0
    for fig in FIGS:
        assert (root / "figures" / "smoke" / f"{fig}.pdf").read_bytes()[:5] == b"%PDF-", fig
    assert dry_run(root, overlay=("--configfile", *OVERLAYS)) == {}, "after the resumed run nothing is left to do"
    assert dry_run(root) == {}, "the planes gathered from shards stand in an unsplit run"

    # -- SLURM's records ---------------------------------------------------------------------------
    jobs = [j for j in jobs_of_slurm() if j["JobName"] in (run1, run2)]
    ctld_log = (cluster / "slurmctld.log").read_text()
    submitted = set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", ctld_log))
    for j in jobs:  # each one an sbatch batch job, in slurmctld's log, in the partition given
        assert j["BatchFlag"] == "1" and j["JobId"] in submitted and j["Partition"] == slurm_local.PARTITION, j
    done = [j for j in jobs if j["JobState"] == "COMPLETED"]
    by_state = {}
    for j in jobs:
        by_state.setdefault((j["JobName"] == run1 and "run1" or "run2", j["JobState"]), []).append(j["JobId"])
    # every job of the DAG (but `all`, a local rule) ran to completion as a SLURM job, in one run or the other
    made = {j["Comment"] for j in done}
    expected = expected_requests(params_of(root, *OVERLAYS), cpus)
    assert made == set(expected), (sorted(set(expected) - made), sorted(made - set(expected)))
    local_counts = {k: v for k, v in ALL_SMOKE.items() if k != "all"}
    local_counts["shard"] = 2 * LANDSCAPE_PROBES["probe"]
    assert {r: sum(c.startswith(f"rule_{r}_") for c in made) for r in local_counts} == local_counts
    # run 2 redid none of the jobs that completed in run 1 (even those the killed Snakemake never saw finish:
    # each job records its own completion), and made the rest, the cancelled ones among them
    run1_made = {j["Comment"] for j in done if j["JobName"] == run1}
    run2_made = {j["Comment"] for j in done if j["JobName"] == run2}
    cancelled = {j["Comment"] for j in jobs if j["JobName"] == run1 and j["JobState"] == "CANCELLED"}
    assert run1_made and run2_made and not run1_made & run2_made, sorted(run1_made & run2_made)
    assert run1_made | run2_made == set(expected), sorted(set(expected) - run1_made - run2_made)
    assert cancelled and cancelled <= run2_made and {c for _, c in victims} <= run1_made | cancelled, cancelled
    assert sum(counts2.values()) - counts2.get("all", 0) == len(run2_made), counts2
    assert all(j["JobState"] in ("COMPLETED", "CANCELLED") for j in jobs if j["JobName"] == run1), by_state
    assert all(j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs if j["JobName"] == run2), by_state
    # the preempted job was requeued once and then completed
    pre = next(j for j in jobs if j["JobId"] == requeued)
    assert pre["Restarts"] == "1" and pre["JobState"] == "COMPLETED", pre
    assert f"Requeuing JobId={requeued}" in ctld_log
    # each job asked for what pgprobe.pipeline.resources says (threads, mem_mb, runtime of its params)
    for j in done:
        want = expected[j["Comment"]]
        got = (int(j["NumCPUs"]), int(j["MinMemoryNode"].rstrip("M")), minutes(j["TimeLimit"]))
        assert got == want, (j["Comment"], got, want)
    assert any(int(j["NumCPUs"]) == min(cpus, 6) for j in done if "_landscape_" in j["Comment"])
    # SLURM's output of each job is kept in logs/slurm/rule_<rule>/<wildcards>/<jobid>.log (README)
    for j in done:
        rule, wc = re.match(r"rule_(\w+?)_wildcards_(.*)", j["Comment"]).groups()
        slurm_log = root / "logs" / "slurm" / f"rule_{rule}" / wc / f"{j['JobId']}.log"
        assert j["StdOut"] == str(slurm_log) and slurm_log.exists(), j["StdOut"]
    print(f"\nlocal SLURM: {len(jobs)} jobs ({len(done)} COMPLETED; by run and state: "
          f"{ {k: len(v) for k, v in sorted(by_state.items())} }), job {requeued} requeued once, "
          f"run 2 ran {counts2}; wall {wall:.0f} s")
