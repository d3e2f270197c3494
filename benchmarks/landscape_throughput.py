"""Landscape throughput: env-steps/s of the batched true-reward probe beside the MuJoCo physics floor.

The probe is `pgprobe.evaluate.parallel_episode_returns`, the call the landscape probe makes:
K grid points' parameter vectors evaluated together (one batched NumPy forward for all of
them per time step) over K x M environments, split over `--threads` worker processes.  Its
env-steps/s is the number of env steps it really takes (complete episodes) divided by the
wall time of the whole call, spawning workers included.

The floor is the same physics without Python or a policy: the probe's own trajectories
(recorded from an identical single-process run: `episode_returns` gives the same numbers as
`parallel_episode_returns`) replayed open-loop through `mujoco.rollout` with one thread per
core.  Each episode is cut into chunks of `--chunk` env steps; a chunk starts from the exact
recorded MuJoCo state (mjSTATE_FULLPHYSICS plus qacc_warmstart) and applies the recorded ctrl
for `frame_skip` physics steps per env step, so the floor replays exactly the probe's physics
steps.  Floor env-steps/s = physics steps / frame_skip / time of the rollout calls.

The two alternate over `--rounds` on the same machine; the verdict compares the best of each
(load from other processes only ever slows a run down).  Beside the wall-clock ratio, the
CPU time per env step of both (getrusage of this process and its reaped pool workers) gives a
ratio that load from other processes barely moves.  Also printed: the probe in one process
(instrumented, so slightly slow), the fixed cost of one probe call (spawn, imports, env
construction: a call with min_steps=1), and a single gymnasium env (gym.make, wrappers on).

    python benchmarks/landscape_throughput.py                       # Hopper + Humanoid, quick-profile sizes, ~5 min on 2 cores
    python benchmarks/landscape_throughput.py --envs Hopper-v5 --steps-per-point 4000 --strict
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

TARGETS = {"Humanoid-v5": 0.8, "Hopper-v5": 0.5}  # probe / floor env-steps/s, from the issue


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) and of its reaped children (pool workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# -- the probe's inputs -----------------------------------------------------------------------------
def make_weights(env_id: str, points: int, hidden: list[int], seed: int):
    """A random xavier GaussianPolicy for `env_id` and `points` parameter vectors on a plane around it."""
    import torch

    from pgprobe.envs import make_unwrapped
    from pgprobe.nets import GaussianPolicy, PolicyWeights, flat_params
    from pgprobe.probes.landscape import random_direction

    env, _ = make_unwrapped(env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    torch.manual_seed(seed)
    policy = GaussianPolicy(obs_dim, act_dim, hidden, "xavier")
    rng = np.random.default_rng([seed, 1])
    theta = flat_params(policy).numpy().astype(np.float64)
    d1 = random_direction(policy, rng, "unit", True)
    d2 = random_direction(policy, rng, "unit", True)
    side = math.ceil(math.sqrt(points))
    grid = np.linspace(-1.0, 1.0, side)
    xy = np.array([(x, y) for x in grid for y in grid])[:points]
    thetas = theta[None] + xy[:, :1] * d1 + xy[:, 1:] * d2
    return PolicyWeights.from_flat(policy, thetas), obs_dim, act_dim


# -- instrumented single-process run: counts steps, records chunks for the floor --------------------
class _Recorder:
    """Wraps a VecEnv's stepper: counts steps and records chunks (start state, warmstart, ctrls, end state) per env."""

    def __init__(self, stepper, chunk: int, out: list):
        import mujoco

        self.stepper, self.chunk, self.out = stepper, chunk, out
        self.datas = stepper.datas
        self._spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._nstate = mujoco.mj_stateSize(self.datas[0].model, self._spec)
        self._cur: list = [None] * len(self.datas)
        self.steps = 0

    def __getattr__(self, name):
        return getattr(self.stepper, name)

    def _state(self, i: int) -> np.ndarray:
        import mujoco

        buf = np.empty(self._nstate)
        mujoco.mj_getState(self.datas[i].model, self.datas[i], buf, self._spec)
        return buf

    def _close_chunk(self, i: int) -> None:
        if self._cur[i] is not None:
            state0, warm0, ctrls = self._cur[i]
            self.out.append((state0, warm0, np.array(ctrls), self._state(i)))
            self._cur[i] = None

    def reset(self, i: int, seed: int):
        self._close_chunk(i)
        return self.stepper.reset(i, seed)

    def step(self, idx, actions):
        for r, i in enumerate(idx):
            if self._cur[i] is None:
                self._cur[i] = (self._state(i), self.datas[i].qacc_warmstart.copy(), [])
            self._cur[i][2].append(np.asarray(actions[r], np.float64))
        out = self.stepper.step(idx, actions)
        self.steps += len(idx)
        for i in idx:
            if len(self._cur[i][2]) == self.chunk:
                self._close_chunk(i)
        return out

    def close(self) -> None:
        for i in range(len(self.datas)):
            self._close_chunk(i)
        self.stepper.close()


def recorded_run(env_id, weights, obs_mean, obs_std, obs_clip, min_steps, m, seed, chunk, clip_actions):
    """`episode_returns` in this process with every env wrapped in a _Recorder: (returns, steps, chunks, wall)."""
    from pgprobe import evaluate

    chunks: list = []
    recorders: list[_Recorder] = []
    real = evaluate.VecEnv

    class RecordingVecEnv(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.stepper = _Recorder(self.stepper, chunk, chunks)
            recorders.append(self.stepper)

    evaluate.VecEnv = RecordingVecEnv
    try:
        t0 = time.perf_counter()
        rets = evaluate.episode_returns(env_id, weights, obs_mean, obs_std, obs_clip, min_steps, m, seed,
                                        clip_actions=clip_actions)
        wall = time.perf_counter() - t0
    finally:
        evaluate.VecEnv = real
    return rets, sum(r.steps for r in recorders), chunks, wall


# -- the physics floor --------------------------------------------------------------------------------
class Floor:
    """The recorded chunks replayed open-loop with mujoco.rollout, one MjData per thread."""

    def __init__(self, env_id: str, chunks: list, threads: int):
        import mujoco
        from mujoco import rollout

        from pgprobe.envs import make_unwrapped

        env, _ = make_unwrapped(env_id)
        self.model, self.frame_skip, self.dt = env.model, int(env.frame_skip), float(env.model.opt.timestep)
        env.close()
        self.datas = [mujoco.MjData(self.model) for _ in range(threads)]
        self.pool = rollout.Rollout(nthread=threads)
        self.groups = []  # one rollout call per chunk length: (state0, warm0, control, end_state)
        for n in sorted({len(c[2]) for c in chunks}):
            sel = [c for c in chunks if len(c[2]) == n]
            control = np.repeat(np.stack([c[2] for c in sel]), self.frame_skip, axis=1)  # env step -> frame_skip
            self.groups.append((np.stack([c[0] for c in sel]), np.stack([c[1] for c in sel]),
                                np.ascontiguousarray(control), np.stack([c[3] for c in sel])))
        self.env_steps = sum(g[2].shape[0] * g[2].shape[1] for g in self.groups) // self.frame_skip

    def run(self) -> tuple[float, float, float]:
        """Replays every chunk once: (wall seconds, CPU seconds, max |replayed - recorded| end state)."""
        err = wall = cpu = 0.0
        for state0, warm0, control, end in self.groups:
            c0, t0 = cpu_seconds(), time.perf_counter()
            state, _ = self.pool.rollout(self.model, self.datas, state0, control, initial_warmstart=warm0)
            wall += time.perf_counter() - t0
            cpu += cpu_seconds() - c0
            err = max(err, float(np.max(np.abs(state[:, -1] - end))))
        return wall, cpu, err

    def close(self) -> None:
        self.pool.close()


# -- reference: one gymnasium env, wrappers on ----------------------------------------------------------
def gym_single(env_id: str, seconds: float, seed: int) -> float:
    import gymnasium as gym

    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    acts = np.clip(rng.standard_normal((4096, *env.action_space.shape)), low, high).astype(np.float32)
    env.reset(seed=seed)
    n, t0 = 0, time.perf_counter()
    while True:
        for a in acts:
            _, _, term, trunc, _ = env.step(a)
            n += 1
            if term or trunc:
                env.reset()
        wall = time.perf_counter() - t0
        if wall >= seconds:
            break
    env.close()
    return n / wall


def bench_env(env_id: str, args) -> dict:
    from pgprobe.evaluate import parallel_episode_returns

    k, m = args.points, args.envs_per_point
    min_steps = math.ceil(args.steps_per_point / m)  # evaluate.py's min_steps is per env slot
    weights, obs_dim, act_dim = make_weights(env_id, k, args.hidden, args.seed)
    obs_mean, obs_std = np.zeros(obs_dim), np.ones(obs_dim)
    call = (env_id, weights, obs_mean, obs_std, args.obs_clip)
    print(f"\n{env_id}: obs {obs_dim}, act {act_dim}, K={k} points x M={m} envs = {k * m} envs, "
          f"min_steps {min_steps} per env slot (>= {min_steps * m} per point)", flush=True)

    c0 = cpu_seconds()
    rets1, steps, chunks, wall1 = recorded_run(*call, min_steps, m, args.seed, args.chunk, args.clip_actions)
    cpu1 = cpu_seconds() - c0
    n_ep = sum(len(r) for r in rets1)
    print(f"  1 process (instrumented)  {steps / wall1:8.0f} env-steps/s  {1e6 * cpu1 / steps:6.0f} cpu-us/step   "
          f"({steps} steps, {n_ep} episodes, mean length {steps / n_ep:.1f}, {wall1:.2f}s)", flush=True)

    c0, t0 = cpu_seconds(), time.perf_counter()
    parallel_episode_returns(*call, 1, m, args.seed, args.threads, clip_actions=args.clip_actions)
    fixed, fixed_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"  fixed cost of one call (min_steps=1): {fixed:.2f}s wall, {fixed_cpu:.2f} cpu-s", flush=True)

    floor = Floor(env_id, chunks, args.threads)
    assert floor.env_steps == steps, (floor.env_steps, steps)
    probe, flo = [], []  # (env-steps/s, cpu-us/step, wall)
    for r in range(args.rounds):
        order = ["probe", "floor"] if r % 2 == 0 else ["floor", "probe"]
        for what in order:
            if what == "probe":
                c0, t0 = cpu_seconds(), time.perf_counter()
                rets = parallel_episode_returns(*call, min_steps, m, args.seed, args.threads,
                                                clip_actions=args.clip_actions)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                if rets != rets1:
                    raise SystemExit("parallel_episode_returns differs from the single-process run: "
                                     "its step count is not known")
                probe.append((steps / wall, 1e6 * cpu / steps, wall))
                print(f"  round {r + 1} probe ({args.threads} workers) {probe[-1][0]:8.0f} env-steps/s  "
                      f"{probe[-1][1]:6.0f} cpu-us/step   ({wall:.2f}s)", flush=True)
            else:
                wall, cpu, err = floor.run()
                flo.append((steps / wall, 1e6 * cpu / steps, wall))
                print(f"  round {r + 1} floor ({args.threads} threads) {flo[-1][0]:8.0f} env-steps/s  "
                      f"{flo[-1][1]:6.0f} cpu-us/step   ({wall:.2f}s, {len(floor.groups)} rollout calls, "
                      f"frame_skip {floor.frame_skip}, replay error {err:.1e})", flush=True)
    floor.close()
    gym_sps = gym_single(env_id, args.gym_seconds, args.seed)
    print(f"  single gymnasium env (gym.make, 1 process) {gym_sps:8.0f} env-steps/s", flush=True)
    return {"env": env_id, "probe": probe, "floor": flo, "serial": steps / wall1, "fixed": fixed,
            "fixed_cpu": fixed_cpu, "gym": gym_sps, "steps": steps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["Hopper-v5", "Humanoid-v5"])
    p.add_argument("--threads", type=int, default=2, help="probe worker processes = floor rollout threads")
    # defaults: config/quick.yaml's grid (7 x 7) and envs per point (4), 4000 pairs per point
    p.add_argument("--points", type=int, default=49, help="grid points K (parameter vectors)")
    p.add_argument("--envs-per-point", type=int, default=4, help="environments per point M")
    p.add_argument("--steps-per-point", type=int, default=4000,
                   help="min env steps per point (min_steps = ceil(this / M) per env slot)")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--obs-clip", type=float, default=10.0)
    p.add_argument("--chunk", type=int, default=8, help="env steps per open-loop rollout in the floor")
    p.add_argument("--rounds", type=int, default=2, help="probe and floor runs, alternated")
    p.add_argument("--gym-seconds", type=float, default=3.0, help="duration of the single-gymnasium-env reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-actions", action="store_true",
                   help="clip actions to the action space (default: raw actions, the authors' code)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    _common.pin_threads(1)

    print(f"landscape_throughput: parallel_episode_returns ({args.threads} workers) vs mujoco.rollout "
          f"({args.threads} threads); K={args.points}, M={args.envs_per_point}, "
          f">= {args.steps_per_point} steps/point, policy {args.hidden} tanh xavier, obs clip {args.obs_clip}, "
          f"{'clipped' if args.clip_actions else 'raw'} actions")
    print(f"  {_common.machine()}")
    results = [bench_env(e, args) for e in args.envs]

    print(f"\nbest of {args.rounds} round(s) each, env-steps/s; ratio = probe/floor, wall clock (the target)")
    print(f"{'env':13s}{'probe':>8s}{'floor':>8s}{'ratio':>7s}{'target':>7s}  {'verdict':8s}"
          f"{'per round':>12s}{'cpu ratio':>10s}{'w/o fixed':>10s}{'1-proc':>8s}{'gym env':>8s}")
    ok = True
    for res in results:
        bp, bf = max(res["probe"]), max(res["floor"])
        ratio = bp[0] / bf[0]
        target = TARGETS.get(res["env"])
        verdict = "-" if target is None else ("PASS" if ratio >= target else "FAIL")
        ok &= verdict != "FAIL"
        rounds = "/".join(f"{p[0] / f[0]:.2f}" for p, f in zip(res["probe"], res["floor"]))
        floor_cpu, probe_cpu = min(f[1] for f in res["floor"]), min(p[1] for p in res["probe"])
        loop_cpu = probe_cpu - 1e6 * res["fixed_cpu"] / res["steps"]
        print(f"{res['env']:13s}{bp[0]:8.0f}{bf[0]:8.0f}{ratio:7.2f}"
              f"{'-' if target is None else f'{target:.2f}':>7s}  {verdict:8s}{rounds:>12s}"
              f"{floor_cpu / probe_cpu:10.2f}{floor_cpu / loop_cpu:10.2f}{res['serial']:8.0f}{res['gym']:8.0f}")
    print("cpu ratio: floor cpu-us/step / probe cpu-us/step, all processes (robust to load from other processes).")
    print("w/o fixed: the same with the cpu-s of a min_steps=1 call (spawn, imports, env construction) taken off")
    print("           the probe: the ceiling for long calls, if its workers scaled perfectly.")
    print("1-proc: the instrumented single-process probe; gym env: one gym.make env in one process (env-steps/s).")
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
