"""What each job asks a scheduler for (pgprobe.pipeline.resources) and the SLURM profile that submits it.

The end-to-end check, a real SLURM running the smoke pipeline with these requests, is tests/test_slurm.py.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace as N

import pytest
import yaml

from pgprobe.pipeline import config, resources
from pgprobe.pipeline.declarations import PROBES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return config.load(REPO / "params.yaml")


@pytest.fixture(scope="module")
def smoke():
    return config.load(REPO / "params.yaml", [REPO / "config/smoke.yaml"])


def test_every_probe_has_a_cost_model(paper):
    assert set(resources.COSTS) == set(PROBES)
    for name in PROBES:
        serial, parallel = resources.steps(paper, "probe", N(probe=name))
        assert serial >= 0 and parallel >= 0, name


def test_threads_follow_the_declarations_and_the_grid(paper, smoke):
    for name, probe in PROBES.items():
        if probe.threads != "all":
            assert resources.threads(paper, "probe", N(probe=name)) == probe.threads, name
    # "all": every grid point's env slots can go to a worker; Snakemake caps it (--cores, --max-threads)
    for cfg in (paper, smoke):
        p = cfg["probes"]["landscape"]
        assert resources.threads(cfg, "probe", N(probe="landscape")) == \
            p["x"]["points"] * p["y"]["points"] * p["envs_per_point"]
    for kind in ("train", "checkpoint", "aggregate", "figure"):
        assert resources.threads(paper, kind, N()) == 1


def test_runtime_follows_the_params(paper, smoke):
    land = N(probe="landscape")
    floor = resources.RUNTIME_FLOOR_MIN
    # paper scale: hours, shrinking with threads; smoke scale: the floor
    assert resources.runtime(paper, "probe", land, threads=1) > resources.runtime(paper, "probe", land, threads=32) > 60
    assert resources.runtime(smoke, "probe", land, threads=2) == floor
    assert resources.runtime(paper, "train", N()) == pytest.approx(
        paper["train"]["iterations"] * paper["train"]["steps_per_iter"] / resources.STEPS_PER_CORE_SECOND / 60, abs=1)
    # twice the samples per grid point: about twice the time; a retry asks for more
    bigger = config.deep_merge(paper, {"probes": {"landscape": {"samples_per_point": 2 * 10**6}}})
    one, two = (resources.runtime(c, "probe", land, threads=32) for c in (paper, bigger))
    assert 1.6 < two / one < 2.0
    assert resources.runtime(paper, "probe", land, 32, attempt=2) == 2 * one
    # g*'s sample count sets its time; the probes that only read other probes take the floor
    more = config.deep_merge(paper, {"probes": {"true_gradient": {"n_star": 2 * 10**7}}})
    g = N(probe="true_gradient")
    assert resources.runtime(more, "probe", g) > 1.9 * resources.runtime(paper, "probe", g)
    assert resources.runtime(paper, "probe", N(probe="grad_variance")) == floor


def test_paper_scale_requests_in_readme(paper):
    """README "On a cluster (SLURM)": a training 67 min, a landscape probe on 32 cores 410 min, g* 667 min."""
    assert resources.runtime(paper, "train", N()) == 67
    assert resources.runtime(paper, "probe", N(probe="landscape"), threads=32) == 410
    assert resources.runtime(paper, "probe", N(probe="true_gradient")) == 667
    assert resources.mem_mb(paper, "probe", N(probe="landscape")) == 8000


def test_memory_is_capped_by_the_declaration(paper, smoke):
    for name, probe in PROBES.items():
        for cfg in (paper, smoke):
            assert resources.BASE_MB <= resources.mem_mb(cfg, "probe", N(probe=name)) <= max(resources.BASE_MB,
                                                                                             probe.mem_mb), name
    # the paper's many-sample batch needs the declared 8 GB; the smoke run's 1024 pairs need the base
    assert resources.mem_mb(paper, "probe", N(probe="landscape")) == PROBES["landscape"].mem_mb
    assert resources.mem_mb(smoke, "probe", N(probe="landscape")) < resources.BASE_MB + 50


def test_the_slurm_profile_keeps_no_resource_list():
    prof = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert not {"set-resources", "set-threads", "default-resources"} & set(prof)
    assert {"jobs", "latency-wait", "retries", "rerun-incomplete", "max-threads", "slurm-logdir"} <= set(prof)
    # every slurm-* key is a setting of the installed executor plugin
    from snakemake_executor_plugin_slurm import ExecutorSettings

    fields = {f.name for f in dataclasses.fields(ExecutorSettings)}
    for key in (k for k in prof if k.startswith("slurm-")):
        assert key.removeprefix("slurm-").replace("-", "_") in fields, key


def test_rules_ask_for_what_the_module_says(tmp_path, paper):
    """A dry run of fig 6 at paper scale with the SLURM profile and 32 cores: each job's threads, mem_mb
    and runtime as pgprobe.pipeline.resources computes them from the params."""
    from test_pipeline import copy_repo, sh

    root = copy_repo(tmp_path / "repo")
    out = sh(root, "snakemake", "-n", "--profile", "profiles/slurm", "--cores", "32", "figures/fig6.pdf",
             "--set-resources", "checkpoint:runtime=33").stdout  # README: how to override one rule
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S)", out, re.M | re.S)
    checked = 0
    for rule, body in jobs:
        if rule == "all":
            continue
        w = dict(kv.split("=", 1) for kv in re.search(r"wildcards: (.*)", body).group(1).split(", "))
        threads = int(m.group(1)) if (m := re.search(r"threads: (\d+)", body)) else 1
        res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", body).group(1).split(", "))
        ns = N(**w)
        assert threads == min(resources.threads(paper, rule, ns), 32), (rule, w)
        assert int(res["mem_mb"]) == resources.mem_mb(paper, rule, ns), (rule, w)
        want = 33 if rule == "checkpoint" else resources.runtime(paper, rule, ns, threads)
        assert int(res["runtime"]) == want, (rule, w)
        checked += 1
    assert checked == 11, out[-3000:]  # train, 4 checkpoints, 4 landscape probes, aggregate, figure


def test_shards_divide_a_probes_work_and_its_gather_asks_for_little(paper):
    # Breaks if a shard job asks for the whole probe's time or threads, or the gathering job for a plane's.
    split = config.deep_merge(paper, {"shards": {"landscape": 9, "true_gradient": 8}})
    land, g = N(probe="landscape"), N(probe="true_gradient")
    for probe, n in (("landscape", 9), ("true_gradient", 8)):
        whole_serial, whole_parallel = resources.steps(paper, "probe", N(probe=probe))
        serial, parallel = resources.steps(split, "shard", N(probe=probe))
        assert n * (serial + parallel) >= whole_serial + whole_parallel  # every step is in some shard
        assert serial + parallel < (whole_serial + whole_parallel) / n * 1.25, probe  # plus the landscape's step
        assert resources.steps(split, "probe", N(probe=probe)) == (0, 0)  # it gathers
        assert resources.threads(split, "probe", N(probe=probe)) == 1
        assert resources.mem_mb(split, "probe", N(probe=probe)) == resources.BASE_MB
    # a plane's shard: one row's grid points x env slots.  Each shard also makes the step from 10^6 fresh pairs
    # (serial, ~1 h at the conservative rate), so nine shards cut the plane's time about fourfold, not ninefold
    p = paper["probes"]["landscape"]
    assert resources.threads(split, "shard", land) == p["y"]["points"] * p["envs_per_point"]
    whole, shard = (resources.runtime(c, k, land, threads=32) for c, k in ((paper, "probe"), (split, "shard")))
    assert 3 < whole / shard < 5
    assert resources.runtime(split, "shard", g) < resources.runtime(paper, "probe", g) / 7
