"""Training returns: PPO, PPO-M and TRPO on Hopper-v5 for ~10^6 env steps, beside published returns.

Each (algorithm, seed) is trained with `pgprobe.train.run` and the hyperparameters of
params.yaml (the authors' Hopper settings), with train.iterations = steps // steps_per_iter.
The final return of an agent is the mean of `return_mean` over the last 10 iterations of
its train.nc.  Training resumes from the snapshots in --out, so an interrupted run can be
restarted with the same command.

    python benchmarks/train_returns.py                                  # ppo ppo_m trpo, seed 0, 10^6 steps
    python benchmarks/train_returns.py --algos ppo trpo --jobs 2        # two processes
    python benchmarks/train_returns.py --steps 20480 --out /tmp/x       # 10 iterations: a throughput probe
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

LAST = 10  # iterations averaged for the final return

# Published returns after ~10^6 steps, each with its source.  None of them is on Hopper-v5 (see REF_NOTE).
REFERENCES = {
    ("Hopper-v5", "ppo"): [
        ("2513 [2391, 2632]", "Engstrom et al. 2020, 'Implementation Matters in Deep Policy Gradients' "
                              "(arXiv 2005.12729), Table 2: Hopper-v2, 488x2048 steps, mean [95% CI]"),
        ("2382.86 +- 271.74", "CleanRL ppo_continuous_action, docs.cleanrl.dev/rl-algorithms/ppo/ "
                              "'MuJoCo v4' table: Hopper-v4, 1M steps, mean +- std over seeds"),
    ],
    ("Hopper-v5", "ppo_m"): [
        ("2142 [2008, 2279]", "Engstrom et al. 2020, Table 2 (PPO-M): Hopper-v2, 488x2048 steps, mean [95% CI]"),
    ],
    ("Hopper-v5", "trpo"): [
        ("2043 [1948, 2136]", "Engstrom et al. 2020, Table 2: Hopper-v2, 488x2048 steps, mean [95% CI]"),
    ],
}
REF_NOTE = ("references are on Hopper-v2 (Engstrom et al.) and Hopper-v4 (CleanRL); we run Hopper-v5. "
            "The Engstrom numbers were transcribed from third-party copies of the paper; check them "
            "against arXiv 2005.12729 Table 2 before quoting them.")


def agent_dir(out: Path, env: str, algo: str, seed: int, iterations: int) -> Path:
    # the iteration count is in the name: snapshots of another length would not resume (params differ)
    return out / env / algo / f"seed{seed}-it{iterations}"


def train_one(env: str, algo: str, seed: int, iterations: int, out: str, threads: int, progress: bool) -> dict:
    """One agent, in a worker process: train (or resume), then read its final return from train.nc."""
    import xarray as xr

    from pgprobe.train import latest_snapshot, run

    _common.pin_threads(threads)
    agent = _common.agent(algo, iterations, env)
    spi = agent["train"]["steps_per_iter"]
    path = agent_dir(Path(out), env, algo, seed, iterations)
    snap = latest_snapshot(path, iterations)
    start = int(snap.stem[4:]) if snap else 0
    t0 = time.perf_counter()
    nc = run(agent, seed, path, progress=progress)
    wall = time.perf_counter() - t0
    with xr.open_dataset(nc) as ds:
        returns = ds["return_mean"].values
        steps = int(ds["env_steps"].values[-1])
    last = returns[-LAST:]
    return {"env": env, "algo": algo, "seed": seed, "final_return": float(np.nanmean(last)) if np.isfinite(last).any() else None,
            "iterations": iterations, "env_steps": steps, "steps_trained_now": (iterations - start) * spi,
            "wall_s": wall, "steps_per_s": (iterations - start) * spi / wall if iterations > start else None,
            "train_nc": str(nc)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1_000_000, help="env steps per agent (rounded down to whole iterations)")
    p.add_argument("--envs", nargs="+", default=[_common.ENV_ID])
    p.add_argument("--algos", nargs="+", default=["ppo", "ppo_m", "trpo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--jobs", type=int, default=1, help="agents trained in parallel processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", type=Path, default=Path("/tmp/pgprobe-bench-returns"))
    p.add_argument("--progress", action="store_true", help="tqdm bars (messy with --jobs > 1)")
    args = p.parse_args(argv)

    spi = _common.agent(args.algos[0], 1)["train"]["steps_per_iter"]
    iterations = args.steps // spi
    if iterations < 1:
        p.error(f"--steps must be at least steps_per_iter ({spi})")
    for algo in args.algos:
        _common.agent(algo, iterations)  # unknown algorithm -> ConfigError now, not in a worker
    jobs = [(e, a, s) for e in args.envs for a in args.algos for s in args.seeds]
    print(f"train_returns: {', '.join(args.algos)} on {', '.join(args.envs)}, seeds {args.seeds}, "
          f"{iterations} iterations x {spi} = {iterations * spi} env steps each; {args.jobs} parallel job(s), "
          f"{args.threads} torch thread(s) each")
    print(f"  {_common.machine()}")
    print(f"  out: {args.out}  (progress: tail -f {args.out}/<env>/<algo>/seed<S>-it{iterations}/train.log)",
          flush=True)

    results, failed = [], []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futs = {pool.submit(train_one, e, a, s, iterations, str(args.out), args.threads, args.progress): (e, a, s)
                for e, a, s in jobs}
        for fut in as_completed(futs):
            e, a, s = futs[fut]
            try:
                r = fut.result()
            except Exception as exc:  # report and go on with the others
                failed.append((e, a, s, exc))
                print(f"  {e} {a} seed {s}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            results.append(r)
            sps = f"{r['steps_per_s']:.0f} steps/s" if r["steps_per_s"] else "already trained"
            fr = "n/a" if r["final_return"] is None else f"{r['final_return']:.1f}"
            print(f"  {e} {a} seed {s}: final return {fr}  ({sps}, {r['wall_s']:.0f}s)  {r['train_nc']}", flush=True)
    wall = time.perf_counter() - t0

    print(f"\nfinal return = mean of return_mean over the last {min(LAST, iterations)} iterations "
          f"(after {iterations * spi} env steps)")
    print(f"{'env':13s}{'algo':7s}{'seeds':>6s}{'return':>10s}{'(std)':>9s}{'steps/s':>10s}   reference ~1M steps  [source]")
    for env, algo in [(e, a) for e in args.envs for a in args.algos]:
        rs = [r for r in results if r["algo"] == algo and r["env"] == env]
        finals = [r["final_return"] for r in rs if r["final_return"] is not None]
        ret = f"{np.mean(finals):10.1f}" if finals else f"{'n/a':>10s}"
        std = f"{np.std(finals, ddof=1):9.1f}" if len(finals) > 1 else f"{'':9s}"
        speeds = [r["steps_per_s"] for r in rs if r["steps_per_s"]]
        sps = f"{np.mean(speeds):10.0f}" if speeds else f"{'n/a':>10s}"
        refs = REFERENCES.get((env, algo), [("-", "no published reference")])
        for i, (val, src) in enumerate(refs):
            head = f"{env:13s}{algo:7s}{len(rs):6d}{ret}{std}{sps}" if i == 0 else " " * 55
            print(f"{head}   {val:19s}  [{src}]")
    trained = sum(r["steps_trained_now"] for r in results)
    if trained:
        print(f"\naggregate: {trained} env steps in {wall:.0f}s = {trained / wall:.0f} env-steps/s over "
              f"{args.jobs} process(es); steps/s above is per agent (its own wall time)")
    print(f"note: {REF_NOTE}")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / f"summary-it{iterations}.json"
    summary.write_text(json.dumps({"results": results, "references": {f"{e}/{a}": v for (e, a), v in REFERENCES.items()}, "note": REF_NOTE,
                                   "wall_s": wall}, indent=1))
    print(f"summary: {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
