"""params.yaml + overlays: validation with messages that name the key; per-agent slices; CLI errors."""
import copy
from pathlib import Path

import pytest
import yaml

from pgprobe.pipeline import config
from pgprobe.cli import main
from pgprobe.errors import ConfigError


def _write(tmp_path, overlay, name="overlay.yaml"):
    path = Path(tmp_path) / name
    path.write_text(yaml.safe_dump(overlay))
    return path


@pytest.fixture
def params(repo_root):
    return repo_root / "params.yaml"


@pytest.fixture
def smoke(repo_root):
    return repo_root / "config" / "smoke.yaml"


def test_load_params_and_smoke_overlay(params, smoke):
    base = config.load(params)
    cfg = config.load(params, [smoke])
    raw_smoke = yaml.safe_load(smoke.read_text())
    assert cfg["run"] == raw_smoke["run"] != base["run"]
    for key, value in raw_smoke["train"].items():
        assert cfg["train"][key] == value
    # keys the overlay does not name come from params.yaml (deep merge, not replacement)
    assert cfg["train"]["gamma"] == base["train"]["gamma"]
    assert cfg["algos"]["ppo"]["minibatches"] == raw_smoke["algos"]["ppo"]["minibatches"]
    assert cfg["algos"]["ppo"]["lr"] == base["algos"]["ppo"]["lr"]
    assert cfg["algos"]["trpo"]["max_kl"] == base["algos"]["trpo"]["max_kl"]
    assert set(cfg["algos"]) == set(base["algos"])


def test_overlays_apply_in_order(params, tmp_path):
    a = _write(tmp_path, {"train": {"gamma": 0.9}}, "a.yaml")
    b = _write(tmp_path, {"train": {"gamma": 0.8}}, "b.yaml")
    assert config.load(params, [a, b])["train"]["gamma"] == 0.8
    assert config.load(params, [b, a])["train"]["gamma"] == 0.9


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    over = {"a": {"b": 2}}
    saved = copy.deepcopy(base)
    out = config.deep_merge(base, over)
    assert out == {"a": {"b": 2, "c": [1, 2]}, "d": 1}
    assert base == saved
    out["a"]["c"].append(3)
    assert base["a"]["c"] == [1, 2]


@pytest.mark.parametrize("overlay, names", [
    ({"train": {"iteratons": 10}}, ["train", "iteratons"]),
    ({"algos": {"ppo": {"clip_epsilon": 0.1}}}, ["algos.ppo", "clip_epsilon"]),
    ({"train": {"steps_per_iter": 0}}, ["train.steps_per_iter"]),
    ({"train": {"steps_per_iter": -128}}, ["train.steps_per_iter"]),
    ({"train": {"gamma": 1.5}}, ["train.gamma"]),
    ({"algos": {"ppo": {"lr": "fast"}}}, ["algos.ppo.lr"]),
    ({"algos": {"ppo": {"kind": "sac"}}}, ["algos.ppo.kind", "sac"]),
    ({"env_overrides": {"Hopper-v5": {"sac": {"lr": 1.0e-3}}}}, ["env_overrides.Hopper-v5.sac"]),
    ({"env_overrides": {"Hopper-v5": {"ppo": {"lr": -1.0}}}}, ["env_overrides.Hopper-v5.ppo.lr"]),
    ({"env_overrides": {"Hopper-v5": {"ppo": {"lrr": 1.0}}}}, ["env_overrides.Hopper-v5.ppo", "lrr"]),
    ({"train": {"num_envs": 3, "steps_per_iter": 128}}, ["train.steps_per_iter", "train.num_envs"]),
    ({"runn": "x"}, ["runn"]),
    ({"figures": {"fig8": {"seeds": []}}}, ["figures.fig8.seeds"]),
    ({"figures": {"fig8": {"algos": ["a2c"]}}}, ["figures.fig8.algos", "a2c"]),
    ({"figures": {"fig99": {"envs": ["Hopper-v5"], "algos": ["ppo"], "seeds": [0]}}}, ["figures.fig99"]),
    ({"figures": {"fig6": {"iterations": [488]}}}, ["figures.fig6.iterations", "488"]),
    ({"probes": {"landscape": {"x": {"min": -0.5, "max": 1.5, "points": 7}}}}, ["probes.landscape.x", "x = 0"]),
    ({"probes": {"landscape": {"x": {"min": 0.0, "max": 0.5, "points": 3}}}}, ["probes.landscape.x", "x = 1"]),
    ({"probes": {"landscape": {"y": {"min": 0.5, "max": 1.0, "points": 3}}}}, ["probes.landscape.y", "y = 0"]),
    ({"probes": {"landscape_concentration": {"y": {"min": 0.5, "max": 1.0, "points": 3}}}},
     ["probes.landscape_concentration.y", "y = 0"]),
    ({"probes": {"landscape_concentration": {"budgets": [{"pairs": 2000, "envs": 1}, {"pairs": 2000, "envs": 4}]}}},
     ["probes.landscape_concentration.budgets", "increase"]),
    ({"probes": {"landscape_concentration": {"budgets": [{"pairs": 2000}]}}},
     ["probes.landscape_concentration.budgets", "envs"]),
    ({"probes": {"landscape_concentration": {"crn": "no"}}}, ["probes.landscape_concentration.crn"]),
    # exact resume of a non-MuJoCo env is impossible: said at validation, before any job
    ({"train": {"reset_every_iter": False}, "figures": {"curves": {"envs": ["Pendulum-v1"]}}},
     ["train.reset_every_iter", "Pendulum-v1"]),
])
def test_bad_params_raise_config_error_naming_the_key(params, tmp_path, overlay, names):
    path = _write(tmp_path, overlay)
    with pytest.raises(ConfigError) as info:
        config.load(params, [path])
    msg = str(info.value)
    assert "\n" not in msg
    for name in names:
        assert name in msg, msg


def test_trpo_kind_requires_its_keys(params, tmp_path):
    raw = yaml.safe_load(params.read_text())
    trpo = {k: v for k, v in raw["algos"]["trpo"].items() if k != "max_kl"}
    path = _write(tmp_path, {"algos": {"trpo2": trpo}})
    with pytest.raises(ConfigError, match="max_kl"):
        config.load(params, [path])


def test_missing_or_malformed_files(params, tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="nope.yaml"):
        config.load(params, [tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        config.load(params, [bad])
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        config.load(params, [lst])


def test_agent_config_applies_env_overrides(params):
    cfg = config.load(params)
    snapshot = copy.deepcopy(cfg)
    hum = config.agent_config(cfg, "Humanoid-v5", "ppo")
    assert hum["env"] == "Humanoid-v5" and hum["algo"] == "ppo"
    assert hum["algo_cfg"]["lr"] == pytest.approx(1.5e-4)
    assert hum["algo_cfg"]["value_lr"] == pytest.approx(1.0e-4)
    assert hum["algo_cfg"]["value_clip"] is True
    # keys not overridden come from algos.ppo
    assert hum["algo_cfg"]["clip_eps"] == cfg["algos"]["ppo"]["clip_eps"]
    assert hum["train"] == cfg["train"]
    # an env without overrides gets algos.ppo unchanged
    assert config.agent_config(cfg, "Hopper-v5", "ppo")["algo_cfg"] == cfg["algos"]["ppo"]
    assert config.agent_config(cfg, "Humanoid-v5", "trpo")["algo_cfg"]["max_kl"] == pytest.approx(0.07)
    # the slice holds only this agent's settings, and building it changed nothing in cfg
    assert set(hum) == {"env", "algo", "train", "algo_cfg"}
    hum["algo_cfg"]["lr"] = 1.0
    hum["train"]["gamma"] = 0.0
    assert cfg == snapshot
    with pytest.raises(ConfigError, match="sac"):
        config.agent_config(cfg, "Hopper-v5", "sac")


# ----------------------------------------------------------------------------- CLI
def _train_argv(params, smoke, out, env="Hopper-v5", algo="ppo", extra=()):
    return ["train", "--params", str(params), "--overlay", str(smoke), "--env", env, "--algo", algo,
            "--seed", "0", "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize("env, algo, culprit", [
    ("Nope-v0", "ppo", "Nope-v0"),
    ("Hopper-v5", "sac", "sac"),
    ("CartPole-v1", "ppo", "CartPole-v1"),
])
def test_cli_train_bad_input_one_line_exit_2(params, smoke, tmp_path, capsys, env, algo, culprit):
    out = tmp_path / "out"
    rc = main(_train_argv(params, smoke, out, env, algo))
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pgprobe: error: ")
    assert culprit in lines[0]
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert not out.exists() or not any(out.iterdir())


def test_cli_train_bad_params_names_key(params, smoke, tmp_path, capsys):
    over = _write(tmp_path, {"train": {"iteratons": 3}})
    out = tmp_path / "out"
    rc = main(_train_argv(params, smoke, out, extra=("--overlay", str(over))))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("pgprobe: error: ") and "iteratons" in err
    assert not out.exists() or not any(out.iterdir())


def test_cli_train_smoke_succeeds(params, smoke, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_train_argv(params, smoke, out)) == 0
    assert capsys.readouterr().err == ""
    assert (out / "train.nc").exists() and (out / "train.log").exists()


@pytest.mark.parametrize("minibatches", [128, 200])
def test_minibatches_must_leave_at_least_two_samples_each(params, tmp_path, minibatches):
    """128 pairs split into >= 128 minibatches gives minibatches of one pair (or none): PPO's
    per-minibatch advantage normalisation divides by the std of one number (NaN) and the policy
    parameters become NaN.  Validation must refuse it, naming the key."""
    path = _write(tmp_path, {"train": {"steps_per_iter": 128}, "algos": {"ppo": {"minibatches": minibatches}}})
    with pytest.raises(ConfigError, match=r"algos\.ppo\.minibatches"):
        config.load(params, [path])


@pytest.mark.parametrize("overlay", ["config/quick.yaml", "config/smoke.yaml"])
def test_shipped_overlays_validate(repo_root, params, overlay):
    cfg = config.load(params, [repo_root / overlay])
    assert cfg["run"] == Path(overlay).stem


def test_any_gymnasium_continuous_task_by_configuration(params, tmp_path):
    """Classic-control tasks train (and resume exactly: no env state crosses an iteration boundary)."""
    cfg = config.load(params, [_write(tmp_path, {"figures": {"curves": {"envs": ["Pendulum-v1",
                                                                                   "MountainCarContinuous-v0"]}}})])
    assert cfg["figures"]["curves"]["envs"] == ["Pendulum-v1", "MountainCarContinuous-v0"]
