"""The training loop: rollout -> advantages -> update -> log; snapshots; resume.

One `Trainer` is one agent = (env, algo, seed).  Its full state (networks,
optimisers, normalisers, environments, random generators, iteration) goes into a
snapshot at the start of every `save_every`-th iteration, so that training resumes
to the same numbers and a checkpoint can replay exactly the iteration it names.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .pipeline import artifacts
from .algos import KINDS, common
from .envs import VecEnv
from .errors import ArtifactError
from .nets import GaussianPolicy, ObsNormalizer, PolicyWeights, RewardScaler, ValueNet, flat_params
from .rollout import collect

log = logging.getLogger("pgprobe.train")
LOG_VARS = {
    "return_mean": "mean undiscounted return of episodes completed in the iteration",
    "return_median": "median undiscounted return of episodes completed in the iteration",
    "episodes": "number of episodes completed in the iteration",
    "kl_mean": "mean KL(pi_old || pi_new) over the training batch",
    "kl_max": "max KL(pi_old || pi_new) over the states of the training batch",
    "ratio_max": "max likelihood ratio pi_new/pi_old over the training batch",
    "ratio_mean": "mean likelihood ratio pi_new/pi_old over the training batch",
    "entropy": "policy entropy before the update (nats)",
    "surrogate_before": "surrogate mean(ratio * A) before the update (ratio = 1)",
    "surrogate_after": "surrogate mean(ratio * A) after the update",
    "value_loss": "value-network loss in its last epoch",
    "explained_variance": "1 - Var(target - V_old) / Var(target)",
    "lr": "policy learning rate (PPO) used in the iteration",
    "step_fraction": "fraction of the full TRPO step accepted by the line search (NaN for PPO)",
    "env_steps": "environment steps taken by the end of the iteration",
}


class Trainer:
    def __init__(self, agent: dict, seed: int):
        self.agent, self.seed = agent, seed
        self.t, self.a = agent["train"], agent["algo_cfg"]
        self.venv = VecEnv(agent["env"], self.t["num_envs"], clip_actions=self.t["clip_actions"])
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        init = self.a["init"]
        self.policy = GaussianPolicy(self.venv.obs_dim, self.venv.act_dim, self.t["hidden"], init,
                                     self.t["init_log_std"])
        self.value = ValueNet(self.venv.obs_dim, self.t["hidden"], init)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=self.a.get("lr", 0.0), eps=1e-5)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=self.a["value_lr"], eps=1e-5)
        self.obs_norm = ObsNormalizer(self.venv.obs_dim, self.a["obs_norm"], self.a["obs_clip"])
        self.reward_scaler = RewardScaler(self.venv.num_envs, self.t["gamma"], self.a["reward_scaling"],
                                          self.a["reward_clip"])
        self.venv.reset(self.rng)
        self.iteration = 0

    # -- one iteration (probes reuse rollout, prepare and update_policy through probes/api.py) --------
    def rollout(self, venv: VecEnv | None = None, rng: np.random.Generator | None = None,
                steps_per_env: int | None = None, update_stats: bool = True):
        """The agent's rollout.  A probe passes its own envs and generator, and update_stats=False:
        fresh episodes, the normalisers frozen."""
        venv, rng = venv or self.venv, rng or self.rng
        if self.t["reset_every_iter"] or venv is not self.venv:
            venv.reset(rng)
            if update_stats:
                self.reward_scaler.ret[:] = 0.0
        steps = steps_per_env or self.t["steps_per_iter"] // venv.num_envs
        return collect(venv, PolicyWeights.from_policy(self.policy), self.obs_norm,
                       self.reward_scaler, rng, steps, update_stats=update_stats)

    def prepare(self, batch, norm_adv: bool | None = None, value=None, lam: float | None = None) -> common.TrainData:
        """Advantages and value targets as the agent computes them; a probe may override the advantage
        normalisation, the baseline (any obs -> V(obs) callable) and GAE's lambda."""
        return common.prepare(batch, self.policy, self.value if value is None else value, self.t["gamma"],
                              self.t["gae_lambda"] if lam is None else lam,
                              self.a["norm_adv"] if norm_adv is None else norm_adv,
                              self.t["bootstrap_truncation"], self.t["fit_done_steps"])

    def lr_fraction(self) -> float:
        return 1.0 - self.iteration / self.t["iterations"] if self.a["anneal_lr"] else 1.0

    def update_policy(self, policy, opt, data, rng) -> dict:
        """The algorithm's policy update of this iteration (its learning rate) on `data`."""
        common.set_lr(opt, self.a.get("lr", 0.0) * self.lr_fraction())
        return KINDS[self.a["kind"]].update_policy(policy, opt, data, self.a, rng)

    def step(self) -> tuple[dict, dict]:
        """Run iteration `self.iteration`; returns (logged stats, what a checkpoint needs)."""
        t0 = time.perf_counter()
        batch = self.rollout()
        normalisers = {"obs_norm": self.obs_norm.rms.state(), "reward_scaler": self.reward_scaler.state()}
        t1 = time.perf_counter()
        data = self.prepare(batch)
        common.set_lr(self.value_opt, self.a["value_lr"] * self.lr_fraction())
        theta_before = flat_params(self.policy)
        entropy = self.policy.entropy().item()
        value_loss = common.fit_value(self.value, self.value_opt, data, self.a, self.rng)
        extra = self.update_policy(self.policy, self.policy_opt, data, self.rng)
        frac = self.lr_fraction()
        stats = {
            "return_mean": float(np.mean(batch.ep_returns)) if batch.ep_returns else np.nan,
            "return_median": float(np.median(batch.ep_returns)) if batch.ep_returns else np.nan,
            "episodes": len(batch.ep_returns),
            "entropy": entropy,
            "surrogate_before": data.advantages.mean().item(),
            "value_loss": value_loss,
            "explained_variance": common.explained_variance(data.values_old, data.returns),
            "lr": self.a.get("lr", 0.0) * frac,
            "step_fraction": extra.get("step_fraction", np.nan),
            **common.step_stats(self.policy, data),
        }
        self.iteration += 1
        stats["env_steps"] = self.iteration * self.t["steps_per_iter"]
        stats["_time_sample"], stats["_time_update"] = t1 - t0, time.perf_counter() - t1
        step = {"batch": batch, "data": data, "theta_before": theta_before,
                "theta_after": flat_params(self.policy), "normalisers": normalisers, "extra": extra}
        return stats, step

    # -- snapshots --------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "iteration": np.int64(self.iteration),
            "policy": _tensors(self.policy.state_dict()),
            "value": _tensors(self.value.state_dict()),
            "policy_opt": _optim_state(self.policy_opt),
            "value_opt": _optim_state(self.value_opt),
            "obs_norm": self.obs_norm.rms.state(),
            "reward_scaler": self.reward_scaler.state(),
            "env": self.venv.state() if not self.t["reset_every_iter"] else {},
            "rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state().numpy(),
        }

    def load(self, s: dict) -> None:
        self.iteration = int(s["iteration"])
        self.policy.load_state_dict({k: torch.as_tensor(v) for k, v in s["policy"].items()})
        self.value.load_state_dict({k: torch.as_tensor(v) for k, v in s["value"].items()})
        _load_optim(self.policy_opt, s["policy_opt"])
        _load_optim(self.value_opt, s["value_opt"])
        self.obs_norm.rms.load(s["obs_norm"])
        self.reward_scaler.load(s["reward_scaler"])
        if not self.t["reset_every_iter"]:
            self.venv.load(s["env"])
        self.rng.bit_generator.state = json.loads(str(s["rng"]))
        torch.set_rng_state(torch.as_tensor(np.asarray(s["torch_rng"], np.uint8)))


def _tensors(state_dict: dict) -> dict:
    return {k: v.detach().numpy().copy() for k, v in state_dict.items()}


def _optim_state(opt: torch.optim.Optimizer) -> dict:
    sd = opt.state_dict()
    out = {"lr": np.float64(sd["param_groups"][0]["lr"])}
    for idx, st in sd["state"].items():
        out[f"p{idx}"] = {k: np.asarray(v.numpy() if torch.is_tensor(v) else v) for k, v in st.items()}
    return out


def _load_optim(opt: torch.optim.Optimizer, s: dict) -> None:
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = float(s["lr"])
    sd["state"] = {int(k[1:]): {n: torch.as_tensor(np.asarray(v)) for n, v in st.items()}
                   for k, st in s.items() if k.startswith("p")}
    opt.load_state_dict(sd)


# -- files ----------------------------------------------------------------------------
def snapshot_path(out: Path, iteration: int) -> Path:
    return Path(out) / "snapshots" / f"iter{iteration:06d}.nc"


def save_snapshot(trainer: Trainer, out: Path, rows: list[dict]) -> Path:
    state = trainer.state()
    if rows:
        state["log"] = {k: np.array([r[k] for r in rows], np.float64) for k in rows[0]}
    ds = artifacts.tree_to_dataset(state, prefix="state__")
    ds.attrs.update(artifacts.provenance("snapshot", {**trainer.agent, "seed": trainer.seed}, "train"))
    return artifacts.write_nc(ds, snapshot_path(out, trainer.iteration))


def load_snapshot(trainer: Trainer, path: Path) -> list[dict]:
    """Restore the trainer; returns the log rows of the iterations before the snapshot."""
    ds = artifacts.read_nc(path, kind="snapshot")
    saved = json.loads(ds.attrs["params"])
    expected = {**trainer.agent, "seed": trainer.seed}
    if saved != expected:
        raise ArtifactError(f"{path} was written for other parameters than this agent's; "
                            "delete it or train into another directory")
    tree = artifacts.dataset_to_tree(ds, prefix="state__")
    trainer.load(tree)
    return [dict(zip(tree["log"], vals)) for vals in zip(*tree["log"].values())] if "log" in tree else []


def log_dataset(rows: list[dict], trainer: Trainer) -> xr.Dataset:
    iters = np.arange(len(rows))
    ds = xr.Dataset(coords={"iteration": ("iteration", iters, {"long_name": "training iteration t (update t takes theta_t to theta_t+1)"})})
    for name, desc in LOG_VARS.items():
        ds[name] = ("iteration", np.array([r[name] for r in rows], dtype=np.float64), {"long_name": desc})
    a = trainer.a
    ds["ratio_bound"] = ((), 1.0 + a["clip_eps"] if a["kind"] == "ppo" else np.nan,
                         {"long_name": "1 + PPO's clip epsilon (NaN: no ratio bound)"})
    ds["kl_bound"] = ((), a["max_kl"] if a["kind"] == "trpo" else np.nan,
                      {"long_name": "TRPO's max KL (NaN: no KL bound)"})
    ds.attrs.update(artifacts.provenance("train_log", {**trainer.agent, "seed": trainer.seed}, "train"))
    return artifacts.with_agent_coords(ds, trainer.agent["env"], trainer.agent["algo"], trainer.seed)


def latest_snapshot(out: Path, upto: int) -> Path | None:
    found = sorted(p for p in (Path(out) / "snapshots").glob("iter*.nc") if int(p.stem[4:]) <= upto)
    return found[-1] if found else None


def run(agent: dict, seed: int, out: Path, stop_at: int | None = None, progress: bool = True,
        attrs: dict | None = None) -> Path | None:
    """Train (resuming from the latest snapshot in `out`), then write `out/train.nc` atomically
    (with `attrs` added: the job record the CLI gives it).

    `stop_at` ends early after that many iterations without writing train.nc (as a kill would).
    Wall-clock timings go to `out/train.log`, never into train.nc.
    """
    from tqdm import tqdm

    out = Path(out)
    total, every = agent["train"]["iterations"], agent["train"]["save_every"]
    end = total if stop_at is None else min(stop_at, total)
    trainer = Trainer(agent, seed)
    snap = latest_snapshot(out, end)
    rows = load_snapshot(trainer, snap) if snap else []
    logger = _file_logger(out / "train.log")
    logger.info("agent %s/%s seed %d: %s at iteration %d of %d", agent["env"], agent["algo"], seed,
                f"resumed from {snap.name}" if snap else "started", trainer.iteration, total)
    bar = tqdm(total=total, initial=trainer.iteration, desc=f"train {agent['env']} {agent['algo']} s{seed}",
               disable=not progress, unit="it", mininterval=2.0)
    while trainer.iteration < end:
        if trainer.iteration % every == 0:
            save_snapshot(trainer, out, rows)
        stats, _ = trainer.step()
        rows.append({k: v for k, v in stats.items() if not k.startswith("_")})
        logger.info("iter %d return %.1f (%d eps) kl %.4f ratio_max %.3f sample %.2fs update %.2fs",
                    trainer.iteration - 1, stats["return_mean"], stats["episodes"], stats["kl_mean"],
                    stats["ratio_max"], stats["_time_sample"], stats["_time_update"])
        bar.update(1)
        bar.set_postfix(ret=f"{stats['return_mean']:.1f}")
    bar.close()
    if trainer.iteration % every == 0 or trainer.iteration == total:
        save_snapshot(trainer, out, rows)
    if trainer.iteration < total:
        logger.info("stopped at iteration %d (stop_at); no train.nc written", trainer.iteration)
        trainer.venv.close()
        return None
    ds = log_dataset(rows, trainer)
    ds.attrs.update(attrs or {})
    path = artifacts.write_nc(ds, out / "train.nc")
    logger.info("wrote %s", path)
    trainer.venv.close()
    return path


def _file_logger(path: Path) -> logging.Logger:
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"pgprobe.train.{path}")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger
