"""What a job asks a scheduler for: threads, memory and wall time, from its stage declaration and params.

The Snakemake rules take `threads`, `mem_mb` and `runtime` from here, so a cluster profile needs no
per-rule list and a run at another scale asks for what it needs:

- threads: 1, or for a probe declared `threads="all"` the number of independent pieces its work
  splits into (the landscape: grid points x envs per point), divided among its shard jobs if params
  split it (the probe job then only gathers them: 1 thread, no env steps).  Snakemake caps it at `--cores` (one
  machine) or `--max-threads` (a cluster profile: the cores of one node).
- mem_mb: BASE_MB (interpreter, torch, MuJoCo, the nets) plus KB_PER_PAIR for each state-action pair
  the job holds at once (params: the batch sizes), never more than the probe's declared `mem_mb`
  (its need at paper scale, declarations.py).
- runtime (minutes): the job's env steps (params: iterations, sample counts, grid size) at a
  conservative STEPS_PER_CORE_SECOND, the part that splits across processes divided by its threads,
  never under RUNTIME_FLOOR_MIN, and multiplied by the attempt (a retry after a TIMEOUT asks for more).

None of this changes a result, only what a scheduler reserves: this module is no stage's code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .config import lookup
from . import shards
from .declarations import PROBES

# Measured (benchmarks/README.md, 2 cores): training 2,300-4,000 env steps/s per core (update
# included), the landscape's evaluation ~1,200 Humanoid steps/s per core in long, contact-rich
# episodes.  250 leaves a factor of 4 or more for slower nodes, bigger nets and shared machines.
STEPS_PER_CORE_SECOND = 250
RUNTIME_FLOOR_MIN = 10      # minutes: start-up, imports, I/O, a loaded node
BASE_MB = 1500              # a job's process without its samples (a train job's RSS is ~0.45 GB)
KB_PER_PAIR = 8             # one stored pair (Humanoid float32 obs and the batch's other fields, copies)
MAX_EPISODE = 1000          # the locomotion tasks' time limit: an evaluation finishes its episodes


def _batch(cfg: dict) -> int:
    return int(cfg["train"]["steps_per_iter"])


@dataclass(frozen=True)
class Cost:
    """A probe's size from its params block `p` and the whole config `cfg`, in env steps and pairs."""
    serial: Callable[[dict, dict], int]                      # env steps in one process
    pairs: Callable[[dict, dict], int]                       # pairs held in memory at once
    parallel: Callable[[dict, dict], int] = lambda p, cfg: 0  # env steps split across its threads
    pieces: Callable[[dict, dict], int] = lambda p, cfg: 1    # how many ways the parallel part splits
    split: str = "parallel"  # the part its shard jobs divide between them (params `shards:`): "parallel" or "serial"


def _grid_points(p: dict) -> int:
    return int(p["x"]["points"]) * int(p["y"]["points"])


def _estimates(p: dict, cfg: dict) -> int:
    """R batches of the largest n (the smaller n are its prefixes)."""
    return int(p["repeats"]) * max(max(int(n) for n in p["n_grid"]), _batch(cfg))


COSTS = {
    # "many": one fresh batch of many_samples and the algorithm's step on it (one process); then per
    # regime every grid point's episodes, at least samples_per_point pairs, each env slot finishing its
    # last episode, split across the worker processes
    "landscape": Cost(
        serial=lambda p, cfg: int(p["many_samples"]) if "many" in p["regimes"] else 0,
        pairs=lambda p, cfg: max(int(p["many_samples"]) if "many" in p["regimes"] else 0, _batch(cfg)),
        parallel=lambda p, cfg: len(p["regimes"]) * _grid_points(p) * (
            int(p["samples_per_point"]) + int(p["envs_per_point"]) * MAX_EPISODE),
        pieces=lambda p, cfg: _grid_points(p) * int(p["envs_per_point"])),
    "grad_estimates": Cost(serial=_estimates, pairs=lambda p, cfg: max(max(map(int, p["n_grid"])), _batch(cfg))),
    "true_gradient": Cost(serial=lambda p, cfg: int(p["n_star"]) + int(p["chunk"] or _batch(cfg)),
                          pairs=lambda p, cfg: int(p["chunk"] or _batch(cfg)), split="serial"),
    # the fit: `epochs` passes over n_fit pairs of a small net, counted as one more collection
    "true_value": Cost(serial=lambda p, cfg: 2 * (int(p["n_fit"]) + int(p["chunk"])),
                       pairs=lambda p, cfg: int(p["n_fit"]) + int(p["chunk"])),
    "baseline_grads": Cost(serial=_estimates, pairs=lambda p, cfg: max(max(map(int, p["n_grid"])), _batch(cfg))),
    # fig 5: the step from many samples (if regime many), then every grid point at every budget, each
    # budget's env slots finishing their last episode, split across the worker processes
    "landscape_concentration": Cost(
        serial=lambda p, cfg: int(p["many_samples"]) if p["regime"] == "many" else 0,
        pairs=lambda p, cfg: max(int(p["many_samples"]) if p["regime"] == "many" else 0, _batch(cfg)),
        parallel=lambda p, cfg: _grid_points(p) * sum(int(b["pairs"]) + int(b["envs"]) * MAX_EPISODE
                                                      for b in p["budgets"]),
        pieces=lambda p, cfg: _grid_points(p) * max(int(b["envs"]) for b in p["budgets"])),
    # fig 3: held-out batches of the agent's batch size
    "value_error": Cost(serial=lambda p, cfg: int(p["batches"]) * _batch(cfg), pairs=lambda p, cfg: _batch(cfg)),
    # read other probes' results only
    "grad_variance": Cost(serial=lambda p, cfg: 0, pairs=lambda p, cfg: 0),
    "grad_convergence": Cost(serial=lambda p, cfg: 0, pairs=lambda p, cfg: 0),
}


def _probe_cost(cfg: dict, probe: str) -> tuple[Cost, dict]:
    if probe not in COSTS:
        raise KeyError(f"probe {probe!r} has no cost model in pgprobe.pipeline.resources.COSTS")
    block = PROBES[probe].params
    return COSTS[probe], (lookup(cfg, block) if block else {})


def steps(cfg: dict, kind: str, w) -> tuple[int, int]:
    """(env steps in one process, env steps split across the job's threads)."""
    if kind == "train":
        return int(cfg["train"]["iterations"]) * _batch(cfg), 0
    if kind == "checkpoint":  # replays at most save_every iterations from the snapshot before it
        return int(cfg["train"]["save_every"]) * _batch(cfg), 0
    if _gathers(cfg, kind, w):
        return 0, 0
    if kind in ("probe", "shard"):  # a shard: its share of the part shards split, all of the other
        cost, p = _probe_cost(cfg, w.probe)
        serial, parallel, n = cost.serial(p, cfg), cost.parallel(p, cfg), _shards(cfg, kind, w)
        return (-(-serial // n), parallel) if cost.split == "serial" else (serial, -(-parallel // n))
    return 0, 0  # aggregate, figure: no env steps


def threads(cfg: dict, kind: str, w) -> int:
    """The job's threads before Snakemake caps them (--cores, --max-threads)."""
    if kind not in ("probe", "shard") or _gathers(cfg, kind, w):
        return 1
    want = PROBES[w.probe].threads
    if want != "all":
        return int(want)
    cost, p = _probe_cost(cfg, w.probe)
    return max(1, -(-int(cost.pieces(p, cfg)) // _shards(cfg, kind, w)))


def _shards(cfg: dict, kind: str, w) -> int:
    return shards.count(cfg, w.probe) if kind == "shard" else 1


def _gathers(cfg: dict, kind: str, w) -> bool:
    """A probe job split into shards: it only gathers them (no env steps, one thread, base memory)."""
    return kind == "probe" and shards.count(cfg, w.probe) > 1


def mem_mb(cfg: dict, kind: str, w) -> int:
    if kind == "train" or kind == "checkpoint":
        pairs = _batch(cfg)
    elif kind in ("probe", "shard") and not _gathers(cfg, kind, w):
        cost, p = _probe_cost(cfg, w.probe)
        pairs = cost.pairs(p, cfg)
    else:
        pairs = 0  # aggregate, figure, a probe gathering its shards
    need = BASE_MB + math.ceil(pairs * KB_PER_PAIR / 1024)
    if kind in ("probe", "shard"):
        need = min(need, max(BASE_MB, PROBES[w.probe].mem_mb))
    return int(need)


def runtime(cfg: dict, kind: str, w, threads: int = 1, attempt: int = 1) -> int:
    """Wall time in minutes for `threads` threads, at the `attempt`-th try."""
    serial, parallel = steps(cfg, kind, w)
    seconds = (serial + parallel / max(1, int(threads))) / STEPS_PER_CORE_SECOND
    return int(max(RUNTIME_FLOOR_MIN, math.ceil(seconds / 60)) * max(1, int(attempt)))
