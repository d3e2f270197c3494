"""The checkpoint stage: replay iteration t from the training snapshot at t.

Because training is deterministic and resumable, replaying iteration t from its
snapshot reproduces the exact batch the agent trained on and the exact update it
took.  A checkpoint holds what the probes need: the agent at theta_t (networks,
optimiser states, normalisers, hyperparameters), that batch with its advantages,
and the step theta_{t+1} - theta_t.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import artifacts, train
from .algos.common import TrainData
from .errors import ArtifactError

BATCH_FIELDS = ("obs", "actions", "logp_old", "mean_old", "log_std_old", "advantages", "raw_advantages",
                "returns", "values_old")


def make(agent: dict, seed: int, iteration: int, train_dir: Path, out: Path) -> Path:
    snap = train.snapshot_path(train_dir, iteration)
    if not snap.exists():
        raise ArtifactError(f"no training snapshot for iteration {iteration}: {snap} "
                            f"(snapshots are saved every train.save_every iterations)")
    trainer = train.Trainer(agent, seed)
    train.load_snapshot(trainer, snap)
    state = trainer.state()
    agent_state = {k: state[k] for k in ("policy", "value", "policy_opt", "value_opt", "obs_norm", "reward_scaler")}
    stats, step = trainer.step()
    data: TrainData = step["data"]
    tree = {
        "agent": agent_state,
        "batch": {name: getattr(data, name).detach().numpy() for name in BATCH_FIELDS},
        "episode_returns": np.asarray(step["batch"].ep_returns, np.float64),
        "theta_before": step["theta_before"].numpy(),
        "theta_after": step["theta_after"].numpy(),
        "stats": {k: np.float64(v) for k, v in stats.items() if not k.startswith("_")},
    }
    ds = artifacts.tree_to_dataset(tree, prefix="ckpt__")
    ds.attrs.update(artifacts.provenance("checkpoint", {**agent, "seed": seed}, "checkpoint"))
    ds.attrs.update({"env": agent["env"], "algo": agent["algo"], "seed": seed, "iteration": iteration,
                     "obs_dim": trainer.venv.obs_dim, "act_dim": trainer.venv.act_dim})
    trainer.venv.close()
    return artifacts.write_nc(ds, out)


@dataclass
class Checkpoint:
    """A checkpoint loaded back: a ready Trainer at theta_t plus the batch and step."""

    agent: dict
    seed: int
    iteration: int
    trainer: "train.Trainer"
    data: TrainData
    theta_before: torch.Tensor
    theta_after: torch.Tensor
    stats: dict

    @property
    def step(self) -> torch.Tensor:
        return self.theta_after - self.theta_before


def load(path: Path) -> Checkpoint:
    import json

    ds = artifacts.read_nc(path, kind="checkpoint")
    params = json.loads(ds.attrs["params"])
    seed = params.pop("seed")
    tree = artifacts.dataset_to_tree(ds, prefix="ckpt__")
    trainer = train.Trainer(params, seed)
    a = tree["agent"]
    trainer.load({**trainer.state(), **a, "iteration": ds.attrs["iteration"]})
    data = TrainData(**{k: torch.as_tensor(np.asarray(tree["batch"][k])) for k in BATCH_FIELDS})
    return Checkpoint(params, seed, int(ds.attrs["iteration"]), trainer, data,
                      torch.as_tensor(tree["theta_before"]), torch.as_tensor(tree["theta_after"]),
                      {k: float(v) for k, v in tree["stats"].items()})

