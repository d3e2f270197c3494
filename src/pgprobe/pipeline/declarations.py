"""What each probe and each figure reads: the one declaration the DAG (Snakemake rules, dvc.yaml,
the CLI, cluster resources) follows.  Adding a probe = its module, its params block and an entry
in PROBES; adding a figure = its module and an entry in FIGURES (plus a block under `figures:` in
params saying which agents and iterations it shows).

A probe module has `run(inputs: probes.api.ProbeInputs, cfg: dict, threads: int, progress: bool)
-> xr.Dataset`; a figure module has `summarize(combined) -> xr.Dataset` (the aggregate stage, run
on its inputs combined by coordinates) and `render(aggregate, out)`.

This file is not part of any stage's code fingerprint: what a declaration decides reaches the
jobs as their inputs, params keys and modules, each of which is fingerprinted.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    module: str                     # the module with `run`
    params: str                     # its params block (dotted key)
    reads: tuple = ("checkpoint",)  # "checkpoint", "train_log", or "probe:<name>" (same agent and iteration)
    threads: str | int = 1          # "all": every core the runner gives it (its work splits across processes)
    mem_mb: int = 2000              # per job, for cluster profiles


@dataclass(frozen=True)
class Figure:
    module: str                     # the module with `summarize` and `render`
    reads: str                      # "train_log" or "probe:<name>"


PROBES = {
    # paper scale: the many-sample batch (10^6 Humanoid pairs, float32 obs) is ~5 GB
    "landscape": Probe("pgprobe.probes.landscape", "probes.landscape", threads="all", mem_mb=8000),
}

FIGURES = {
    "fig6": Figure("pgprobe.figures.fig6", reads="probe:landscape"),
    "fig8": Figure("pgprobe.figures.fig8", reads="train_log"),
    "curves": Figure("pgprobe.figures.curves", reads="train_log"),
}


def figure_probe(fig: str) -> str | None:
    """The probe a figure stacks, or None for a figure drawn from training logs."""
    reads = FIGURES[fig].reads
    return reads.split(":", 1)[1] if reads.startswith("probe:") else None
