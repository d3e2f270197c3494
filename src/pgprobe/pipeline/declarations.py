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
    module: str                     # the module with `run` (or `entry`)
    params: str | None              # its params block (dotted key); None: a probe with no parameters
    reads: tuple = ("checkpoint",)  # "checkpoint", "train_log", or "probe:<name>" (same agent and iteration)
    threads: str | int = 1          # "all": every core the runner gives it (its work splits across processes)
    mem_mb: int = 2000              # its need at paper scale: the most a job asks a cluster for (resources.py)
    entry: str = "run"              # the module's function that runs it (one module, several probes)
    shard_dim: str | None = None    # its result splits along this dimension into jobs (params `shards:`):
                                    # the entry takes shard=(k, n) and computes the k-th of n contiguous blocks
    finish: str | None = None       # the module's function that makes the artifact from the gathered
                                    # shards (the entry calls it itself when it runs unsplit)


@dataclass(frozen=True)
class Figure:
    module: str                     # the module with `summarize` and `render`
    reads: str                      # "train_log" or "probe:<name>"


PROBES = {
    # paper scale: the many-sample batch (10^6 Humanoid pairs, float32 obs) is ~5 GB
    "landscape": Probe("pgprobe.probes.landscape", "probes.landscape", threads="all", mem_mb=8000, shard_dim="x"),
    # fig 5: the same plane and code, true reward only at several budgets, independent samples
    "landscape_concentration": Probe("pgprobe.probes.landscape", "probes.landscape_concentration", threads="all",
                                     mem_mb=8000, entry="concentration", shard_dim="x"),
    # figs 1 and 2: the estimates (paper: 10 x 10^5 Humanoid pairs, one repeat's batch in memory at a time),
    # g* from chunks of the agent's batch, and the two small derived files the figures aggregate
    "grad_estimates": Probe("pgprobe.probes.gradients", "probes.grad_estimates", entry="grad_estimates"),
    "true_gradient": Probe("pgprobe.probes.gradients", "probes.true_gradient", entry="true_gradient",
                           shard_dim="block", finish="true_gradient_finish"),
    "grad_variance": Probe("pgprobe.probes.gradients", None, reads=("probe:grad_estimates",),
                           entry="grad_variance"),
    "grad_convergence": Probe("pgprobe.probes.gradients", None,
                              reads=("probe:grad_estimates", "probe:true_gradient"), entry="grad_convergence"),
    # fig 4: the "true" value function (paper: fit on 5*10^6 pairs, Walker2d/Hopper obs: ~0.5 GB in memory),
    # made once per checkpoint; the three baselines' pairwise cosines (the gradients are not kept)
    "true_value": Probe("pgprobe.probes.baselines", "probes.true_value", mem_mb=4000, entry="true_value"),
    "baseline_grads": Probe("pgprobe.probes.baselines", "probes.baseline_grads",
                            reads=("checkpoint", "probe:true_value"), entry="baseline_grads"),
    # fig 3: the value network after the iteration's fit on held-out batches of the agent's size
    "value_error": Probe("pgprobe.probes.value_error", "probes.value_error"),
}

FIGURES = {
    "fig1": Figure("pgprobe.figures.fig1", reads="probe:grad_variance"),
    "fig2": Figure("pgprobe.figures.fig2", reads="probe:grad_convergence"),
    "fig3": Figure("pgprobe.figures.fig3", reads="probe:value_error"),
    "fig4": Figure("pgprobe.figures.fig4", reads="probe:baseline_grads"),
    "fig5": Figure("pgprobe.figures.fig5", reads="probe:landscape_concentration"),
    "fig6": Figure("pgprobe.figures.fig6", reads="probe:landscape"),
    "fig7": Figure("pgprobe.figures.fig7", reads="probe:landscape"),
    "fig8": Figure("pgprobe.figures.fig8", reads="train_log"),
    "curves": Figure("pgprobe.figures.curves", reads="train_log"),
}


def probe_needs(probe: str) -> list[str]:
    """The probe and every probe it reads, directly or not (each once, readers last)."""
    out: list[str] = []
    for read in PROBES[probe].reads:
        if read.startswith("probe:"):
            out += [p for p in probe_needs(read.split(":", 1)[1]) if p not in out]
    return out + [probe]


def figure_probe(fig: str) -> str | None:
    """The probe a figure stacks, or None for a figure drawn from training logs."""
    reads = FIGURES[fig].reads
    return reads.split(":", 1)[1] if reads.startswith("probe:") else None
