"""The agent at a checkpoint, as every probe sees it; probes reach the trainer only through here.

`ProbeAgent` holds theta_t with the normalisers frozen as they were when the agent made its
step, and offers what the paper's measurements are made of, each through the trainer's own code:
fresh batches collected the way the agent collects (its num_envs, fresh resets, nothing updated),
the algorithm's own step on a batch, the algorithm's surrogate and its gradient, and torch-free
true-reward evaluation of many parameter vectors in worker processes.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint
from ..algos import KINDS
from ..algos.common import TrainData
from ..envs import VecEnv
from ..errors import ArtifactError
from ..evaluate import parallel_episodes
from ..rollout import Batch
from ..nets import PolicyWeights, ValueNet, flat_params, gaussian_kl, set_flat_params
from ..pipeline import artifacts


# Last words of the generator keys a probe derives from its seed: each use its own stream (a key must not
# end in 0: SeedSequence treats [a, b] and [a, b, 0] alike).
STREAMS = {"collect": 11, "step": 12, "direction": 13, "evaluation": 14, "estimates": 15, "true_gradient": 16,
           "true_value": 17, "value_fit": 18, "baselines": 19, "value_error": 20}


class ProbeAgent:
    """theta_t of one agent, frozen.  Nothing here changes the agent: every call works on copies."""

    def __init__(self, ckpt: checkpoint.Checkpoint):
        self._ckpt = ckpt
        self._trainer = ckpt.trainer()
        self.env, self.algo = ckpt.agent["env"], ckpt.agent["algo"]
        self.seed, self.iteration, self.agent = ckpt.seed, ckpt.iteration, ckpt.agent
        self.kind = ckpt.agent["algo_cfg"]["kind"]
        self.num_envs = self._trainer.venv.num_envs
        self.theta = ckpt.ds["theta"].values.astype(np.float64)
        self.agent_batch: TrainData = ckpt.data()
        self.agent_step = (ckpt.ds["theta_next"].values.astype(np.float64) - self.theta)
        self.step_fraction = float(ckpt.ds["log_step_fraction"]) if "log_step_fraction" in ckpt.ds else np.nan
        self.proposed_step = (ckpt.ds["proposed_step"].values.astype(np.float64)
                              if "proposed_step" in ckpt.ds else None)
        self.episode_returns = ckpt.ds["episode_return"].values

    def rng(self, seed: int, stream: str, index: tuple = ()) -> np.random.Generator:
        """A generator for one use (`STREAMS`) of a probe's seed at this agent and iteration; `index`
        (non-negative ints) tells apart the independent draws of one use (repeats, chunks).  The stream
        stays the key's last word, so no key ends in 0."""
        return np.random.default_rng([seed, self.seed, self.iteration, *map(int, index), STREAMS[stream]])

    def evaluation_seed(self, seed: int, index: tuple = ()) -> int:
        """The seed of a true-reward evaluation: common to every point of a plane, not to other agents or
        iterations; `index` tells apart independent evaluations (as in `rng`)."""
        return int(self.rng(seed, "evaluation", index).integers(2**31 - 1))

    def evaluation_seeds(self, seed: int, points: int, crn: bool, index: tuple = ()):
        """What `episodes_at` takes as its seed for `points` parameter vectors: with common random numbers
        one seed for all of them (`evaluation_seed(seed, index)`); without, one per point, derived from
        the point's place in the list (`evaluation_seed(seed, (*index, point))`): independent samples."""
        if crn:
            return self.evaluation_seed(seed, index)
        return np.array([self.evaluation_seed(seed, (*index, k)) for k in range(points)], np.int64)

    @classmethod
    def load(cls, path: str | Path) -> "ProbeAgent":
        return cls(checkpoint.load(Path(path)))

    @property
    def policy(self) -> torch.nn.Module:
        """A copy of pi_t (its parameter layout is the one every flat vector here uses)."""
        return copy.deepcopy(self._trainer.policy)

    @property
    def batch_size(self) -> int:
        """Pairs per iteration of the agent: its own batch."""
        return self.agent_batch.n

    @property
    def norm_adv(self) -> bool:
        """Does the agent normalise advantages within its batch?"""
        return bool(self._trainer.a["norm_adv"])

    def steps_per_env(self, n_pairs: int) -> int:
        """Steps each of the agent's envs takes to collect at least n_pairs."""
        return -(-int(n_pairs) // self.num_envs)

    def new_value_net(self, seed: int) -> torch.nn.Module:
        """A fresh value network: the agent's architecture and initialisation (train.hidden, algo init),
        its weights drawn from `seed` (torch's global generator is left as it was)."""
        tr = self._trainer
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return ValueNet(tr.venv.obs_dim, tr.t["hidden"], tr.a["init"])

    @property
    def value(self) -> torch.nn.Module:
        """A copy of V_t, the agent's value network before the iteration's fit (it makes the advantages)."""
        return copy.deepcopy(self._trainer.value)

    @property
    def value_after_fit(self) -> torch.nn.Module:
        """A copy of the value network after the iteration's fit (the one the agent carries into t+1)."""
        net = self.value
        set_flat_params(net, torch.as_tensor(self._ckpt.ds["value_theta_next"].values))
        return net

    @property
    def bootstrap_truncation(self) -> bool:
        """Does the agent bootstrap value targets at a time-limit truncation (else: terminal)?"""
        return bool(self._trainer.t["bootstrap_truncation"])

    @property
    def params_count(self) -> int:
        return self.theta.size

    @property
    def gamma(self) -> float:
        return self._trainer.t["gamma"]

    @property
    def clip_actions(self) -> bool:
        return self._trainer.t["clip_actions"]

    # -- samples ---------------------------------------------------------------------------------
    def collect(self, n_pairs: int, seed: int, norm_adv: bool | None = None) -> TrainData:
        """A fresh batch of at least n_pairs from pi_t, advantages by GAE with V_t: the agent's rollout
        and advantage code, its num_envs, fresh resets, the normalisers frozen."""
        return self.prepare(self.collect_batch(n_pairs, seed), norm_adv)

    def collect_batch(self, n_pairs: int, seed: int, stream: str = "collect", index: tuple = ()) -> Batch:
        """The samples of `collect`, before advantages (to compare baselines on the same samples);
        `stream` and `index` pick the generator (see `rng`): independent batches from one seed."""
        tr = self._trainer
        venv = VecEnv(self.env, self.num_envs, clip_actions=tr.t["clip_actions"])
        try:
            return tr.rollout(venv, self.rng(seed, stream, index),
                              steps_per_env=self.steps_per_env(n_pairs), update_stats=False)
        finally:
            venv.close()

    def prepare(self, batch: Batch, norm_adv: bool | None = None, value=None, lam: float | None = None) -> TrainData:
        """Advantages by the agent's code: GAE(gamma, lambda) with V_t, unless a probe gives another
        baseline (`value`: obs tensor -> values, e.g. a fitted "true" value function, or zeros) or lambda."""
        return self._trainer.prepare(batch, norm_adv, value, lam)

    # -- the algorithm ---------------------------------------------------------------------------
    def algorithm_step(self, data: TrainData, seed: int) -> tuple[np.ndarray, dict]:
        """The algorithm's own update from theta_t on `data` (its optimiser state and learning rate
        at t): (theta' - theta_t as float64, what the update reports)."""
        tr = self._trainer
        policy = self.policy
        opt = type(tr.policy_opt)(policy.parameters(), **tr.policy_opt.defaults)
        opt.load_state_dict(copy.deepcopy(tr.policy_opt.state_dict()))  # shares no tensor with the agent's
        extra = tr.update_policy(policy, opt, data, self.rng(seed, "step"))
        return (flat_params(policy).double() - torch.as_tensor(self.theta)).numpy(), extra

    def surrogate(self, data: TrainData, thetas: np.ndarray) -> np.ndarray:
        """The algorithm's surrogate objective on `data` at each row of `thetas` (K, P)."""
        objective = KINDS[self.kind].objective
        policy = self.policy
        thetas = np.atleast_2d(thetas)
        out = np.empty(len(thetas))
        with torch.no_grad():
            for i, theta in enumerate(thetas):
                set_flat_params(policy, torch.as_tensor(theta, dtype=torch.float32))
                out[i] = objective(policy, data, self._trainer.a).item()
        return out

    def surrogate_grad(self, data: TrainData, theta: np.ndarray | None = None) -> np.ndarray:
        """Gradient of the algorithm's surrogate on `data` at theta (default theta_t), all policy
        parameters (log-std included), float64."""
        policy = self.policy
        if theta is not None:
            set_flat_params(policy, torch.as_tensor(theta, dtype=torch.float32))
        value = KINDS[self.kind].objective(policy, data, self._trainer.a)
        grads = torch.autograd.grad(value, list(policy.parameters()))
        return torch.cat([g.reshape(-1) for g in grads]).double().numpy()

    def mean_kl(self, data: TrainData, theta: np.ndarray) -> float:
        """Mean KL(pi_t || pi_theta) over the states of `data` (pi_t as recorded in the batch)."""
        policy = self.policy
        set_flat_params(policy, torch.as_tensor(theta, dtype=torch.float32))
        with torch.no_grad():
            mean, log_std = policy(data.obs)
            return gaussian_kl(data.mean_old, data.log_std_old, mean, log_std).mean().item()

    # -- the true reward -------------------------------------------------------------------------
    def observation_transform(self) -> tuple[np.ndarray | float, np.ndarray | float, float | None]:
        """(mean, std, clip) of the frozen observation normaliser, for torch-free workers."""
        norm = self._trainer.obs_norm
        if not norm.enabled:
            return 0.0, 1.0, None
        return norm.rms.mean.copy(), np.sqrt(norm.rms.var + norm.eps), norm.clip

    def policy_weights(self, thetas: np.ndarray) -> PolicyWeights:
        return PolicyWeights.from_flat(self._trainer.policy, np.atleast_2d(thetas))

    def episodes_at(self, thetas: np.ndarray, min_steps: int, envs_per_policy: int, seed,
                    workers: int = 1, progress: bool = False) -> list[dict]:
        """Complete episodes of each parameter vector (return, discounted return with the agent's gamma,
        length); `seed` one int (common random numbers across vectors) or one per vector (independent
        samples), see `evaluation_seeds` and evaluate.episodes."""
        mean, std, clip = self.observation_transform()
        return parallel_episodes(self.env, self.policy_weights(thetas), mean, std, clip, min_steps,
                                 envs_per_policy, seed, workers, progress=progress,
                                 clip_actions=self.clip_actions, gamma=self.gamma)


@dataclass
class ProbeInputs:
    """What a probe job was given, by the names its declaration uses ("checkpoint", "train_log",
    "probe:<name>")."""

    paths: dict

    @classmethod
    def parse(cls, items: list[str]) -> "ProbeInputs":
        paths = {}
        for item in items:
            name, sep, path = item.partition("=")
            if not sep:
                raise ArtifactError(f"--input {item!r}: expected NAME=PATH")
            paths[name] = Path(path)
        return cls(paths)

    def _path(self, name: str) -> Path:
        if name not in self.paths:
            raise ArtifactError(f"this probe needs input {name!r}; given: {', '.join(self.paths) or 'none'}")
        return self.paths[name]

    def agent(self) -> ProbeAgent:
        if not hasattr(self, "_agent"):
            self._agent = ProbeAgent.load(self._path("checkpoint"))
        return self._agent

    def artifact(self, name: str):
        kind = "train_log" if name == "train_log" else f"probe_{name.split(':', 1)[1]}"
        return artifacts.read_nc(self._path(name), kind=kind)

    def _first(self):
        name = next(iter(self.paths))
        if name == "checkpoint":
            return self.agent()._ckpt.ds
        return self.artifact(name)

    def agent_coords(self) -> tuple:
        ds = self._first()
        it = int(ds.coords["iteration"]) if "iteration" in ds.coords and ds.coords["iteration"].ndim == 0 else None
        return str(ds.coords["env"].values), str(ds.coords["algo"].values), int(ds.coords["seed"]), it

    def params(self) -> dict:
        """The params each input was made with (their own stage's and upstream)."""
        out = {}
        for name in self.paths:
            ds = self.agent()._ckpt.ds if name == "checkpoint" else self.artifact(name)
            out[name] = json.loads(ds.attrs["params"])
        return out
