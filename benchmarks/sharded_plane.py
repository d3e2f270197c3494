"""A landscape plane split into shard jobs (params `shards:`) against the same plane in one job.

Each job is a process of its own, as Snakemake or SLURM runs it: it loads the checkpoint, makes the
step (the "many" regime's collection and update: every shard repeats it), evaluates its block of x
rows with one worker, and writes a NetCDF file; the gather reads the shards and writes the artifact.
Measured, all in one run on the same checkpoint and params:

- one job, one core: the baseline;
- N shards side by side, one core each (N = the cores here: a cluster's N one-core jobs);
- every shard of a finer split one after another, one core each: each shard's own time, so the
  wall time on as many nodes as shards is the slowest shard plus the gather (a projection: no
  queueing, nodes like this one);
- the gather itself.

Printed: each time, the speed-ups over the baseline, and the efficiency (baseline / the shards' summed
time: below 1 by what every shard repeats, the step and the process start).  The gathered artifact
is checked identical to the one job's, bit for bit.

    python benchmarks/sharded_plane.py                      # the quick run's Humanoid TRPO at 150 if present
    python benchmarks/sharded_plane.py --checkpoint data/quick/checkpoints/Humanoid-v5/trpo/seed0/iter000150.nc
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

DEFAULT_CHECKPOINT = "data/quick/checkpoints/Humanoid-v5/trpo/seed0/iter000150.nc"


def plane_cfg(args) -> dict:
    """The quick run's landscape block, with the grid and budget asked for."""
    from pgprobe.pipeline import config

    cfg = config.load(_common.PARAMS, [_common.ROOT / "config" / "quick.yaml"])
    p = dict(cfg["probes"]["landscape"])
    p["x"] = {**p["x"], "points": args.rows}
    p.update(samples_per_point=args.samples, many_samples=args.many_samples)
    return p


def job(argv) -> None:
    """One job: `--job K/N CHECKPOINT CFG_JSON OUT` (N = 0: unsplit)."""
    _common.pin_threads(1)
    from pgprobe.pipeline import artifacts, shards
    from pgprobe.probes import landscape
    from pgprobe.probes.api import ProbeInputs

    k, n = map(int, argv[0].split("/"))
    inputs = ProbeInputs({"checkpoint": Path(argv[1])})
    cfg = json.loads(argv[2])
    ds = landscape.run(inputs, cfg, threads=1, progress=False, **({"shard": (k, n)} if n else {}))
    ds = artifacts.with_agent_coords(ds, *inputs.agent_coords())
    artifacts.write_nc(shards.mark(ds, k, n) if n else ds, argv[3])


def gather(paths: list[Path], out: Path) -> None:
    from pgprobe.pipeline import artifacts, shards

    artifacts.write_nc(shards.gather([artifacts.read_nc(p) for p in paths], "x"), out)


def _start(ckpt: Path, cfg: dict, k: int, n: int, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, __file__, "--job", f"{k}/{n}", str(ckpt), json.dumps(cfg), str(out)],
                            env=env)


def _wait(procs) -> None:
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a job exited {p.returncode}")


def timed_jobs(ckpt, cfg, specs, tmp: Path, side_by_side: bool) -> list[float]:
    """Wall seconds of each job (k, n) -> file; all at once, or one after another."""
    if side_by_side:
        t0 = time.perf_counter()
        _wait([_start(ckpt, cfg, k, n, tmp / f"{k}of{n}.nc") for k, n in specs])
        return [time.perf_counter() - t0]
    times = []
    for k, n in specs:
        t0 = time.perf_counter()
        _wait([_start(ckpt, cfg, k, n, tmp / f"{k}of{n}.nc")])
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--rows", type=int, default=5, help="x points of the plane (y as the quick params: 5)")
    ap.add_argument("--samples", type=int, default=4000, help="pairs per grid point")
    ap.add_argument("--many-samples", type=int, default=20000, help="pairs of the many-sample step")
    ap.add_argument("--side-by-side", type=int, default=os.cpu_count() or 1, help="shards run at once")
    args = ap.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        raise SystemExit(f"{ckpt}: no such checkpoint (run the quick pipeline, or pass --checkpoint)")
    import xarray as xr

    cfg = plane_cfg(args)
    print(_common.machine())
    print(f"checkpoint {ckpt}; plane {args.rows} x {cfg['y']['points']}, {args.samples} pairs per point, "
          f"regimes {cfg['regimes']}, many-sample step from {args.many_samples} pairs")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (one,) = timed_jobs(ckpt, cfg, [(0, 0)], tmp, side_by_side=False)
        print(f"one job, one core: {one:.1f} s")
        n = min(args.side_by_side, args.rows)
        (wall,) = timed_jobs(ckpt, cfg, [(k, n) for k in range(n)], tmp, side_by_side=True)
        t0 = time.perf_counter()
        gather([tmp / f"{k}of{n}.nc" for k in range(n)], tmp / f"gathered{n}.nc")
        g_time = time.perf_counter() - t0
        print(f"{n} shards side by side, one core each: {wall:.1f} s + gather {g_time:.2f} s -> "
              f"speed-up {one / (wall + g_time):.2f} (ideal {n})")
        fine = args.rows
        each = timed_jobs(ckpt, cfg, [(k, fine) for k in range(fine)], tmp, side_by_side=False)
        gather([tmp / f"{k}of{fine}.nc" for k in range(fine)], tmp / f"gathered{fine}.nc")
        print(f"{fine} shards one after another: " + ", ".join(f"{t:.1f}" for t in each) + " s")
        print(f"projected on {fine} nodes: slowest shard + gather = {max(each) + g_time:.1f} s -> speed-up "
              f"{one / (max(each) + g_time):.2f} (ideal {fine}); efficiency {one / sum(each):.2f} "
              "(one job / the shards' summed time)")
        whole = xr.load_dataset(tmp / "0of0.nc")
        for m in (n, fine):
            xr.testing.assert_identical(xr.load_dataset(tmp / f"gathered{m}.nc"), whole)
        print(f"gathered artifacts ({n} and {fine} shards) identical to the one job's: yes")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        job(sys.argv[2:])
    else:
        sys.exit(main())
