"""The checkpoint stage: replay iteration t from the training snapshot at or before t.

Training is deterministic and resumes exactly, so replaying from the nearest earlier snapshot
reproduces the batch the agent trained on at iteration t and the update it took.  A checkpoint
holds what probes need, as named arrays: the policy theta_t and theta_t+1 (`param`), the value
network before and after the iteration's fit (`value_param`), the optimisers' states, the
observation and reward normalisers *as they were when the agent made its step* (after the
iteration's rollout), and the batch (`pair`) with its advantages.  Probes read it only through
probes/api.py.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from . import train
from .algos.common import TrainData
from .errors import ArtifactError
from .nets import flat_params
from .pipeline import artifacts

BATCH_VARS = {
    "obs": "observation as the policy saw it (normalised)",
    "actions": "action sampled by pi_t (raw, as sent to the env)",
    "logp_old": "log pi_t(a|s)",
    "mean_old": "action mean of pi_t",
    "log_std_old": "log-std of pi_t",
    "advantages": "advantages as the policy loss uses them (normalised if the algorithm does)",
    "raw_advantages": "GAE advantages before normalisation",
    "returns": "value targets V_t + A_GAE",
    "values_old": "V_t(s) before the iteration's value fit",
    "value_mask": "1 where the step enters the value loss",
}


def make(agent: dict, seed: int, iteration: int, train_dir: Path, out: Path, attrs: dict | None = None) -> Path:
    snap = train.latest_snapshot(train_dir, iteration)
    if snap is None:
        raise ArtifactError(f"no training snapshot at or before iteration {iteration} in {Path(train_dir) / 'snapshots'} "
                            f"(rerun the train stage)")
    trainer = train.Trainer(agent, seed)
    train.load_snapshot(trainer, snap)
    if trainer.iteration < iteration:
        print(f"pgprobe checkpoint: replaying iterations {trainer.iteration}..{iteration - 1} from {snap}",
              file=sys.stderr)
    while trainer.iteration < iteration:
        trainer.step()
    before = {"value": flat_params(trainer.value).numpy(), "policy_opt": adam_flat(trainer.policy_opt),
              "value_opt": adam_flat(trainer.value_opt)}
    stats, step = trainer.step()
    ds = _dataset(trainer, before, stats, step)
    ds = artifacts.with_agent_coords(ds, agent["env"], agent["algo"], seed, iteration)
    ds.attrs.update(artifacts.provenance("checkpoint", {**agent, "seed": seed}, "checkpoint"))
    ds.attrs.update(attrs or {})
    trainer.venv.close()
    return artifacts.write_nc(ds, out)


def _dataset(trainer, before: dict, stats: dict, step: dict) -> xr.Dataset:
    data: TrainData = step["data"]
    batch = step["batch"]
    obs_norm, reward = step["normalisers"]["obs_norm"], step["normalisers"]["reward_scaler"]
    act = ("pair", "act_dim")
    v = {
        "theta": ("param", step["theta_before"].numpy(), {"long_name": "policy parameters theta_t (flat)"}),
        "theta_next": ("param", step["theta_after"].numpy(), {"long_name": "theta_t+1 after the update"}),
        "value_theta": ("value_param", before["value"], {"long_name": "value network at t (before the fit)"}),
        "value_theta_next": ("value_param", flat_params(trainer.value).numpy(),
                             {"long_name": "value network after the iteration's fit"}),
        "obs_mean": ("obs_dim", obs_norm["mean"], {"long_name": "observation normaliser mean (frozen for probes)"}),
        "obs_var": ("obs_dim", obs_norm["var"], {"long_name": "observation normaliser variance"}),
        "obs_count": ((), obs_norm["count"]),
        "reward_var": ((), reward["var"], {"long_name": "running variance of the discounted return "
                                                        "(rewards are divided by its sqrt when scaling is on)"}),
        "reward_count": ((), reward["count"]),
        "episode_return": ("episode", np.asarray(batch.ep_returns, np.float64),
                           {"long_name": "undiscounted return of episodes completed in the batch"}),
        "episode_length": ("episode", np.asarray(batch.ep_lengths, np.int64)),
        "raw_reward": ("pair", batch.flat("rewards"), {"long_name": "env reward"}),
        "done": ("pair", batch.flat("done").astype(np.int8), {"long_name": "1 where an episode ended"}),
    }
    for name, desc in BATCH_VARS.items():
        arr = getattr(data, name).detach().numpy()
        dims = ("pair",) if arr.ndim == 1 else ("pair", "obs_dim") if name == "obs" else act
        v[name] = (dims, arr.astype(np.int8) if arr.dtype == bool else arr, {"long_name": desc})
    for opt in ("policy_opt", "value_opt"):
        dim = "param" if opt == "policy_opt" else "value_param"
        steps, m, s = before[opt]
        v[f"{opt}_step"] = ((), np.int64(steps), {"long_name": "Adam steps taken (0: never stepped)"})
        if steps:
            v[f"{opt}_exp_avg"], v[f"{opt}_exp_avg_sq"] = (dim, m), (dim, s)
    if "full_step" in step["extra"]:
        v["proposed_step"] = ("param", step["extra"]["full_step"],
                              {"long_name": "TRPO's full natural step before the line search"})
    for k, val in stats.items():
        if not k.startswith("_"):
            v[f"log_{k}"] = ((), np.float64(val), {"long_name": train.LOG_VARS.get(k, k)})
    ds = xr.Dataset(v)
    ds.attrs.update({"num_envs": trainer.venv.num_envs, "pair_order": "time-major: pair = t * num_envs + env",
                     "param_layout": _layout(trainer.policy), "value_param_layout": _layout(trainer.value)})
    return ds


def _layout(module: torch.nn.Module) -> str:
    return ", ".join(f"{n}:{'x'.join(map(str, p.shape))}" for n, p in module.named_parameters())


def adam_flat(opt: torch.optim.Optimizer) -> tuple[int, np.ndarray, np.ndarray]:
    """(steps, exp_avg, exp_avg_sq) of a single-group Adam, flattened in parameter order."""
    state = [opt.state.get(p, {}) for p in opt.param_groups[0]["params"]]
    if not state or not state[0]:
        return 0, np.zeros(0, np.float32), np.zeros(0, np.float32)
    steps = int(state[0]["step"])
    m = np.concatenate([st["exp_avg"].numpy().reshape(-1) for st in state])
    s = np.concatenate([st["exp_avg_sq"].numpy().reshape(-1) for st in state])
    return steps, m, s


def load_adam_flat(opt: torch.optim.Optimizer, steps: int, m: np.ndarray, s: np.ndarray) -> None:
    if not steps:
        opt.state.clear()
        return
    i = 0
    for p in opt.param_groups[0]["params"]:
        n = p.numel()
        opt.state[p] = {"step": torch.tensor(float(steps)),
                        "exp_avg": torch.as_tensor(m[i:i + n]).view_as(p).clone(),
                        "exp_avg_sq": torch.as_tensor(s[i:i + n]).view_as(p).clone()}
        i += n


@dataclass
class Checkpoint:
    """A checkpoint loaded back: the dataset and the agent's params (probes use probes/api.py)."""

    ds: xr.Dataset
    agent: dict
    seed: int
    iteration: int
    path: Path

    def data(self) -> TrainData:
        return TrainData(**{k: torch.as_tensor(self.ds[k].values.astype(bool) if k == "value_mask"
                                               else self.ds[k].values) for k in BATCH_VARS})

    def trainer(self) -> "train.Trainer":
        """A Trainer at theta_t: networks, optimisers and normalisers as when it made its step."""
        from .nets import set_flat_params

        tr = train.Trainer(self.agent, self.seed)
        ds = self.ds
        set_flat_params(tr.policy, torch.as_tensor(ds["theta"].values))
        set_flat_params(tr.value, torch.as_tensor(ds["value_theta"].values))
        for name in ("policy_opt", "value_opt"):
            steps = int(ds[f"{name}_step"])
            m = ds[f"{name}_exp_avg"].values if steps else None
            s = ds[f"{name}_exp_avg_sq"].values if steps else None
            load_adam_flat(getattr(tr, name), steps, m, s)
        tr.obs_norm.rms.load({"mean": ds["obs_mean"].values, "var": ds["obs_var"].values,
                              "count": float(ds["obs_count"])})
        tr.reward_scaler.rms.load({"mean": 0.0, "var": float(ds["reward_var"]), "count": float(ds["reward_count"])})
        tr.iteration = self.iteration
        return tr


def load(path: Path) -> Checkpoint:
    import json

    ds = artifacts.read_nc(path, kind="checkpoint")
    for var in ("theta", "theta_next", "obs_mean", *BATCH_VARS):
        if var not in ds:
            raise ArtifactError(f"{path} lacks {var!r}: not a checkpoint of this pgprobe version; rerun its checkpoint stage")
    params = json.loads(ds.attrs["params"])
    seed = params.pop("seed")
    return Checkpoint(ds, params, seed, int(ds.coords["iteration"]), Path(path))
