"""Gradient probes (figs 1, 2, 4): env-steps/s of each probe beside the physics floor, and what the
paper-scale figures cost.

Each probe (`grad_estimates`, `true_gradient`, `true_value`, `baseline_grads`) runs on a real
checkpoint, as the pipeline runs it (one process, one thread), at a small size.  Its env-steps/s is
the pairs it really collects divided by the wall time of the whole probe call (rollouts, GAE, the
gradients, the value fit).  The floor is the landscape benchmark's: the probe's own trajectories,
recorded from an instrumented run of the same probe (same seeds, same steps; the script checks the
artifact is identical), replayed open-loop through `mujoco.rollout` on one thread.  The split
"sampling" (time inside the trainer's rollout) / "rest" (advantages, backward passes, fitting) says
where the remaining time goes.

Paper-scale cost: the env steps each probe takes per checkpoint follow from its params (`pairs`
below; checked against the instrumented count at the small size, so the formula cannot drift from
the code), times the checkpoints each figure's block in params.yaml asks for.  Core-hours use the
env-steps/s measured here on the same env (the checkpoint's), and are printed beside what the
physics floor alone would take.  Training the agents (10^6 steps each, shared by every figure) and
the checkpoints' replay are listed apart.

    python benchmarks/gradient_probes_throughput.py                # quick-run checkpoints if present, ~3 min
    python benchmarks/gradient_probes_throughput.py --checkpoint data/quick/checkpoints/Humanoid-v5/trpo/seed0/iter000150.nc
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from landscape_throughput import Floor, _Recorder  # noqa: E402

PROBES = ("grad_estimates", "true_gradient", "true_value", "baseline_grads")
FIGURE_PROBES = {"fig1": ("grad_estimates",), "fig2": ("grad_estimates", "true_gradient"),
                 "fig4": ("true_value", "baseline_grads")}
DEFAULT_CHECKPOINTS = ("data/quick/checkpoints/Humanoid-v5/trpo/seed0/iter000150.nc",
                       "data/quick/checkpoints/Walker2d-v5/ppo/seed0/iter000150.nc")


# -- env steps per probe call, from its params -------------------------------------------------------
def _rounded(n: int, num_envs: int) -> int:
    """Pairs of a collection of n pairs: whole steps of every env (ProbeAgent.steps_per_env)."""
    return -(-int(n) // num_envs) * num_envs


def pairs(probe: str, cfg: dict, batch_size: int, num_envs: int) -> int:
    """Env steps one call of `probe` takes (module docstrings: the largest n of a repeat once, its
    prefixes for the smaller; g* and the true value in chunks)."""
    if probe in ("grad_estimates", "baseline_grads"):
        return cfg["repeats"] * _rounded(max([*cfg["n_grid"], batch_size]), num_envs)
    if probe == "true_gradient":
        chunk = cfg.get("chunk") or batch_size
        return -(-cfg["n_star"] // chunk) * _rounded(chunk, num_envs)
    if probe == "true_value":
        return -(-cfg["n_fit"] // cfg["chunk"]) * _rounded(cfg["chunk"], num_envs)
    raise KeyError(probe)


# -- running one probe -------------------------------------------------------------------------------
def small_cfgs(paper: dict, batch: int, scale: int) -> dict:
    """Paper params with small sample counts (`scale` x the agent's batch for the largest collection)."""
    p = {k: dict(paper["probes"][k]) for k in PROBES}
    grid = [batch // 2, batch, scale * batch]
    p["grad_estimates"].update(n_grid=grid, repeats=2)
    p["baseline_grads"].update(n_grid=grid, repeats=2)
    p["true_gradient"].update(n_star=2 * scale * batch, chunk=None)
    p["true_value"].update(n_fit=2 * scale * batch, chunk=scale * batch, epochs=2)
    return p


def run_probe(probe: str, ckpt: Path, cfg: dict, tv_path: Path | None):
    from pgprobe.probes import baselines, gradients
    from pgprobe.probes.api import ProbeInputs

    paths = {"checkpoint": ckpt} | ({"probe:true_value": tv_path} if probe == "baseline_grads" else {})
    fn = getattr(gradients if probe in ("grad_estimates", "true_gradient") else baselines, probe)
    return fn(ProbeInputs(paths), cfg, progress=False)


class Sampling:
    """Wall time spent in ProbeAgent.collect_batch (the trainer's rollout), while installed."""

    def __enter__(self):
        from pgprobe.probes import api

        self.api, self.real, self.seconds = api, api.ProbeAgent.collect_batch, 0.0

        def timed(agent, *a, **kw):
            t0 = time.perf_counter()
            try:
                return self.real(agent, *a, **kw)
            finally:
                self.seconds += time.perf_counter() - t0

        api.ProbeAgent.collect_batch = timed
        return self

    def __exit__(self, *exc):
        self.api.ProbeAgent.collect_batch = self.real


def recorded(probe, ckpt, cfg, tv_path, chunk: int):
    """The probe with every env wrapped in a recorder: (dataset, env steps, chunks for the floor)."""
    from pgprobe.probes import api

    chunks, recorders, real = [], [], api.VecEnv

    class RecordingVecEnv(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.stepper = _Recorder(self.stepper, chunk, chunks)
            recorders.append(self.stepper)

    api.VecEnv = RecordingVecEnv
    try:
        ds = run_probe(probe, ckpt, cfg, tv_path)
    finally:
        api.VecEnv = real
    return ds, sum(r.steps for r in recorders), chunks


def _same(a, b) -> bool:
    return all(np.array_equal(a[k].values, b[k].values, equal_nan=True) for k in a.data_vars)


def bench_probe(probe, ckpt, cfg, tv_path, agent, args) -> dict:
    ds0, steps, chunks = recorded(probe, ckpt, cfg, tv_path, args.chunk)
    expected = pairs(probe, cfg, agent.batch_size, agent.num_envs)
    if steps != expected:
        raise SystemExit(f"{probe}: took {steps} env steps, pairs() says {expected}: fix pairs()")
    floor = Floor(agent.env, chunks, 1)
    assert floor.env_steps == steps, (floor.env_steps, steps)
    probe_runs, floor_runs = [], []
    for r in range(args.rounds):
        for what in (["probe", "floor"] if r % 2 == 0 else ["floor", "probe"]):
            if what == "floor":
                wall, _, err = floor.run()
                floor_runs.append((steps / wall, wall, err))
                continue
            with Sampling() as s:
                t0 = time.perf_counter()
                ds = run_probe(probe, ckpt, cfg, tv_path)
                wall = time.perf_counter() - t0
            if not _same(ds, ds0):
                raise SystemExit(f"{probe}: the timed run differs from the recorded one: steps unknown")
            probe_runs.append((steps / wall, wall, s.seconds / wall))
    floor.close()
    best_p, best_f = max(probe_runs), max(floor_runs)
    print(f"  {probe:15s}{steps:9d} steps  probe {best_p[0]:7.0f}/s  floor {best_f[0]:7.0f}/s  "
          f"ratio {best_p[0] / best_f[0]:5.2f}  sampling {100 * best_p[2]:4.0f}% of the probe's wall  "
          f"(replay error {best_f[2]:.1e})", flush=True)
    return {"probe": probe, "env": agent.env, "steps": steps, "rate": best_p[0], "floor": best_f[0],
            "sampling": best_p[2], "rounds": [p[0] / f[0] for p, f in zip(probe_runs, floor_runs)]}


def bench_checkpoint(ckpt: Path, paper: dict, args, tmp: Path) -> list[dict]:
    from pgprobe.pipeline import artifacts
    from pgprobe.probes.api import ProbeAgent

    agent = ProbeAgent.load(ckpt)
    cfgs = small_cfgs(paper, agent.batch_size, args.scale)
    print(f"\n{agent.env} {agent.algo} seed {agent.seed} iteration {agent.iteration} ({ckpt}): batch "
          f"{agent.batch_size}, {agent.num_envs} env(s), {agent.params_count} policy params", flush=True)
    tv_path = tmp / f"true_value-{agent.env}.nc"
    tv = run_probe("true_value", ckpt, cfgs["true_value"], None)
    tv.attrs.update(artifacts.provenance("probe_true_value", {}, "probe", ("pgprobe.probes.baselines",)))
    artifacts.write_nc(tv, tv_path)
    return [bench_probe(p, ckpt, cfgs[p], tv_path, agent, args) for p in args.probes]


def fresh_checkpoint(env: str, algo: str, tmp: Path) -> Path:
    """An untrained agent's checkpoint at iteration 0 (short episodes: cheaper physics than a trained agent's)."""
    from pgprobe import checkpoint, train

    a = _common.agent(algo, 1, env)
    train.run(a, 0, tmp / f"{env}-{algo}", progress=False)
    return checkpoint.make(a, 0, 0, tmp / f"{env}-{algo}", tmp / f"{env}-{algo}-t0.nc")


# -- paper-scale cost --------------------------------------------------------------------------------
def paper_cost(paper: dict, results: list[dict]) -> None:
    from pgprobe.pipeline import dag

    rate = {(r["env"], r["probe"]): (r["rate"], r["floor"]) for r in results}
    batch, envs = paper["train"]["steps_per_iter"], paper["train"]["num_envs"]
    print("\npaper scale (params.yaml): env steps per figure and core-hours at the rates measured above "
          "(floor: the physics alone)")
    print(f"{'figure':7s}{'probe':16s}{'ckpts':>6s}{'steps/ckpt':>12s}{'env steps':>12s}{'core-h':>9s}{'floor':>8s}")
    for fig, probes in FIGURE_PROBES.items():
        agents = dag.figure_agents(paper, fig)
        iters = paper["figures"][fig]["iterations"]
        total = hours = floor_hours = 0.0
        for probe in probes:
            per = pairs(probe, paper["probes"][probe], batch, envs)
            steps = per * len(iters) * len(agents)
            h = fh = 0.0
            for env in {a[0] for a in agents}:
                share = steps * sum(a[0] == env for a in agents) / len(agents)
                got = rate.get((env, probe)) or next((v for (e, p), v in rate.items() if p == probe), None)
                h += share / got[0] / 3600 if got else np.nan
                fh += share / got[1] / 3600 if got else np.nan
            total, hours, floor_hours = total + steps, hours + h, floor_hours + fh
            print(f"{fig:7s}{probe:16s}{len(iters) * len(agents):6d}{per:12.3g}{steps:12.3g}{h:9.1f}{fh:8.1f}")
        print(f"{fig:7s}{'total':16s}{'':6s}{'':12s}{total:12.3g}{hours:9.1f}{floor_hours:8.1f}")
    agents = {a for fig in FIGURE_PROBES for a in dag.figure_agents(paper, fig)}
    steps = paper["train"]["iterations"] * batch
    print(f"training: {len(agents)} agents x {steps:.3g} steps = {len(agents) * steps:.3g} env steps (shared; "
          "see train_throughput.py); a probe reuses fig 1's estimates in fig 2.")
    missing = {a[0] for fig in FIGURE_PROBES for a in dag.figure_agents(paper, fig)} - {r["env"] for r in results}
    if missing:
        print(f"not measured here: {', '.join(sorted(missing))} (its core-hours use another env's rate)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="+", type=Path, help="checkpoint .nc files (default: the quick run's, "
                   "Humanoid TRPO and Walker2d PPO at iteration 150, or fresh untrained agents)")
    p.add_argument("--probes", nargs="+", default=list(PROBES), choices=PROBES)
    p.add_argument("--scale", type=int, default=4, help="largest collection = this x the agent's batch")
    p.add_argument("--rounds", type=int, default=2, help="probe and floor runs, alternated")
    p.add_argument("--chunk", type=int, default=8, help="env steps per open-loop rollout in the floor")
    args = p.parse_args(argv)
    _common.pin_threads(1)
    from pgprobe.pipeline import config

    paper = config.load(_common.PARAMS)
    print("gradient_probes_throughput: each probe (1 process, 1 thread) vs mujoco.rollout (1 thread) on its own "
          f"trajectories; {args.rounds} rounds, best of each")
    print(f"  {_common.machine()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpts = args.checkpoint or [_common.ROOT / c for c in DEFAULT_CHECKPOINTS if (_common.ROOT / c).exists()]
        if not ckpts:
            print("no quick-run checkpoints: using untrained agents at iteration 0 (short episodes)")
            ckpts = [fresh_checkpoint("Humanoid-v5", "trpo", tmp), fresh_checkpoint("Walker2d-v5", "ppo", tmp)]
        results = [r for c in ckpts for r in bench_checkpoint(c, paper, args, tmp)]
    print("\nratio = probe env-steps/s / floor env-steps/s (same trajectories, same run); per round: "
          + "; ".join(f"{r['env']} {r['probe']} " + "/".join(f"{x:.2f}" for x in r["rounds"]) for r in results))
    paper_cost(paper, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
