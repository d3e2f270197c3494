"""The DAG follows the declarations: every shape the figures to come need, by declaration alone."""
from types import SimpleNamespace

import pytest
import yaml

from pgprobe.errors import ConfigError
from pgprobe.pipeline import codedeps, config, dag, declarations
from pgprobe.pipeline.declarations import Figure, Probe


@pytest.fixture
def smoke_cfg(repo_root):
    return config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"])


@pytest.fixture
def more_declared(monkeypatch, smoke_cfg):
    """Probes and figures of the kinds still to come, declared with the landscape and fig 8 modules."""
    probes = {**declarations.PROBES,
              # a shared per-checkpoint intermediate, read by another probe (a "true" gradient)
              "truth": Probe("pgprobe.probes.landscape", "probes.truth"),
              "variance": Probe("pgprobe.probes.landscape", "probes.variance", reads=("checkpoint", "probe:truth")),
              # one module, other settings (fig 5's budgets beside fig 6's landscape)
              "budgets": Probe("pgprobe.probes.landscape", "probes.budgets", threads="all")}
    figures = {**declarations.FIGURES, "figv": Figure("pgprobe.figures.fig8", reads="probe:variance"),
               "figb": Figure("pgprobe.figures.fig6", reads="probe:budgets")}
    monkeypatch.setattr(declarations, "PROBES", probes)
    monkeypatch.setattr(declarations, "FIGURES", figures)
    monkeypatch.setattr(dag, "PROBES", probes)
    monkeypatch.setattr(dag, "FIGURES", figures)
    cfg = dict(smoke_cfg)
    land = cfg["probes"]["landscape"]
    cfg["probes"] = {**cfg["probes"], "truth": land, "variance": land, "budgets": {**land, "samples_per_point": 7}}
    cfg["figures"] = {**cfg["figures"],
                      "figv": {"envs": ["Hopper-v5", "Walker2d-v5"], "algos": ["ppo", "trpo"], "seeds": [0, 1],
                               "iterations": [0, 1, 2, 3]},
                      "figb": {"envs": ["Humanoid-v5"], "algos": ["trpo"], "seeds": [0], "iterations": [3]}}
    return cfg


def test_a_probe_reading_another_probe_shares_it(more_declared):
    jobs = {j.name: j for j in dag.plan(more_declared)}
    variance = [j for j in jobs.values() if j.kind == "probe" and j.wildcards["probe"] == "variance"]
    truth = [j for j in jobs.values() if j.kind == "probe" and j.wildcards["probe"] == "truth"]
    assert len(variance) == len(truth) == 2 * 2 * 2 * 4  # envs x algos x seeds x iterations, each made once
    for v in variance:
        w = v.wildcards
        t = dag.path("probe", run="smoke", probe="truth", env=w["env"], algo=w["algo"], seed=w["seed"],
                     iteration=w["iteration"])
        ck = dag.path("checkpoint", run="smoke", env=w["env"], algo=w["algo"], seed=w["seed"], iteration=w["iteration"])
        assert t in v.deps and ck in v.deps
        assert f"--input probe:truth={t}" in v.cmd and f"--input checkpoint={ck}" in v.cmd
        assert v.params[-1] == "probes.variance" and "probes.truth" not in v.params


def test_every_iteration_is_replayed_so_dense_iterations_need_no_dense_snapshots(more_declared):
    jobs = dag.plan(more_declared)
    its = sorted({int(j.wildcards["iteration"]) for j in jobs if j.kind == "checkpoint"})
    assert its == [0, 1, 2, 3] and more_declared["train"]["save_every"] == 2  # 1 and 3 replay from 0 and 2


def test_one_module_two_settings_two_param_keys(more_declared):
    by_probe = {j.wildcards["probe"]: j for j in dag.plan(more_declared) if j.kind == "probe"}
    assert by_probe["budgets"].params[-1] == "probes.budgets" and by_probe["landscape"].params[-1] == "probes.landscape"
    assert by_probe["budgets"].deps[:-1] == by_probe["landscape"].deps[:-1]  # the same code
    assert dag.threads("probe", "budgets", 32) == 32 and dag.threads("probe", "truth", 32) == 1


def test_figures_from_training_logs_need_no_checkpoints(smoke_cfg):
    jobs = dag.plan(smoke_cfg, ["fig8"])
    assert {j.kind for j in jobs} == {"train", "aggregate", "figure"}
    (agg,) = [j for j in jobs if j.kind == "aggregate"]
    assert len([d for d in agg.deps if d.endswith("train.nc")]) == 3 * 2  # algos x seeds


def test_code_files_follow_the_declared_module(more_declared):
    w = SimpleNamespace(probe="variance")
    assert "src/pgprobe/probes/landscape.py" in dag.code_files("probe", w)
    fig = dag.code_files("figure", SimpleNamespace(figure="figv"))
    assert "src/pgprobe/figures/fig8.py" in fig and not any("probes/" in f or "train.py" in f for f in fig)


def test_handler_helpers_and_package_inits_are_code():
    train = codedeps.stage_files("train")
    # cmd_train calls _agent, which imports the params module; train.py's package inits come along
    assert {"cli.py", "pipeline/config.py", "train.py", "algos/__init__.py", "__init__.py"} <= set(train)
    assert "pipeline/declarations.py" not in codedeps.stage_files("probe", ("pgprobe.probes.landscape",))


def test_iterations_every_n(repo_root, tmp_path):
    over = tmp_path / "o.yaml"
    every = {"iterations": {"every": 10}}
    probed = [f for f, block in yaml.safe_load((repo_root / "params.yaml").read_text())["figures"].items()
              if "iterations" in block]
    over.write_text(yaml.safe_dump({"train": {"iterations": 25}, "figures": {f: every for f in probed}}))
    cfg = config.load(repo_root / "params.yaml", [over])
    assert cfg["figures"]["fig6"]["iterations"] == cfg["figures"]["fig1"]["iterations"] == [0, 10, 20]
    over.write_text(yaml.safe_dump({"figures": {"fig6": {"iterations": {"every": 0}}}}))
    with pytest.raises(ConfigError, match="figures.fig6.iterations"):
        config.load(repo_root / "params.yaml", [over])


def test_gradient_probes_share_fig6s_checkpoints_and_their_inputs(smoke_cfg):
    # Breaks if figs 1/2 (or 4, or 5) train or checkpoint anything of their own in smoke, if g* or the estimates
    # are made more than once per checkpoint, or if a derived probe carries a params block it does not have.
    # Fig 7's PPO agent is fig 8's seed 0: two checkpoints of its own, and its landscapes.
    jobs = dag.plan(smoke_cfg)
    by_kind = {}
    for j in jobs:
        by_kind.setdefault(j.kind, []).append(j)
    assert len(by_kind["checkpoint"]) == 4 and len(by_kind["train"]) == 6
    assert {j.wildcards["algo"] for j in by_kind["checkpoint"]} == {"trpo", "ppo"}
    probes = {}
    for j in by_kind["probe"]:
        probes.setdefault(j.wildcards["probe"], []).append(j)
    assert {k: len(v) for k, v in probes.items()} == {"landscape": 4, "landscape_concentration": 2,
                                                       "grad_estimates": 2, "true_gradient": 2,
                                                       "grad_variance": 2, "grad_convergence": 2,
                                                       "true_value": 2, "baseline_grads": 2, "value_error": 2}
    for j in probes["baseline_grads"]:  # fig 4: the checkpoint and the true value function of the same agent
        w = {k: j.wildcards[k] for k in ("env", "algo", "seed", "iteration")}
        assert dag.path("probe", run="smoke", probe="true_value", **w) in j.deps
        assert dag.path("checkpoint", run="smoke", **w) in j.deps
        assert j.params[-1] == "probes.baseline_grads"
    for j in probes["grad_convergence"]:
        w = {k: j.wildcards[k] for k in ("env", "algo", "seed", "iteration")}
        for other in ("grad_estimates", "true_gradient"):
            assert dag.path("probe", run="smoke", probe=other, **w) in j.deps
        assert not [d for d in j.deps if "/checkpoints/" in d]
        assert not [p for p in j.params if p.startswith("probes.")]
    est = probes["grad_estimates"][0]
    assert est.params[-1] == "probes.grad_estimates" and "src/pgprobe/probes/gradients.py" in est.deps


def test_fig5_and_fig7_reuse_the_landscape_probe_with_their_own_settings(smoke_cfg):
    # Breaks if fig 7 makes landscapes of its own instead of reading fig 6's probe at its agents, or if fig 5's
    # budgets share fig 6's params key (then changing one would rerun the other).
    jobs = dag.plan(smoke_cfg)
    probes = {j.outs[0]: j for j in jobs if j.kind == "probe"}
    agg = {j.wildcards["figure"]: j for j in jobs if j.kind == "aggregate"}
    for dep in agg["fig7"].deps:
        if dep.endswith(".nc"):
            assert "/probes/landscape/" in dep and "/ppo/" in dep and probes[dep].params[-1] == "probes.landscape"
    conc = [j for j in probes.values() if j.wildcards["probe"] == "landscape_concentration"]
    assert conc and all(j.params[-1] == "probes.landscape_concentration" and "probes.landscape" not in j.params
                        and "--input checkpoint=" in j.cmd for j in conc)
    assert all("src/pgprobe/probes/landscape.py" in j.deps for j in conc)  # one implementation, other settings


def test_a_missing_block_of_a_probe_read_by_the_figures_probe_is_named(repo_root, tmp_path):
    cfg = yaml.safe_load((repo_root / "params.yaml").read_text())
    del cfg["probes"]["true_gradient"]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="probes.true_gradient: missing"):
        config.load(path)
