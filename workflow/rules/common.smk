# Shared by every rule: validated params, the run name, the params/overlay arguments of the CLI.
import sys
from pathlib import Path

from pgprobe import config as pgconfig
from pgprobe import stages
from pgprobe.errors import ConfigError

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
PARAMS = " ".join(["--params params.yaml", *(f"--overlay {o}" for o in OVERLAYS)])


def keys_slice(stage):
    """Snakemake params (a rerun trigger): the stage's params values and its source files' hash."""
    def get(wildcards):
        keys = stages.stage_keys(config, stage, wildcards.get("env", ""), wildcards.get("algo", ""))
        return f"{stages.params_slice(config, keys)} code={stages.code_hash(stage)}"
    return get


def fig6_probes(wildcards):
    """The landscape probes fig 6 stacks: every agent of the figure at every iteration it shows."""
    f = config["figures"]["fig6"]
    return [stages.probe_path(wildcards.run, "landscape", env, algo, seed, it)
            for env, algo, seed in stages.figure_agents(config, "fig6") for it in f["iterations"]]


wildcard_constraints:
    run=r"[A-Za-z0-9_.-]+",
    seed=r"\d+",
    iteration=r"\d{6}",
