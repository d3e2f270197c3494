"""The pipeline's DAG, written once: paths, commands, params keys and code of every stage.

Five kinds of job: train (env, algo, seed) -> checkpoint (+ iteration) -> probe (+ probe name)
-> aggregate (figure) -> figure; a probe split into shards (params `shards:`, pipeline/shards.py)
adds a sixth, shard (+ shard, shards), and its probe job gathers them.  The Snakemake rules
(workflow/rules/*.smk) take their output patterns, shell commands, input functions, params slices
and threads from here, and `plan()` expands the same functions into the job list dvc.yaml is
generated from, so the two runners cannot drift apart.  Which probes and figures exist, and what they read, is declared
in declarations.py; which agents and iterations a figure shows is in params (`figures:`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from . import records, shards
from .records import code_files, stage_keys  # noqa: F401 (the DAG's names for them)
from .declarations import FIGURES, PROBES, figure_probe

PATTERNS = {
    "train": "data/{run}/agents/{env}/{algo}/seed{seed}/train.nc",
    "snapshots": "data/{run}/agents/{env}/{algo}/seed{seed}/snapshots",
    "checkpoint": "data/{run}/checkpoints/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    "probe": "data/{run}/probes/{probe}/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    "shard": "data/{run}/shards/{probe}/{env}/{algo}/seed{seed}/iter{iteration}/shard{shard}of{shards}.nc",
    "aggregate": "data/{run}/aggregates/{figure}.nc",
}
LOGS = {
    "train": "logs/{run}/train/{env}/{algo}/seed{seed}.log",
    "checkpoint": "logs/{run}/checkpoint/{env}/{algo}/seed{seed}/iter{iteration}.log",
    "probe": "logs/{run}/probes/{probe}/{env}/{algo}/seed{seed}/iter{iteration}.log",
    "shard": "logs/{run}/shards/{probe}/{env}/{algo}/seed{seed}/iter{iteration}/shard{shard}of{shards}.log",
    "aggregate": "logs/{run}/aggregate/{figure}.log",
    "figure": "logs/{run}/figure/{figure}.log",
}
# Snakemake shell templates; plan() fills the same placeholders for dvc.yaml.
COMMANDS = {
    "train": "pgprobe train {params.args} --env {wildcards.env} --algo {wildcards.algo} "
             "--seed {wildcards.seed} --out {params.out}",
    "checkpoint": "pgprobe checkpoint {params.args} --env {wildcards.env} --algo {wildcards.algo} "
                  "--seed {wildcards.seed} --iteration {wildcards.iteration} --train-dir {params.train_dir} "
                  "--out {output}",
    "probe": "pgprobe probe {wildcards.probe} {params.args} {params.inputs} --out {output} --threads {threads}",
    "shard": "pgprobe probe {wildcards.probe} {params.args} {params.inputs} --shard {wildcards.shard}/{wildcards.shards} "
             "--out {output} --threads {threads}",
    "aggregate": "pgprobe aggregate {wildcards.figure} {params.args} --out {output} {input.data}",
    "figure": "pgprobe figure {wildcards.figure} --aggregate {input.data} --out {output}",
}


def figure_pattern(run: str) -> str:
    """figures/fig6.pdf for the paper run; figures/<run>/fig6.pdf for any other run."""
    return "figures/{figure}.pdf" if run == "paper" else f"figures/{run}/{{figure}}.pdf"


def path(kind: str, **w) -> str:
    if "iteration" in w:
        w["iteration"] = f"{int(w['iteration']):06d}"
    if kind == "figure":
        return figure_pattern(w["run"]).format(**w)
    return PATTERNS[kind].format(**w)


def agent_dir(run: str, env: str, algo: str, seed) -> str:
    return str(Path(path("train", run=run, env=env, algo=algo, seed=seed)).parent)


# -- which agents, iterations and inputs ---------------------------------------------------------
def figures_of(cfg: dict) -> list[str]:
    """The figures the run draws: every declared figure with a block under `figures:`."""
    return [f for f in FIGURES if f in cfg.get("figures", {})]


def figure_agents(cfg: dict, fig: str) -> list[tuple[str, str, int]]:
    f = cfg["figures"][fig]
    return [(env, algo, seed) for env in f["envs"] for algo in f["algos"] for seed in f["seeds"]]


def probe_inputs(run: str, probe: str, env: str, algo: str, seed, iteration) -> dict[str, str]:
    """What a probe job reads, by the names its declaration gives them."""
    out = {}
    for read in PROBES[probe].reads:
        if read == "checkpoint":
            out[read] = path("checkpoint", run=run, env=env, algo=algo, seed=seed, iteration=iteration)
        elif read == "train_log":
            out[read] = path("train", run=run, env=env, algo=algo, seed=seed)
        else:
            other = read.split(":", 1)[1]
            out[read] = path("probe", run=run, probe=other, env=env, algo=algo, seed=seed, iteration=iteration)
    return out


def probe_input_args(run: str, probe: str, env: str, algo: str, seed, iteration) -> str:
    return " ".join(f"--input {name}={p}" for name, p in probe_inputs(run, probe, env, algo, seed, iteration).items())


def shard_paths(cfg: dict, probe: str, env: str, algo: str, seed, iteration) -> list[str]:
    """The shards a probe job gathers ([] when params do not split it)."""
    n = shards.count(cfg, probe)
    if n == 1:
        return []
    return [path("shard", run=cfg["run"], probe=probe, env=env, algo=algo, seed=seed, iteration=iteration,
                 shard=k, shards=n) for k in range(n)]


def probe_job_inputs(cfg: dict, probe: str, env: str, algo: str, seed, iteration) -> list[str]:
    """What a probe job reads: its shards if it is split, else what the probe reads."""
    return (shard_paths(cfg, probe, env, algo, seed, iteration)
            or list(probe_inputs(cfg["run"], probe, env, algo, seed, iteration).values()))


def probe_job_args(cfg: dict, probe: str, env: str, algo: str, seed, iteration) -> str:
    gather = shard_paths(cfg, probe, env, algo, seed, iteration)
    if gather:
        return " ".join(f"--gather {p}" for p in gather)
    return probe_input_args(cfg["run"], probe, env, algo, seed, iteration)


def aggregate_inputs(cfg: dict, fig: str) -> list[str]:
    run, probe = cfg["run"], figure_probe(fig)
    if probe is None:
        return [path("train", run=run, env=e, algo=a, seed=s) for e, a, s in figure_agents(cfg, fig)]
    return [path("probe", run=run, probe=probe, env=e, algo=a, seed=s, iteration=it)
            for e, a, s in figure_agents(cfg, fig) for it in cfg["figures"][fig]["iterations"]]


def threads(kind: str, name: str = "", cores: int | None = None) -> int:
    """A job's threads; 'all' is every core the runner has (0 for the CLI: os.cpu_count())."""
    want = PROBES[name].threads if kind in ("probe", "shard") else 1
    return (cores or 0) if want == "all" else int(want)


# -- params slices and code: what reruns a job -------------------------------------------------------
def params_slice(cfg: dict, kind: str, w) -> str:
    """Snakemake's params rerun trigger: the job's record (its params values and the hash of its code),
    the same record its artifact carries."""
    return records.serialise(records.job_record(cfg, kind, w))


# -- the job list (dvc.yaml, sync-mtimes) -----------------------------------------------------------
@dataclass
class Job:
    kind: str
    name: str
    cmd: str
    deps: list[str]
    outs: list[str]
    params: list[str]
    wildcards: dict = field(default_factory=dict)


def params_args(params_file: str = "params.yaml", overlays=()) -> str:
    return " ".join([f"--params {params_file}", *(f"--overlay {o}" for o in overlays)])


def _job(cfg, kind, deps, outs, args, **w) -> Job:
    ns = SimpleNamespace(**w)
    run = cfg["run"]
    params = SimpleNamespace(args=args)
    if kind == "train":
        params.out = agent_dir(run, ns.env, ns.algo, ns.seed)
    elif kind == "checkpoint":
        params.train_dir = agent_dir(run, ns.env, ns.algo, ns.seed)
    elif kind == "probe":
        params.inputs = probe_job_args(cfg, ns.probe, ns.env, ns.algo, ns.seed, ns.iteration)
    elif kind == "shard":
        params.inputs = probe_input_args(run, ns.probe, ns.env, ns.algo, ns.seed, ns.iteration)
    fmt_w = dict(w, iteration=f"{int(w['iteration']):06d}") if "iteration" in w else w
    cmd = COMMANDS[kind].format(wildcards=SimpleNamespace(**fmt_w), params=params, input=SimpleNamespace(data=" ".join(deps)),
                                output=outs[0], threads=threads(kind, w.get("probe", "")))
    label = "/".join(str(fmt_w[k]) for k in ("probe", "figure", "env", "algo", "seed", "iteration") if k in fmt_w)
    label += f"/shard{w['shard']}of{w['shards']}" if kind == "shard" else ""
    code = code_files(kind, ns)
    return Job(kind, f"{kind}@{label}", cmd, code + deps, outs, stage_keys(cfg, kind, ns), fmt_w)


def plan(cfg: dict, figs=None, params_file: str = "params.yaml", overlays=()) -> list[Job]:
    """Every job needed for `figs` (default: every figure of the run), in dependency order."""
    run, args = cfg["run"], params_args(params_file, overlays)
    jobs: dict[str, Job] = {}

    def add(job: Job) -> str:
        jobs.setdefault(job.name, job)
        return job.outs[0]

    def train(env, algo, seed):
        w = dict(run=run, env=env, algo=algo, seed=seed)
        return add(_job(cfg, "train", [], [path("train", **w), path("snapshots", **w)], args,
                        env=env, algo=algo, seed=seed))

    def checkpoint(env, algo, seed, it):
        train(env, algo, seed)
        snaps = path("snapshots", run=run, env=env, algo=algo, seed=seed)
        out = path("checkpoint", run=run, env=env, algo=algo, seed=seed, iteration=it)
        return add(_job(cfg, "checkpoint", [snaps], [out], args, env=env, algo=algo, seed=seed, iteration=it))

    def probe(name, env, algo, seed, it):
        for read in PROBES[name].reads:
            if read == "checkpoint":
                checkpoint(env, algo, seed, it)
            elif read == "train_log":
                train(env, algo, seed)
            else:
                probe(read.split(":", 1)[1], env, algo, seed, it)
        reads = list(probe_inputs(run, name, env, algo, seed, it).values())
        agent = dict(probe=name, env=env, algo=algo, seed=seed, iteration=it)
        n = shards.count(cfg, name)
        for k, out in enumerate(shard_paths(cfg, name, env, algo, seed, it)):
            add(_job(cfg, "shard", reads, [out], args, **agent, shard=k, shards=n))
        out = path("probe", run=run, **agent)
        return add(_job(cfg, "probe", probe_job_inputs(cfg, name, env, algo, seed, it), [out], args, **agent))

    for fig in (figs or figures_of(cfg)):
        name = figure_probe(fig)
        for env, algo, seed in figure_agents(cfg, fig):
            if name is None:
                train(env, algo, seed)
            else:
                for it in cfg["figures"][fig]["iterations"]:
                    probe(name, env, algo, seed, it)
        agg = path("aggregate", run=run, figure=fig)
        add(_job(cfg, "aggregate", aggregate_inputs(cfg, fig), [agg], args, figure=fig))
        add(_job(cfg, "figure", [agg], [path("figure", run=run, figure=fig)], args, figure=fig))
    return list(jobs.values())


STAMPS = ".pgprobe/stamps"
VALID_TIME = 946684800.0  # 2000-01-01: a stamp this old never makes its job look out of date


def stamp_path(out: str) -> str:
    """The params stamp of the job whose first output is `out` (an input of its Snakemake rule)."""
    return f"{STAMPS}/{out}.json"


def _stands(root: Path, kind: str, outs: list[str], record: dict) -> bool:
    """The job's outputs exist and its first one carries `record` (a figure's PDF carries none)."""
    if not all((root / o).exists() for o in outs):
        return False
    return kind == "figure" or records.recorded(root / outs[0]) == record


def job_output(kind: str, w, run: str) -> str:
    """The first output of a job (what its stamp is named after), from Snakemake's wildcards."""
    if kind in ("aggregate", "figure"):
        return path(kind, run=run, figure=w.figure)
    keys = ("probe", "env", "algo", "seed", "iteration", "shard", "shards")
    return path(kind, run=getattr(w, "run", run), **{k: getattr(w, k) for k in keys if hasattr(w, k)})


def stamp_job(cfg: dict, kind: str, w, out: str, root: str | Path = ".") -> Path:
    """The stamp of one job, decided from its own output's record (upstream reruns reach it anyway)."""
    record = records.job_record(cfg, kind, w)
    return write_stamp(Path(root), out, record, _stands(Path(root), kind, [out], record))


def write_stamp(root: Path, out: str, record: dict, valid: bool) -> Path:
    """The stamp's content is the job's record (for a person); its mtime is what Snakemake reads:
    long ago if the output stands for this record, now if it does not (the job looks out of date)."""
    p = root / stamp_path(out)
    text = records.serialise(record) + "\n"
    if not p.exists() or p.read_text() != text:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, p)
    t = VALID_TIME if valid else time.time()
    os.utime(p, (t, t))
    return p


def _files(p: Path) -> list[Path]:
    return [*(sorted(p.rglob("*")) if p.is_dir() else []), p]


def _newest(paths) -> float:
    return max((f.stat().st_mtime for p in paths if p.exists() for f in _files(p)), default=0.0)


def reconcile(cfg: dict, root: str | Path = ".") -> dict:
    """Decide from each artifact's job record, not from Snakemake's metadata or from mtimes, which
    jobs of the run stand: a job stands if its outputs exist, its record is the one the run's params
    and code give it, and every job it reads stands.  A standing job's outputs get modification
    times later than its inputs' (DVC does not preserve mtimes); every job's params stamp gets an
    mtime that makes Snakemake rerun exactly the jobs that do not stand.  No file's content changes.
    Returns {"stand": n, "rerun": n, "touched": files}."""
    root = Path(root)
    jobs = plan(cfg)
    made_here = {o for job in jobs for o in job.outs}
    standing: set[str] = set()
    touched = 0
    for job in jobs:
        data = [d for d in job.deps if d in made_here]
        record = records.job_record(cfg, job.kind, job.wildcards)
        ok = _stands(root, job.kind, job.outs, record) and all(d in standing for d in data)
        write_stamp(root, job.outs[0], record, ok)
        if not ok:
            continue
        standing.update(job.outs)
        after = _newest(root / d for d in data)
        outs = [f for o in job.outs for f in _files(root / o)]
        if after and min(f.stat().st_mtime for f in outs) <= after:
            for f in outs:
                os.utime(f, (after + 1, after + 1))
            touched += len(outs)
    n_stand = sum(all(o in standing for o in job.outs) for job in jobs)
    return {"stand": n_stand, "rerun": len(jobs) - n_stand, "touched": touched}
