"""The pipeline's DAG, written once: paths, commands, params keys and code of every stage.

Five kinds of job: train (env, algo, seed) -> checkpoint (+ iteration) -> probe (+ probe name)
-> aggregate (figure) -> figure.  The Snakemake rules (workflow/rules/*.smk) take their output
patterns, shell commands, input functions, params slices and threads from here, and
`plan()` expands the same functions into the job list dvc.yaml is generated from, so the two
runners cannot drift apart.  Which probes and figures exist, and what they read, is declared
in declarations.py; which agents and iterations a figure shows is in params (`figures:`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from . import codedeps
from .config import lookup
from .declarations import FIGURES, PROBES, figure_probe

PATTERNS = {
    "train": "data/{run}/agents/{env}/{algo}/seed{seed}/train.nc",
    "snapshots": "data/{run}/agents/{env}/{algo}/seed{seed}/snapshots",
    "checkpoint": "data/{run}/checkpoints/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    "probe": "data/{run}/probes/{probe}/{env}/{algo}/seed{seed}/iter{iteration}.nc",
    "aggregate": "data/{run}/aggregates/{figure}.nc",
}
LOGS = {
    "train": "logs/{run}/train/{env}/{algo}/seed{seed}.log",
    "checkpoint": "logs/{run}/checkpoint/{env}/{algo}/seed{seed}/iter{iteration}.log",
    "probe": "logs/{run}/probes/{probe}/{env}/{algo}/seed{seed}/iter{iteration}.log",
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
    "aggregate": "pgprobe aggregate {wildcards.figure} --out {output} {input}",
    "figure": "pgprobe figure {wildcards.figure} --aggregate {input} --out {output}",
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


def aggregate_inputs(cfg: dict, fig: str) -> list[str]:
    run, probe = cfg["run"], figure_probe(fig)
    if probe is None:
        return [path("train", run=run, env=e, algo=a, seed=s) for e, a, s in figure_agents(cfg, fig)]
    return [path("probe", run=run, probe=probe, env=e, algo=a, seed=s, iteration=it)
            for e, a, s in figure_agents(cfg, fig) for it in cfg["figures"][fig]["iterations"]]


def threads(kind: str, name: str = "", cores: int | None = None) -> int:
    """A job's threads; 'all' is every core the runner has (0 for the CLI: os.cpu_count())."""
    want = PROBES[name].threads if kind == "probe" else 1
    return (cores or 0) if want == "all" else int(want)


# -- params slices and code: what reruns a job -------------------------------------------------------
def agent_keys(cfg: dict, env: str, algo: str) -> list[str]:
    keys = ["train", f"algos.{algo}"]
    if algo in cfg.get("env_overrides", {}).get(env, {}):
        keys.append(f"env_overrides.{env}.{algo}")
    return keys


def stage_keys(cfg: dict, kind: str, w) -> list[str]:
    if kind in ("train", "checkpoint"):
        return agent_keys(cfg, w.env, w.algo)
    if kind == "probe":
        own = PROBES[w.probe].params
        return agent_keys(cfg, w.env, w.algo) + ([own] if own else [])
    if kind == "aggregate":
        return [f"figures.{w.figure}"]
    return []  # a figure renders its aggregate and nothing else


def code_files(kind: str, w) -> list[str]:
    """Source files of a job (relative to the repository root, as DVC deps)."""
    if kind == "probe":
        modules = (PROBES[w.probe].module,)
    elif kind in ("aggregate", "figure"):
        modules = (FIGURES[w.figure].module,)
    else:
        modules = ()
    return [f"src/pgprobe/{f}" for f in codedeps.stage_files(kind, modules)]


def params_slice(cfg: dict, kind: str, w) -> str:
    """Snakemake's params rerun trigger: the job's params values and the hash of its code."""
    values = json.dumps({k: lookup(cfg, k) for k in stage_keys(cfg, kind, w)}, sort_keys=True)
    code = codedeps.files_hash([f.removeprefix("src/pgprobe/") for f in code_files(kind, w)])
    return f"{values} code={code}"


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
        params.inputs = probe_input_args(run, ns.probe, ns.env, ns.algo, ns.seed, ns.iteration)
    fmt_w = dict(w, iteration=f"{int(w['iteration']):06d}") if "iteration" in w else w
    cmd = COMMANDS[kind].format(wildcards=SimpleNamespace(**fmt_w), params=params, input=" ".join(deps),
                                output=outs[0], threads=threads(kind, w.get("probe", "")))
    label = "/".join(str(fmt_w[k]) for k in ("probe", "figure", "env", "algo", "seed", "iteration") if k in fmt_w)
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
        deps = list(probe_inputs(run, name, env, algo, seed, it).values())
        out = path("probe", run=run, probe=name, env=env, algo=algo, seed=seed, iteration=it)
        return add(_job(cfg, "probe", deps, [out], args, probe=name, env=env, algo=algo, seed=seed, iteration=it))

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


def sync_mtimes(cfg: dict, root: str | Path = ".") -> int:
    """After `dvc pull`/`dvc checkout`: give artifacts modification times in DAG order.

    DVC does not preserve mtimes; Snakemake, even without its mtime trigger, reruns a job whose
    input is newer than its output.  Each job's outputs (and everything in output directories)
    get a time later than all of its inputs'.  Returns the number of files touched.
    """
    root = Path(root)
    jobs = plan(cfg)
    start, touched = time.time() - 2 * len(jobs) - 10, 0
    for i, job in enumerate(jobs):
        stamp = start + 2 * i
        for out in job.outs:
            p = root / out
            if not p.exists():
                continue
            for f in [*(sorted(p.rglob("*")) if p.is_dir() else []), p]:
                os.utime(f, (stamp, stamp))
                touched += 1
    return touched
