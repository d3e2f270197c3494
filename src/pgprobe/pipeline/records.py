"""Job records: what each artifact says about the job that made it, and the checks made from them.

A job's record is its kind, its wildcards (agent, iteration, probe or figure), the values of its
params keys, what it reads as its declaration names it, and the hash of its source files.  Every NetCDF artifact carries its job's record
(attr `pgprobe_job`); the same record, serialised, is Snakemake's params rerun trigger.  So
whether a file stands for the params and code a run would give it is decided from the file
itself: by the stage that reads it (`check_inputs`: a pulled or stale input fails, naming the
file and the differing keys) and by the Snakefile before every run (`reconcile`), which needs no
`.snakemake/` metadata and no particular modification times.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

from ..errors import ArtifactError
from .codedeps import files_hash, stage_files
from .config import lookup
from . import declarations  # by module: what a test declares on top is seen here too

RECORD_ATTR = "pgprobe_job"
AGENT_KEYS = ("env", "algo", "seed")


def agent_keys(cfg: dict, env: str, algo: str) -> list[str]:
    keys = ["train", f"algos.{algo}"]
    if algo in cfg.get("env_overrides", {}).get(env, {}):
        keys.append(f"env_overrides.{env}.{algo}")
    return keys


def stage_keys(cfg: dict, kind: str, w) -> list[str]:
    """The params keys (dotted) whose values a job of `kind` depends on."""
    if kind in ("train", "checkpoint"):
        return agent_keys(cfg, w.env, w.algo)
    if kind in ("probe", "shard"):  # a shard: a block of its probe's work, by the same params
        own = declarations.PROBES[w.probe].params
        return agent_keys(cfg, w.env, w.algo) + ([own] if own else [])
    if kind == "aggregate":
        return [f"figures.{w.figure}"]
    return []  # a figure renders its aggregate and nothing else


def stage_modules(kind: str, w) -> tuple[str, ...]:
    if kind in ("probe", "shard"):
        return (declarations.PROBES[w.probe].module,)
    if kind in ("aggregate", "figure"):
        return (declarations.FIGURES[w.figure].module,)
    return ()


def code_files(kind: str, w) -> list[str]:
    """Source files of a job (relative to the repository root, as DVC deps)."""
    return [f"src/pgprobe/{f}" for f in stage_files(command(kind), stage_modules(kind, w))]


def command(kind: str) -> str:
    """The `pgprobe` command a job of `kind` runs (a shard runs `pgprobe probe --shard`)."""
    return "probe" if kind == "shard" else kind


def _wildcards(kind: str, w) -> dict:
    names = {"train": AGENT_KEYS, "checkpoint": (*AGENT_KEYS, "iteration"),
             "probe": ("probe", *AGENT_KEYS, "iteration"), "shard": ("probe", *AGENT_KEYS, "iteration", "shard", "shards"),
             "aggregate": ("figure",), "figure": ("figure",)}[kind]
    return {k: str(getattr(w, k)) if k in ("env", "algo", "probe", "figure") else int(getattr(w, k)) for k in names}


def stage_reads(kind: str, w) -> list[str]:
    """What a job reads, as its declaration names it (a probe's inputs, a figure's probe): a changed
    declaration reruns the job, whatever files it reads (a probe split into shards reads its shards
    but has its unsplit record, and the reverse)."""
    if kind in ("probe", "shard"):
        return list(declarations.PROBES[w.probe].reads)
    if kind == "aggregate":
        return [declarations.FIGURES[w.figure].reads]
    return []


def job_record(cfg: dict, kind: str, w) -> dict:
    """The record a job of `kind` with wildcards `w` makes under `cfg` (JSON-normalised)."""
    w = SimpleNamespace(**w) if isinstance(w, dict) else w
    rec = {"kind": kind, "wildcards": _wildcards(kind, w),
           "params": {k: lookup(cfg, k) for k in stage_keys(cfg, kind, w)},
           "reads": stage_reads(kind, w),
           "code": files_hash(stage_files(command(kind), stage_modules(kind, w)))}
    return json.loads(json.dumps(rec, sort_keys=True))


def serialise(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def recorded(path) -> dict | None:
    """The job record of a NetCDF artifact (None: no record, or not a readable artifact)."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            return json.loads(nc.getncattr(RECORD_ATTR)) if RECORD_ATTR in nc.ncattrs() else None
    except (OSError, ValueError):
        return None


def _leaves(x, prefix: str = "") -> dict:
    if isinstance(x, dict) and x:
        return {k: v for key, sub in x.items() for k, v in _leaves(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): x}


def differences(made: dict, now: dict) -> list[str]:
    """'key: made -> now' for every params leaf (dotted) and the code that differ."""
    old, new = _leaves(made.get("params", {})), _leaves(now.get("params", {}))
    out = [f"{k}: {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}"
           for k in sorted(set(old) | set(new)) if old.get(k, "(absent)") != new.get(k, "(absent)")]
    if made.get("code") != now.get("code"):
        out.append(f"code of the {now['kind']} stage: {made.get('code')} -> {now.get('code')}")
    if made.get("reads") != now.get("reads"):
        out.append(f"inputs read (declarations.py): {made.get('reads')} -> {now.get('reads')}")
    if made.get("wildcards") != now.get("wildcards"):
        out.append(f"job: {made.get('wildcards')} -> {now.get('wildcards')}")
    return out


def check_inputs(paths, cfg: dict) -> None:
    """Every input must have been made by the job the run's params and code would make it with now."""
    for path in paths:
        made = recorded(path)
        if made is None:
            raise ArtifactError(f"{path} has no job record ({RECORD_ATTR}): made by another tool or an older "
                                "pgprobe; rerun the stage that makes it")
        diff = differences(made, job_record(cfg, made["kind"], made["wildcards"]))
        if diff:
            raise ArtifactError(f"{path} was made with other params than this run gives it: "
                                + "; ".join(diff) + ". Rerun its stage (snakemake or dvc repro) or pull the "
                                "version made with these params")
