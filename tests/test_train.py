"""The training loop on real MuJoCo physics: learning, determinism, resume, and the train.nc artifact."""
import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from pgprobe import train
from pgprobe.pipeline import config
from pgprobe.errors import ArtifactError

TINY = {"train": {"steps_per_iter": 128, "iterations": 4, "save_every": 2},
        "algos": {"ppo": {"minibatches": 4, "epochs": 2, "value_epochs": 2},
                  "trpo": {"minibatches": 4, "value_epochs": 2}}}


def _agent(repo_root, tmp_path, overlay, env="Hopper-v5", algo="ppo", name="overlay.yaml"):
    """params.yaml + an overlay written to tmp_path -> one agent's config.

    Figures may only ask for snapshotted iterations; iteration 0 always is one, so every
    figure of params.yaml is pointed at it (the figures do not matter for training).
    """
    overlay = json.loads(json.dumps(overlay))
    base = yaml.safe_load((repo_root / "params.yaml").read_text())
    for fig, spec in (base.get("figures") or {}).items():
        if isinstance(spec, dict) and "iterations" in spec:
            overlay.setdefault("figures", {}).setdefault(fig, {})["iterations"] = [0]
    path = Path(tmp_path) / name
    path.write_text(yaml.safe_dump(overlay))
    cfg = config.load(repo_root / "params.yaml", [path])
    return config.agent_config(cfg, env, algo)


def _overlay(**train_keys):
    ov = json.loads(json.dumps(TINY))
    ov["train"].update(train_keys)
    return ov


def _snapshots(out):
    return sorted(p.name for p in (Path(out) / "snapshots").glob("iter*.nc"))


# ----------------------------------------------------------------------------- learning
def test_ppo_learns_inverted_pendulum(repo_root, tmp_path):
    overlay = {"train": {"steps_per_iter": 1024, "iterations": 15, "save_every": 100},
               "algos": {"ppo": {"minibatches": 8}}}
    agent = _agent(repo_root, tmp_path, overlay, env="InvertedPendulum-v5")
    path = train.run(agent, 0, tmp_path / "run", progress=False)
    ds = xr.open_dataset(path)
    ret = ds["return_mean"].values
    ds.close()
    assert len(ret) == 15
    first = ret[0]
    last = np.nanmean(ret[-3:])
    assert np.isfinite(first) and first > 0
    assert last > 3 * first, ret
    # InvertedPendulum pays 1 per step: the last iterations balance far longer than a random policy
    assert last > 100


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_other_seed_other_numbers(repo_root, tmp_path):
    agent = _agent(repo_root, tmp_path, _overlay())
    a = train.run(agent, 7, tmp_path / "a", progress=False)
    b = train.run(agent, 7, tmp_path / "b", progress=False)
    c = train.run(agent, 8, tmp_path / "c", progress=False)
    assert a.read_bytes() == b.read_bytes()
    snaps = _snapshots(tmp_path / "a")
    assert snaps == ["iter000000.nc", "iter000002.nc", "iter000004.nc"]
    assert snaps == _snapshots(tmp_path / "b")
    for s in snaps:
        assert (tmp_path / "a" / "snapshots" / s).read_bytes() == (tmp_path / "b" / "snapshots" / s).read_bytes()
    with xr.open_dataset(a) as da, xr.open_dataset(c) as dc:
        assert not np.allclose(da["return_mean"].values, dc["return_mean"].values, equal_nan=True)
        assert not np.allclose(da["kl_mean"].values, dc["kl_mean"].values)
        assert int(dc.coords["seed"]) == 8 and str(dc.coords["algo"].values) == "ppo"


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("algo", ["ppo", "trpo"])
@pytest.mark.parametrize("reset_every_iter", [True, False])
def test_resume_gives_identical_train_nc(repo_root, tmp_path, algo, reset_every_iter):
    # num_envs 2 when episodes run across iterations: several MuJoCo states restored at once
    overlay = _overlay(reset_every_iter=reset_every_iter, num_envs=1 if reset_every_iter else 2)
    agent = _agent(repo_root, tmp_path, overlay, algo=algo)
    full = train.run(agent, 3, tmp_path / "full", progress=False)
    part = tmp_path / "part"
    assert train.run(agent, 3, part, stop_at=2, progress=False) is None
    assert not (part / "train.nc").exists()
    assert _snapshots(part) == ["iter000000.nc", "iter000002.nc"]
    resumed = train.run(agent, 3, part, progress=False)
    assert "resumed from iter000002.nc" in (part / "train.log").read_text()
    assert resumed.read_bytes() == full.read_bytes()
    for s in _snapshots(tmp_path / "full"):
        assert (part / "snapshots" / s).read_bytes() == (tmp_path / "full" / "snapshots" / s).read_bytes(), s


def test_resume_at_unsaved_iteration_replays_from_earlier_snapshot(repo_root, tmp_path):
    """Killed at iteration 3 (no snapshot there): the next run restarts from snapshot 2, same numbers."""
    agent = _agent(repo_root, tmp_path, _overlay(reset_every_iter=False))
    full = train.run(agent, 5, tmp_path / "full", progress=False)
    part = tmp_path / "part"
    train.run(agent, 5, part, stop_at=3, progress=False)
    assert _snapshots(part) == ["iter000000.nc", "iter000002.nc"]
    assert train.run(agent, 5, part, progress=False).read_bytes() == full.read_bytes()


def test_resume_with_other_params_is_refused(repo_root, tmp_path):
    agent = _agent(repo_root, tmp_path, _overlay())
    out = tmp_path / "run"
    train.run(agent, 0, out, stop_at=2, progress=False)
    other = _agent(repo_root, tmp_path, _overlay(gamma=0.98), name="other.yaml")
    with pytest.raises(ArtifactError, match="iter000002.nc"):
        train.run(other, 0, out, progress=False)
    with pytest.raises(ArtifactError):
        train.run(agent, 1, out, progress=False)   # another seed
    assert not (out / "train.nc").exists()


# ----------------------------------------------------------------------------- train.nc contents
@pytest.fixture(scope="module")
def trpo_run(repo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trpo_run")
    agent = _agent(repo_root, tmp, _overlay(), algo="trpo")
    path = train.run(agent, 11, tmp / "out", progress=False)
    return agent, path


def test_train_nc_contents(trpo_run):
    agent, path = trpo_run
    assert path.name == "train.nc"
    with xr.open_dataset(path) as ds:
        assert list(ds.coords) == ["iteration", "env", "algo", "seed"]  # the agent, for combine_by_coords
        np.testing.assert_array_equal(ds["iteration"].values, np.arange(4))
        assert set(ds.data_vars) == set(train.LOG_VARS) | {"ratio_bound", "kl_bound"}
        assert np.isnan(ds["ratio_bound"]) and float(ds["kl_bound"]) == agent["algo_cfg"]["max_kl"]  # TRPO
        for name in train.LOG_VARS:
            assert ds[name].dims == ("iteration",)
            assert ds[name].attrs.get("long_name")
        np.testing.assert_array_equal(ds["env_steps"].values, 128 * np.arange(1, 5))
        assert np.all(ds["episodes"].values >= 1)
        # TRPO: the accepted step respects the trust region; step fractions are powers of the backtrack coef
        max_kl = agent["algo_cfg"]["max_kl"]
        assert np.all(ds["kl_mean"].values <= max_kl)
        frac = ds["step_fraction"].values
        assert np.all((frac > 0) & (frac <= 1))
        np.testing.assert_allclose(np.log(frac) / np.log(0.5), np.round(np.log(frac) / np.log(0.5)), atol=1e-9)
        assert np.all(ds["ratio_max"].values >= ds["ratio_mean"].values)
        assert np.all(ds["entropy"].values > 0)
        attrs = dict(ds.attrs)
        agent_coords = {c: ds.coords[c].values.item() for c in ("env", "algo", "seed")}
    assert agent_coords == {"env": "Hopper-v5", "algo": "trpo", "seed": 11}
    assert json.loads(attrs["params"]) == {**agent, "seed": 11}
    assert attrs["pgprobe_kind"] == "train_log"
    assert attrs["pgprobe_code"]
    packages = json.loads(attrs["packages"])
    assert {"torch", "numpy", "gymnasium", "mujoco"} <= set(packages)
    # no wall-clock time or host name anywhere in the attrs
    text = json.dumps({k: str(v) for k, v in attrs.items()})
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text)
    assert socket.gethostname() not in text
    assert not any("time" in k.lower() or "date" in k.lower() or "host" in k.lower() for k in attrs)


def test_ppo_log_has_nan_step_fraction_and_lr_annealing(repo_root, tmp_path):
    agent = _agent(repo_root, tmp_path, _overlay())
    path = train.run(agent, 0, tmp_path / "out", progress=False)
    with xr.open_dataset(path) as ds:
        assert np.all(np.isnan(ds["step_fraction"].values))
        lr0 = agent["algo_cfg"]["lr"]
        assert agent["algo_cfg"]["anneal_lr"]
        # linear annealing: lr_t = lr0 * (1 - t / iterations)
        np.testing.assert_allclose(ds["lr"].values, lr0 * (1 - np.arange(4) / 4), rtol=1e-12)


def test_train_log_sidecar(trpo_run):
    _, path = trpo_run
    log = (path.parent / "train.log").read_text()
    for t in range(4):
        assert re.search(rf"\biter {t}\b", log)
    assert "started" in log
    assert "wrote" in log and "train.nc" in log
    # the timings that train.nc must not hold are here
    assert "sample" in log and "update" in log
    # nothing temporary left behind by the atomic writes
    leftovers = [p.name for p in path.parent.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCarContinuous-v0"])
def test_classic_control_trains_and_resumes_exactly(repo_root, tmp_path, env_id):
    """Not MuJoCo: stepped through gymnasium; with reset_every_iter (the default) a snapshot holds no
    env state, so a resumed run gives the same bytes as an uninterrupted one."""
    agent = _agent(repo_root, tmp_path, _overlay(), algo="trpo")
    agent["env"] = env_id
    whole = train.run(agent, 3, tmp_path / "whole", progress=False)
    assert train.run(agent, 3, tmp_path / "parts", stop_at=2, progress=False) is None
    resumed = train.run(agent, 3, tmp_path / "parts", progress=False)
    assert resumed.read_bytes() == whole.read_bytes()
