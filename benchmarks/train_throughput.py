"""Training throughput: env-steps/s of pgprobe's PPO vs Stable-Baselines3 PPO on Hopper-v5.

Whole iterations are timed (sampling 2048 steps + the update), after warm-up iterations
that are not counted.  Both run with the same settings: 1 env, 2048 steps per iteration,
10 epochs of 32 minibatches (64 pairs each), separate 64-64 tanh policy and value MLPs,
observation and reward normalisation (clip 10), linearly annealed learning rate,
torch.set_num_threads(1), CPU.

Each measurement runs in a fresh subprocess, and the two implementations alternate
(ABBA order over rounds) so that load from other processes on a shared machine hits
both alike.  The verdict uses the best run of each (noise only ever slows a run down);
the median and the per-round ratios are printed beside it.

    python benchmarks/train_throughput.py                 # 2 rounds x 5 timed iterations
    python benchmarks/train_throughput.py --iterations 10 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

STEPS_PER_ITER, EPOCHS, MINIBATCHES, HIDDEN = 2048, 10, 32, [64, 64]

DIFFERENCES = [
    "SB3 trains policy and value with ONE Adam on pi_loss + 0.5*vf_loss (320 steps/iter); pgprobe uses two "
    "Adams, value fit first then policy (2 x 320 steps/iter on separate nets), as the authors' code does",
    "SB3 clips the global gradient norm at 0.5 every minibatch; pgprobe's params have max_grad_norm: null",
    "learning rates: SB3 one lr 3e-4 -> 0 (linear); pgprobe policy 3e-4, value 2.5e-4, both -> 0 over train.iterations",
    "SB3 steps the env through gym.make wrappers (TimeLimit, OrderEnforcing, PassiveEnvChecker) + Monitor + "
    "DummyVecEnv + VecNormalize and runs the policy in torch float32 per step; pgprobe steps bare MjData "
    "(mujoco_step: the unwrapped env's numbers, bit for bit) with its own time limit/normalisers and a NumPy float64 copy of the policy",
    "pgprobe resets the env at the start of every iteration (reset_every_iter: true); SB3 carries episodes over",
    "pgprobe computes per-iteration diagnostics (KL, likelihood ratios, surrogate, explained variance) SB3 does not",
    "'sample' = env stepping only for pgprobe (GAE is in 'update'); for SB3 it includes GAE (compute_returns_and_advantage)",
]


# -- workers (one measurement each, in a fresh process) ---------------------------------------------
def run_ours(iterations: int, warmup: int, seed: int) -> dict:
    from pgprobe.train import Trainer

    agent = _common.agent("ppo", iterations + warmup)
    t, a = agent["train"], agent["algo_cfg"]
    got = (t["num_envs"], t["steps_per_iter"], a["epochs"], a["value_epochs"], a["minibatches"], list(t["hidden"]))
    want = (1, STEPS_PER_ITER, EPOCHS, EPOCHS, MINIBATCHES, HIDDEN)
    if got != want:
        raise SystemExit(f"params.yaml no longer matches the benchmark settings: {got} != {want}")
    trainer = Trainer(agent, seed)
    for _ in range(warmup):
        trainer.step()
    sample = update = 0.0
    t0 = time.perf_counter()
    for _ in range(iterations):
        stats, _ = trainer.step()
        sample += stats["_time_sample"]
        update += stats["_time_update"]
    wall = time.perf_counter() - t0
    trainer.venv.close()
    return {"wall": wall, "sample": sample, "update": update, "steps": iterations * STEPS_PER_ITER}


def run_sb3(iterations: int, warmup: int, seed: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    class Stamps(BaseCallback):
        def __init__(self):
            super().__init__()
            self.starts, self.ends = [], []

        def _on_rollout_start(self) -> None:
            self.starts.append(time.perf_counter())

        def _on_rollout_end(self) -> None:
            self.ends.append(time.perf_counter())

        def _on_step(self) -> bool:
            return True

    env = make_vec_env(_common.ENV_ID, n_envs=1, seed=seed)
    env = VecNormalize(env, norm_obs=True, norm_reward=True, clip_obs=10.0, clip_reward=10.0, gamma=0.99)
    model = PPO("MlpPolicy", env, n_steps=STEPS_PER_ITER, batch_size=STEPS_PER_ITER // MINIBATCHES,
                n_epochs=EPOCHS, learning_rate=lambda frac: 3e-4 * frac, gamma=0.99, gae_lambda=0.95,
                clip_range=0.2,
                policy_kwargs=dict(net_arch=dict(pi=HIDDEN, vf=HIDDEN), activation_fn=torch.nn.Tanh),
                device="cpu", seed=seed, verbose=0)
    cb = Stamps()
    model.learn(total_timesteps=STEPS_PER_ITER * (warmup + iterations), callback=cb)
    t_end = time.perf_counter()
    starts, ends = cb.starts[warmup:], cb.ends[warmup:]
    assert len(starts) == len(ends) == iterations, (len(cb.starts), len(cb.ends))
    sample = sum(e - s for s, e in zip(starts, ends))
    wall = t_end - starts[0]
    env.close()
    return {"wall": wall, "sample": sample, "update": wall - sample, "steps": iterations * STEPS_PER_ITER}


WORKERS = {"pgprobe": run_ours, "sb3": run_sb3}


def worker_main(args) -> None:
    _common.pin_threads(args.threads)
    res = WORKERS[args.worker](args.iterations, args.warmup, args.seed)
    print("RESULT " + json.dumps(res), flush=True)


# -- driver ---------------------------------------------------------------------------------------------
def measure(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--iterations", str(args.iterations),
           "--warmup", str(args.warmup), "--seed", str(args.seed), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{name} worker failed (exit {proc.returncode})")
    res = json.loads(lines[-1][len("RESULT "):])
    res["sps"] = res["steps"] / res["wall"]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=5, help="timed iterations per run (2048 steps each)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations before them")
    p.add_argument("--rounds", type=int, default=2, help="runs of each implementation, alternated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both")
    p.add_argument("--target", type=float, default=1.5, help="required speed-up ours/SB3")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0

    print(f"train_throughput: PPO on {_common.ENV_ID}, 1 env, {STEPS_PER_ITER} steps/iter, {EPOCHS} epochs x "
          f"{MINIBATCHES} minibatches, 64-64 tanh pi/vf, {args.threads} torch thread(s), cpu")
    print(f"  {args.rounds} round(s) x {args.iterations} timed iterations (+{args.warmup} warm-up) per run")
    print(f"  {_common.machine()}")
    runs: dict[str, list[dict]] = {"pgprobe": [], "sb3": []}
    for r in range(args.rounds):
        order = ["pgprobe", "sb3"] if r % 2 == 0 else ["sb3", "pgprobe"]
        for name in order:
            res = measure(name, args)
            runs[name].append(res)
            print(f"  round {r + 1} {name:8s} {res['sps']:8.0f} steps/s   (wall {res['wall']:6.2f}s: "
                  f"sample {res['sample']:6.2f}s, update {res['update']:6.2f}s)", flush=True)

    print()
    print(f"{'':10s}{'best':>10s}{'median':>10s}  steps/s     per iteration (best run): sample / update")
    for name, rs in runs.items():
        best = max(rs, key=lambda x: x["sps"])
        n = args.iterations
        print(f"{name:10s}{best['sps']:10.0f}{statistics.median(x['sps'] for x in rs):10.0f}"
              f"{'':16s}{best['sample'] / n:6.3f}s / {best['update'] / n:6.3f}s")
    best_ratio = max(x["sps"] for x in runs["pgprobe"]) / max(x["sps"] for x in runs["sb3"])
    med_ratio = (statistics.median(x["sps"] for x in runs["pgprobe"])
                 / statistics.median(x["sps"] for x in runs["sb3"]))
    per_round = [o["sps"] / s["sps"] for o, s in zip(runs["pgprobe"], runs["sb3"])]
    print(f"ratio pgprobe/SB3: best {best_ratio:.2f}x, median {med_ratio:.2f}x, per round "
          + ", ".join(f"{x:.2f}x" for x in per_round))
    ok = best_ratio >= args.target
    print(f"target: pgprobe >= {args.target:.1f}x SB3 (best vs best): {'PASS' if ok else 'FAIL'}")
    print("\nremaining differences (same sizes and schedule, not the same code):")
    for d in DIFFERENCES:
        print(f"  - {d}")
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
