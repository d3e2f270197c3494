# Shared by every rule: validated params, the run name, the CLI's params arguments, and the
# helpers that hand each rule its inputs, params slice and threads from pgprobe.pipeline.dag
# (the same functions dvc.yaml is generated from).
import sys
from types import SimpleNamespace

from pgprobe.errors import ConfigError
from pgprobe.pipeline import config as pgconfig
from pgprobe.pipeline import dag
from pgprobe.pipeline import resources as jobres

try:  # our own validation first: one line naming the key
    pgconfig.validate(config)
except ConfigError as exc:
    sys.exit(f"pgprobe: error: {exc}")
validate(config, "../schemas/params.schema.yaml")
if workflow.config_settings.config:
    sys.exit("pgprobe: error: --config overrides are not seen by the jobs; put them in an overlay "
             "file and pass it with --configfile")

RUN = config["run"]
OVERLAYS = [os.path.relpath(p) for p in workflow.overwrite_configfiles]
PARAMS = dag.params_args("params.yaml", OVERLAYS)

# What stands is decided from the artifacts' own job records (no .snakemake/ metadata needed, any
# mtimes a `dvc pull` left): see pgprobe.pipeline.dag.reconcile.  Not inside a cluster job.
if workflow.is_main_process:
    dag.reconcile(config)


def stamp(kind):
    """A job's params stamp (an input): its mtime says whether the job's output stands (dag.reconcile)."""

    def get(w):
        ns = SimpleNamespace(**w)
        out = dag.job_output(kind, ns, RUN)
        p = dag.stamp_path(out)
        if not os.path.exists(p):  # a job outside the run's figures: decide from its output alone
            dag.stamp_job(config, kind, ns, out)
        return p

    return get


def stage_slice(kind):
    """A rerun trigger: the values of the job's params keys and the hash of its code."""
    return lambda w: dag.params_slice(config, kind, SimpleNamespace(**w))


def probe_inputs(w):
    """A probe job's inputs: what the probe reads, or its shards when params split it."""
    return dag.probe_job_inputs(config, w.probe, w.env, w.algo, w.seed, w.iteration)


def probe_input_args(w):
    return dag.probe_job_args(config, w.probe, w.env, w.algo, w.seed, w.iteration)


def shard_inputs(w):
    return list(dag.probe_inputs(w.run, w.probe, w.env, w.algo, w.seed, w.iteration).values())


def shard_input_args(w):
    return dag.probe_input_args(w.run, w.probe, w.env, w.algo, w.seed, w.iteration)


def stage_threads(kind):
    """Threads from the stage declaration and params; Snakemake caps them at --cores / --max-threads."""
    return lambda w: jobres.threads(config, kind, SimpleNamespace(**w))


def stage_resources(kind):
    """mem_mb and runtime (minutes) from the stage declaration and params (pgprobe.pipeline.resources):
    what a cluster profile submits; a local run only checks mem_mb against --resources, if given."""
    return {
        "mem_mb": lambda w: jobres.mem_mb(config, kind, SimpleNamespace(**w)),
        "runtime": lambda w, threads, attempt: jobres.runtime(config, kind, SimpleNamespace(**w), threads, attempt),
    }


def aggregate_inputs(w):
    return dag.aggregate_inputs(config, w.figure)


wildcard_constraints:
    run=r"[A-Za-z0-9_.-]+",
    seed=r"\d+",
    iteration=r"\d{6}",
    shard=r"\d+",
    shards=r"\d+",
    probe="|".join(dag.PROBES),
    figure="|".join(dag.FIGURES),
