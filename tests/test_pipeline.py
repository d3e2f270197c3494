"""The pipeline end to end, in a temporary copy of the repository, with Snakemake and DVC.

One smoke run (Snakemake, `--cores 2 --configfile config/smoke.yaml`: every figure of the smoke
run) is shared by the tests of this module; the rest are dry runs (`snakemake -n`, `dvc status`)
and one `dvc repro` of the landscape probes through pipelines/smoke/dvc.yaml.  The copy runs its
own source (PYTHONPATH=<copy>/src), so editing a source file in it is seen by both runners and by
the jobs.

Order matters (pytest runs a module top to bottom): the tests that change params or source
restore them; the DVC test that reruns the probes comes last.
"""
from __future__ import annotations

import ast
import base64
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml

from pgprobe.pipeline import dag

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SKIP_TOP = {".venv", "data", "figures", "logs", ".snakemake", ".pytest_cache", ".pgprobe"}
SMOKE = ("--configfile", "config/smoke.yaml")
SMOKE_DVC = "pipelines/smoke/dvc.yaml"
FIGS = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "curves")
# probes: per TRPO checkpoint (fig 6's two, shared by figs 1, 2, 3, 4 and 5) landscape, grad_estimates,
# true_gradient, grad_variance, grad_convergence, true_value, baseline_grads, value_error,
# landscape_concentration; per PPO checkpoint (fig 7's two, of fig 8's PPO seed 0) landscape
ALL_SMOKE = {"train": 6, "checkpoint": 4, "probe": 20, "aggregate": 9, "figure": 9, "all": 1}


def test_snakemake_and_dvc_are_installed():
    """The pipeline tests need both runners next to the test interpreter (`pip install -e .` puts them there)."""
    assert (VENV_BIN / "snakemake").exists() and (VENV_BIN / "dvc").exists(), VENV_BIN


# -- helpers --------------------------------------------------------------------------------
def _env(root: Path) -> dict:
    env = os.environ.copy()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(root / "src")  # the copy's own pgprobe, not the editable install's
    env["MUJOCO_GL"] = "disable"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def sh(root: Path, *args, check: bool = True, timeout: float = 600, merge: bool = True) -> subprocess.CompletedProcess:
    """Run a venv executable (or git) in `root`; stdout and stderr merged unless `merge=False`."""
    exe = str(VENV_BIN / args[0]) if (VENV_BIN / args[0]).exists() else args[0]
    proc = subprocess.run([exe, *map(str, args[1:])], cwd=root, env=_env(root), text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE)
    if check and proc.returncode != 0:
        pytest.fail(f"`{' '.join(map(str, args))}` exited {proc.returncode} in {root}:\n"
                    f"{proc.stdout[-6000:]}{'' if merge else proc.stderr[-6000:]}")
    return proc


def copy_repo(dest: Path) -> Path:
    """The tracked (and untracked, not ignored) files of the working tree, symlinks kept as symlinks."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in filter(None, files):
        if rel.split("/", 1)[0] in SKIP_TOP:
            continue
        src = REPO / rel
        if not src.exists() and not src.is_symlink():  # deleted in the working tree
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        else:
            shutil.copy2(src, out)
    return dest


def params_of(root: Path, *overlays) -> dict:
    """params.yaml (+ overlays), merged and validated by the copy's own pgprobe."""
    code = (f"import json; from pgprobe.pipeline import config; "
            f"print(json.dumps(config.load('params.yaml', {list(overlays)!r})))")
    return json.loads(sh(root, "python", "-c", code, merge=False).stdout)


def git_commit(root: Path, msg: str) -> None:
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=pgprobe-tests", "-c", "user.email=tests@pgprobe.invalid",
       "commit", "-q", "--allow-empty", "-m", msg)


def job_counts(output: str) -> dict[str, int]:
    """The first `Job stats:` table of a Snakemake run or dry run; {} when there is nothing to do."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        assert "Nothing to be done" in output, output[-3000:]
        return {}
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def dry_run(root: Path, *targets, overlay=SMOKE) -> dict[str, int]:
    return job_counts(sh(root, "snakemake", "-n", *targets, *overlay).stdout)


def snakemake_dag(root: Path, overlay=()) -> list[dict]:
    """Every job of `snakemake -n --forceall -p`: rule, inputs, outputs, shell command (no log redirect)."""
    out = sh(root, "snakemake", "-n", "--forceall", "-p", *overlay).stdout
    jobs, job = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line)
        if m:
            job = {"rule": m.group(1), "input": [], "output": [], "cmd": None, "wildcards": {}}
            jobs.append(job)
        elif job is not None and re.match(r"^\s+(input|output): ", line):
            key, files = line.strip().split(": ", 1)
            job[key] = [f.strip() for f in files.split(", ")]
        elif job is not None and re.match(r"^\s+wildcards: ", line):
            job["wildcards"] = dict(kv.split("=", 1) for kv in line.strip()[len("wildcards: "):].split(", "))
        elif job is not None and line.startswith("Shell command: "):
            job["cmd"] = normalise_cmd(line[len("Shell command: "):])
    assert jobs, out[-3000:]
    return jobs


def normalise_cmd(cmd: str) -> str:
    cmd = re.sub(r"\s+2>\s*\S+\s*$", "", cmd.strip())  # Snakemake's log redirect
    # Snakemake passes its thread count, DVC 0 (every core); results do not depend on it
    # (test_evaluate.py: the same numbers whatever the number of workers).
    return re.sub(r"\s+--threads \d+", "", cmd)


def dvc_stages(root: Path, dvc_yaml: str = SMOKE_DVC) -> dict:
    return yaml.safe_load((root / dvc_yaml).read_text())["stages"]


def stage_kind(name: str) -> str:
    return name.split("-", 1)[0]


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "data").rglob("*") if p.is_file())


def dvc_status(root: Path, dvc_yaml: str = SMOKE_DVC) -> dict:
    """Stages out of date, by their names in `dvc_yaml`."""
    status = json.loads(sh(root, "dvc", "status", dvc_yaml, "--json", merge=False).stdout or "{}")
    return {name.removeprefix(f"{dvc_yaml}:"): v for name, v in status.items()}


@contextlib.contextmanager
def edited(path: Path, change):
    """Apply `change(text) -> text` to a file, and restore it (bytes and mtime) afterwards."""
    before, st = path.read_bytes(), path.stat()
    path.write_text(change(before.decode()))
    try:
        yield
    finally:
        path.write_bytes(before)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


@contextlib.contextmanager
def params_changed(root: Path, dotted: str, value, file: str = "config/smoke.yaml"):
    """Set a key in a params file (the smoke overlay by default), restored afterwards."""
    def change(text):
        tree = yaml.safe_load(text) or {}
        _set(tree, dotted, value)
        return yaml.safe_dump(tree, sort_keys=False)

    with edited(root / file, change):
        yield


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """A git copy of the repo and ONE smoke run of every figure, as a user runs it."""
    root = copy_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    sh(root, "git", "init", "-q")
    git_commit(root, "smoke copy")
    proc = sh(root, "snakemake", "--cores", "2", *SMOKE, timeout=1200)
    assert job_counts(proc.stdout) == ALL_SMOKE, proc.stdout[-3000:]
    return root


@pytest.fixture(scope="module")
def dvc_committed(smoke) -> Path:
    """The smoke run recorded in DVC (`dvc commit --force`), dvc.lock committed to git."""
    if not (smoke / ".dvc" / "config").exists():
        sh(smoke, "dvc", "init", "-q")
    sh(smoke, "dvc", "commit", "--force", SMOKE_DVC)
    git_commit(smoke, "dvc commit of the smoke run")
    return smoke


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """A copy with the repo's own params and pipelines, and no data: for dry runs only."""
    return copy_repo(tmp_path_factory.mktemp("bare") / "repo")


# -- 1. end to end ---------------------------------------------------------------------------
def test_smoke_pipeline_end_to_end(smoke):
    import numpy as np

    from pgprobe.pipeline.artifacts import read_nc

    cfg = params_of(smoke, "config/smoke.yaml")
    for fig in FIGS:
        pdf = smoke / dag.path("figure", run="smoke", figure=fig)
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf
    expected = {o for job in dag.plan(cfg) for o in job.outs}
    for out in expected:  # every declared output exists
        assert (smoke / out).exists(), out
    assert not [p for p in data_files(smoke) if ".tmp" in p.name], "temporary files left behind"
    kinds = {}
    for p in (p for p in data_files(smoke) if p.suffix == ".nc"):
        ds = read_nc(p)
        assert ds.attrs.get("pgprobe_kind") and ds.attrs.get("pgprobe_code"), p
        kinds.setdefault(ds.attrs["pgprobe_kind"], []).append(ds)
        assert not [d for d in ds.dims if re.search(r"_d\d+$", d)] or ds.attrs["pgprobe_kind"] == "snapshot", \
            f"{p}: unnamed dims {list(ds.dims)}"
    assert {"train_log", "snapshot", "checkpoint", "probe_landscape", "aggregate_fig6", "aggregate_fig8",
            "aggregate_curves", "probe_grad_estimates", "probe_true_gradient", "probe_grad_variance",
            "probe_grad_convergence", "aggregate_fig1", "aggregate_fig2", "probe_true_value",
            "probe_baseline_grads", "aggregate_fig4", "probe_value_error", "aggregate_fig3",
            "probe_landscape_concentration", "aggregate_fig5", "aggregate_fig7"} <= set(kinds)
    gcfg = cfg["probes"]["grad_estimates"]
    for ds in kinds["probe_grad_estimates"]:  # the grid plus the agent's batch size, R independent estimates
        assert list(ds["n"].values) == sorted(set(gcfg["n_grid"]) | {cfg["train"]["steps_per_iter"]})
        assert ds.sizes["repeat"] == gcfg["repeats"] and ds["gradient"].dtype == np.float32
    for ds in kinds["probe_grad_variance"]:
        assert np.allclose(np.diagonal(ds["cosine"].values, axis1=-2, axis2=-1), 1.0, atol=1e-5)
    for ds in kinds["aggregate_fig1"] + kinds["aggregate_fig2"]:
        assert np.isfinite(ds["similarity_mean"].values).all()
        assert list(ds["n"].values) == sorted(set(gcfg["n_grid"]) | {cfg["train"]["steps_per_iter"]})
    bcfg = cfg["probes"]["baseline_grads"]
    for ds in kinds["probe_baseline_grads"]:  # three baselines on the same samples, no batch-mean baseline
        assert list(ds["baseline"].values) == ["agent", "true_value", "none"] and ds.attrs["norm_adv"] == 0
        assert ds.sizes["repeat"] == bcfg["repeats"]
        assert np.allclose(np.diagonal(ds["cosine"].values, axis1=-2, axis2=-1), 1.0, atol=1e-5)
    for ds in kinds["probe_true_value"]:
        assert int(ds["pairs_collected"]) >= cfg["probes"]["true_value"]["n_fit"] and ds.sizes["value_param"] > 0
    for ds in kinds["aggregate_fig4"]:
        assert np.isfinite(ds["similarity_mean"].values).all() and ds.sizes["baseline"] == 3
    for ds in kinds["probe_value_error"]:  # held-out batches of the agent's size, three targets
        assert list(ds["target"].values) == ["gae", "returns", "returns_complete"]
        assert ds.sizes["batch"] == cfg["probes"]["value_error"]["batches"]
        assert ds.sizes["pair"] == cfg["train"]["steps_per_iter"] and "reward_units" in ds.attrs
    for ds in kinds["aggregate_fig3"]:
        assert np.isfinite(ds["mre_mean"].sel(target=["gae", "returns"]).values).all()
    for kind in ("train_log", "checkpoint", "probe_landscape"):  # agent coordinates, for combine_by_coords
        for ds in kinds[kind]:
            assert {"env", "algo", "seed"} <= set(ds.coords), kind
    lcfg = cfg["probes"]["landscape"]
    for ds in kinds["probe_landscape"]:
        assert int(ds.coords["iteration"]) in cfg["figures"]["fig6"]["iterations"]
        assert ds.attrs["direction_norm_kind"] == lcfg["direction_norm"]
        assert bool(ds.attrs["perturb_log_std"]) == lcfg["perturb_log_std"]
        assert np.linalg.norm(ds["direction"].values) == pytest.approx(1.0)
        assert ds.sizes["x"] == lcfg["x"]["points"] and ds.sizes["y"] == lcfg["y"]["points"]
        assert (ds["episodes"].values >= 1).all()
        assert {"episode_return", "episode_discounted_return", "episode_length", "true_reward_sem"} <= set(ds)
    assert {str(ds.coords["algo"].values) for ds in kinds["probe_landscape"]} == {"trpo", "ppo"}  # figs 6 and 7
    ccfg = cfg["probes"]["landscape_concentration"]
    for ds in kinds["probe_landscape_concentration"]:  # fig 5: every budget, independent samples per point
        assert list(ds["budget"].values) == [b["pairs"] for b in ccfg["budgets"]]
        assert (ds["pairs"].values >= ds["budget"].values[:, None, None]).all()
        assert ds.attrs["common_random_numbers"] == 0 and ds.attrs["regime"] == ccfg["regime"]
        assert len(np.unique(ds["evaluation_seed"].values)) == ds["evaluation_seed"].size
    for ds in kinds["aggregate_fig5"]:
        assert np.isfinite(ds["noise_se"].values).all() and ds.sizes["budget"] == len(ccfg["budgets"])
    # a quick or smoke run leaves the paper run alone
    assert not (smoke / "data" / "paper").exists() and not list((smoke / "figures").glob("*.pdf"))
    assert dry_run(smoke) == {}, "a second `snakemake -n` should have nothing to do"


def test_info_says_what_made_an_artifact(smoke):
    probe = dag.path("probe", run="smoke", probe="landscape", env="Humanoid-v5", algo="trpo", seed=0, iteration=3)
    out = sh(smoke, "pgprobe", "info", probe, merge=False).stdout
    assert "a probe_landscape artifact" in out
    assert "env=Humanoid-v5  algo=trpo  seed=0  iteration=3" in out
    assert re.search(r"code:\s+pgprobe \S+\+[0-9a-f]{16}", out)
    assert "torch 2.13.0" in out and "max_kl" in out and "samples_per_point" in out  # upstream and own params


@pytest.mark.parametrize("kind", ["train", "checkpoint", "probe", "aggregate", "figure"])
def test_code_fingerprint_covers_every_module_a_job_imports(smoke, tmp_path, kind):
    """Run one real job of each kind (outputs elsewhere) with `python -X importtime`: every pgprobe module
    it imports is among its stage's code files, so an edit to any of them reruns it."""
    name, stage = next((n, s) for n, s in dvc_stages(smoke).items() if stage_kind(n) == kind)
    out = stage["outs"][0]
    cmd = stage["cmd"].replace(f"--out {out}", f"--out {tmp_path / 'out' / Path(out).name}")
    if kind == "train":
        cmd = re.sub(r"--out \S+", f"--out {tmp_path / 'agent'}", stage["cmd"])
    args = cmd.split()[1:]
    proc = subprocess.run([str(VENV_BIN / "python"), "-X", "importtime", "-m", "pgprobe.cli", *args], cwd=smoke,
                          env=_env(smoke), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = set(re.findall(r"\|\s+(pgprobe(?:\.\w+)*)\s*$", proc.stderr, re.M))
    files = set()
    for mod in imported:
        rel = mod.replace(".", "/")
        files.add(f"src/{rel}/__init__.py" if (smoke / "src" / rel).is_dir() else f"src/{rel}.py")
    declared = {d for d in stage["deps"] if d.startswith("src/")}
    assert files - {"src/pgprobe/pipeline/declarations.py"} <= declared, \
        f"{name} imports {sorted(files - declared)} but its stage does not list them"
    assert "src/pgprobe/cli.py" in declared
    if kind in ("aggregate", "figure"):  # figures and aggregates never load torch or gymnasium
        heavy = set(re.findall(r"\|\s+(torch|gymnasium)\s*$", proc.stderr, re.M))
        assert not heavy, f"{name} imports {heavy}"


# -- 2. byte-determinism ---------------------------------------------------------------------
def test_train_and_checkpoint_are_byte_identical(smoke, tmp_path):
    env, algo, seed, it = "Humanoid-v5", "trpo", 0, 3
    agent = smoke / dag.agent_dir("smoke", env, algo, seed)
    again = tmp_path / "agent"
    args = ("--params", "params.yaml", "--overlay", "config/smoke.yaml", "--env", env, "--algo", algo, "--seed", seed)
    sh(smoke, "pgprobe", "train", *args, "--out", again)
    assert (again / "train.nc").read_bytes() == (agent / "train.nc").read_bytes()
    snaps = sorted(p.name for p in (agent / "snapshots").glob("*.nc"))
    assert snaps and snaps == sorted(p.name for p in (again / "snapshots").iterdir())
    for name in snaps:
        assert (again / "snapshots" / name).read_bytes() == (agent / "snapshots" / name).read_bytes(), name
    ck = tmp_path / "ck.nc"
    sh(smoke, "pgprobe", "checkpoint", *args, "--iteration", it, "--train-dir", again, "--out", ck)
    made = smoke / dag.path("checkpoint", run="smoke", env=env, algo=algo, seed=seed, iteration=it)
    assert ck.read_bytes() == made.read_bytes()


# -- 3. the two DAGs agree, for every run ----------------------------------------------------------
def _check_dags_agree(root: Path, dvc_yaml: str, overlays=()) -> list[dict]:
    cfg = params_of(root, *overlays)
    jobs = [j for j in snakemake_dag(root, [a for o in overlays for a in ("--configfile", o)]) if j["rule"] != "all"]
    dvc = dvc_stages(root, dvc_yaml)
    snake = {(j["cmd"], frozenset(j["output"])): j for j in jobs}
    theirs = {(normalise_cmd(s["cmd"]), frozenset(s["outs"])): name for name, s in dvc.items()}
    assert set(snake) == set(theirs), (
        f"only in Snakemake: {sorted(set(snake) - set(theirs))}\nonly in dvc.yaml: {sorted(set(theirs) - set(snake))}")
    from types import SimpleNamespace

    for key, name in theirs.items():
        s, j = dvc[name], snake[key]
        assert stage_kind(name) == j["rule"], name
        data = [d for d in j["input"] if not d.startswith(dag.STAMPS)]  # Snakemake's params stamps: not DVC's
        assert sorted(d for d in s["deps"] if not d.startswith("src/")) == sorted(data), name
        w = SimpleNamespace(**j["wildcards"])
        assert sorted(d for d in s["deps"] if d.startswith("src/")) == sorted(dag.code_files(j["rule"], w)), name
        keys = dag.stage_keys(cfg, j["rule"], w)
        listed = s.get("params", [])
        if overlays:  # each key under every file that sets it, params.yaml always
            by_file = {f: ks for entry in listed for f, ks in entry.items()}
            assert by_file.get("params.yaml", []) == keys, name
            assert set(by_file) <= {"params.yaml", *overlays} and s.get("wdir") == "../..", name
        else:
            assert listed == keys, name
    return jobs


def test_dags_agree_smoke(smoke):
    jobs = _check_dags_agree(smoke, SMOKE_DVC, ["config/smoke.yaml"])
    assert len(jobs) == sum(ALL_SMOKE.values()) - 1
    # The params slice Snakemake recorded for each job holds exactly the job's params keys and the hash
    # of its code, computed from the copy's source.
    dvc = dvc_stages(smoke)
    code = ("import json, sys; from types import SimpleNamespace as N; from pgprobe.pipeline import dag, codedeps; "
            "jobs = json.load(sys.stdin); print(json.dumps({o: codedeps.files_hash([f.removeprefix('src/pgprobe/') "
            "for f in dag.code_files(k, N(**w))]) for o, (k, w) in jobs.items()}))")
    wanted = {s["outs"][0]: (stage_kind(n), _wildcards(s)) for n, s in dvc.items()}
    hashes = json.loads(subprocess.run([str(VENV_BIN / "python"), "-c", code], input=json.dumps(wanted), text=True,
                                       capture_output=True, cwd=smoke, env=_env(smoke), check=True).stdout)
    for out, (kind, _) in wanted.items():
        record = json.loads((smoke / ".snakemake" / "metadata" / base64.b64encode(out.encode()).decode()).read_text())
        (slice_,) = [p for p in map(ast.literal_eval, record["params"]) if isinstance(p, str) and '"code"' in p]
        job = json.loads(slice_)
        name = next(n for n, s in dvc.items() if s["outs"][0] == out)
        keys = [k for entry in dvc[name].get("params", []) for k in entry.get("params.yaml", [])]
        assert sorted(job["params"]) == sorted(keys), name
        assert job["code"] == hashes[out], name
        if out.endswith(".nc"):  # the artifact carries the same record
            from pgprobe.pipeline import records

            assert records.recorded(smoke / out) == job, out


def _wildcards(stage: dict) -> dict:
    m = re.match(r"data/\w+/(?:agents|checkpoints|probes/(?P<probe>\w+))/(?P<env>[^/]+)/(?P<algo>[^/]+)/seed(?P<seed>\d+)"
                 r"(?:/iter(?P<iteration>\d+))?", stage["outs"][0])
    if m:
        return {k: v for k, v in m.groupdict().items() if v is not None}
    return {"figure": Path(stage["outs"][0]).stem}


@pytest.mark.parametrize("overlay", [None, "config/quick.yaml", "mine"])
def test_dags_agree_paper_quick_and_a_user_overlay(bare, overlay):
    overlays = []
    if overlay == "mine":  # a user's own run: shorter training, other iterations, one figure more seeds
        (bare / "config" / "mine.yaml").write_text(yaml.safe_dump(
            {"run": "mine", "train": {"iterations": 20, "save_every": 5},
             "figures": {"fig1": {"iterations": [0, 7, 19]}, "fig2": {"iterations": [0, 19]}, "fig4": {"iterations": [0, 19]},
                         "fig5": {"iterations": [19]}, "fig6": {"iterations": [0, 7, 19]},
                         "fig7": {"iterations": [0, 19]}, "fig8": {"seeds": [4, 5]}},
             "shards": {"landscape": 3}}))  # fig 6 and 7's planes: three shard jobs each, gathered
        overlays = ["config/mine.yaml"]
    elif overlay:
        overlays = [overlay]
    cfg = params_of(bare, *overlays)
    dvc_yaml = sh(bare, "pgprobe", "dvc-yaml", *[a for o in overlays for a in ("--overlay", o)]).stdout
    path = "dvc.yaml" if not overlays else f"pipelines/{cfg['run']}/dvc.yaml"
    assert path in dvc_yaml
    jobs = _check_dags_agree(bare, path, overlays)
    assert len(jobs) == len(dag.plan(cfg))


@pytest.mark.parametrize("overlay", [None, "config/quick.yaml", "config/smoke.yaml"])
def test_committed_dvc_pipelines_are_fresh(overlay):
    args = [] if overlay is None else ["--overlay", overlay]
    proc = subprocess.run([str(VENV_BIN / "pgprobe"), "dvc-yaml", *args, "--out", "-"], cwd=REPO, env=_env(REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = "dvc.yaml" if overlay is None else f"pipelines/{Path(overlay).stem}/dvc.yaml"
    assert proc.stdout == (REPO / path).read_text(), f"{path} is stale: run `pgprobe dvc-yaml {' '.join(args)}`"


def test_workflow_schema_is_the_one_pgprobe_validates_with():
    from pgprobe.pipeline import config

    link = REPO / "workflow" / "schemas" / "params.schema.yaml"
    assert link.resolve() == config.SCHEMA_PATH.resolve(), f"{link} is not the package's schema"
    schema = yaml.safe_load(link.read_text())
    assert set(schema["properties"]) >= {"run", "train", "algos", "probes", "figures"}


# -- 4. runner hygiene ---------------------------------------------------------------------------------
def test_default_profile_is_loaded_by_every_call(bare):
    out = sh(bare, "snakemake", "-n").stdout
    assert "Using workflow specific profile profiles/default" in out, out[-2000:]
    profile = bare / "workflow" / "profiles" / "default" / "config.yaml"
    with edited(profile, lambda t: t + "\nrerun-triggers: [no-such-trigger]\n"):  # poisoned: must be noticed
        proc = sh(bare, "snakemake", "-n", check=False)
        assert proc.returncode != 0 and "no-such-trigger" in proc.stdout, proc.stdout[-2000:]


def test_unlock_and_dry_run_need_no_cores(bare):
    sh(bare, "snakemake", "--unlock")
    sh(bare, "snakemake", "--unlock", *SMOKE)
    assert dry_run(bare) == ALL_SMOKE  # `snakemake -n`, no --cores


# -- 5. params validated before any job ------------------------------------------------------
BAD = {  # an overlay value -> the key the one-line error must name
    "unknown-env": ("figures.fig6.envs", ["Hoppper-v5"], "figures.fig6.envs"),
    "unknown-algo": ("figures.fig8.algos", ["a2c"], "figures.fig8.algos"),
    "unknown-figure": ("figures.fig99", {"envs": ["Hopper-v5"], "algos": ["ppo"], "seeds": [0]}, "figures.fig99"),
    "zero-samples": ("probes.landscape.samples_per_point", 0, "probes.landscape.samples_per_point"),
    "iteration-beyond-training": ("figures.fig6.iterations", [0, 4], "figures.fig6.iterations"),
    "grid-without-theta-t+1": ("probes.landscape.x", {"min": -0.5, "max": 1.5, "points": 4}, "probes.landscape.x"),
    "misspelt-key": ("train.iteratons", 3, "train.iteratons"),
}


def _line_names_key(line: str, key: str) -> bool:
    """The dotted key, or (a misspelt key) its parent and the unexpected name."""
    parent, _, leaf = key.rpartition(".")
    return key in line or (parent in line and f"'{leaf}'" in line)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_fail_before_any_job(bare, case):
    dotted, value, key = BAD[case]
    with params_changed(bare, dotted, value):
        proc = sh(bare, "snakemake", "--cores", "1", *SMOKE, check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]
        errors = [line for line in proc.stdout.splitlines() if line.startswith("pgprobe: error:")]
        assert len(errors) == 1 and _line_names_key(errors[0], key), proc.stdout[-3000:]
        assert "Traceback" not in proc.stdout and not (bare / "data").exists(), proc.stdout[-3000:]
        proc = sh(bare, "pgprobe", "train", "--params", "params.yaml", "--overlay", "config/smoke.yaml",
                  "--env", "Humanoid-v5", "--algo", "trpo", "--seed", 0, "--out", bare / "data" / "agent",
                  check=False, merge=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and _line_names_key(lines[0], key), proc.stderr[-3000:]
        assert not (bare / "data").exists()


# -- 6. selective recomputation, Snakemake ---------------------------------------------------
# the landscape probes of fig 6 (TRPO) and fig 7 (PPO), and the two figures
LANDSCAPE_PROBES = {"probe": 4, "aggregate": 2, "figure": 2, "all": 1}
# the TRPO agents (fig 6's and fig 8's: seeds 0 and 1), every probe of TRPO seed 0, every figure but fig 7 (PPO)
TRPO_DOWN = {"train": 2, "checkpoint": 2, "probe": 18, "aggregate": 8, "figure": 8, "all": 1}


@pytest.mark.parametrize("dotted,value,expected", [
    ("probes.landscape.y.points", 5, LANDSCAPE_PROBES),
    # fig 5's probes only: fig 6's landscapes share the code, not the params
    ("probes.landscape_concentration.crn", True, {"probe": 2, "aggregate": 1, "figure": 1, "all": 1}),
    # the TRPO agents (fig 6's and fig 8's: seeds 0 and 1) and everything downstream; PPO agents stay
    ("algos.trpo.max_kl", 0.05, TRPO_DOWN),
    # the PPO agents, fig 7's checkpoints and landscapes of seed 0, figs 7, 8 and the curves
    ("algos.ppo.clip_eps", 0.3, {"train": 2, "checkpoint": 2, "probe": 2, "aggregate": 3, "figure": 3, "all": 1}),
    ("env_overrides.Humanoid-v5.ppo_m.lr", 2e-4, {"train": 2, "aggregate": 2, "figure": 2, "all": 1}),
    ("train.gamma", 0.98, ALL_SMOKE),
    # a new iteration: its checkpoint and probe only, then fig 6's aggregate and figure
    ("figures.fig6.iterations", [0, 2, 3], {"checkpoint": 1, "probe": 1, "aggregate": 1, "figure": 1, "all": 1}),
    # the estimates, and the two probes that read them; g* stays
    ("probes.grad_estimates.repeats", 4, {"probe": 6, "aggregate": 2, "figure": 2, "all": 1}),
    # g*, and fig 2's probes; the estimates and fig 1 stay
    ("probes.true_gradient.n_star", 2048, {"probe": 4, "aggregate": 1, "figure": 1, "all": 1}),
    # a new iteration for fig 1: its checkpoint, estimates and cosines; not g*
    ("figures.fig1.iterations", [0, 2, 3], {"checkpoint": 1, "probe": 2, "aggregate": 1, "figure": 1, "all": 1}),
    # the true value function and the baselines' gradients that read it; no other probe
    ("probes.true_value.n_fit", 2048, {"probe": 4, "aggregate": 1, "figure": 1, "all": 1}),
    # the baselines' gradients only: the true value function stays
    ("probes.baseline_grads.repeats", 4, {"probe": 2, "aggregate": 1, "figure": 1, "all": 1}),
    # fig 3's probes only
    ("probes.value_error.min_rel_target", 0.05, {"probe": 2, "aggregate": 1, "figure": 1, "all": 1}),
])
def test_snakemake_reruns_only_what_a_param_reaches(smoke, dotted, value, expected):
    with params_changed(smoke, dotted, value):
        assert dry_run(smoke) == expected


@pytest.mark.parametrize("source,expected", [
    ("probes/landscape.py", {"probe": 6, "aggregate": 3, "figure": 3, "all": 1}),  # figs 5, 6 and 7
    ("figures/fig6.py", {"aggregate": 3, "figure": 3, "all": 1}),  # fig 7 is fig 6's drawing, fig 5 its heatmap
    ("figures/fig8.py", {"aggregate": 1, "figure": 1, "all": 1}),
    # the gradient probes, and fig 4's (baselines.py imports its helpers)
    ("probes/gradients.py", {"probe": 12, "aggregate": 3, "figure": 3, "all": 1}),
    ("probes/baselines.py", {"probe": 4, "aggregate": 1, "figure": 1, "all": 1}),
    ("probes/value_error.py", {"probe": 2, "aggregate": 1, "figure": 1, "all": 1}),
    ("probes/returns.py", {"probe": 6, "aggregate": 2, "figure": 2, "all": 1}),  # figs 3 and 4 use the returns
    ("figures/vs_n.py", {"aggregate": 3, "figure": 3, "all": 1}),  # figs 1, 2 and 4 share it
    ("cli.py", ALL_SMOKE),  # the entry point of every job
    ("pipeline/declarations.py", {}),  # reaches jobs only through their inputs, params and modules
])
def test_snakemake_reruns_only_what_a_code_edit_reaches(smoke, source, expected):
    path = smoke / "src" / "pgprobe" / source
    with edited(path, lambda t: t + "\n# a comment that changes the file's bytes\n"):
        assert dry_run(smoke) == expected


def test_a_reverted_change_reruns_nothing(smoke):
    # Breaks if a stamp keeps the mtime a change gave it once the change is undone (the job would rerun
    # although its output stands for the params and code it has again).
    for change in (lambda: params_changed(smoke, "algos.trpo.max_kl", 0.05),
                   lambda: edited(smoke / "src" / "pgprobe" / "probes" / "landscape.py", lambda t: t + "\n# x\n")):
        with change():
            assert dry_run(smoke) != {}
        assert dry_run(smoke) == {}


# -- 6b. a plane split into shard jobs ---------------------------------------------------------------
def test_sharded_planes_gather_into_the_artifact_one_job_makes(smoke, tmp_path):
    # Breaks if the shard rule, the CLI's --shard/--gather or the gather change the artifact (values, attrs or
    # its job record), or if the shard count leaks into the probe's record (an unsplit run would then rerun).
    probes = sorted((smoke / "data" / "smoke" / "probes" / "landscape").rglob("*.nc"))
    assert len(probes) == 4
    whole = {p: xr.load_dataset(p) for p in probes}
    fig6 = ("figures/smoke/fig6.pdf",)
    with params_changed(smoke, "shards", {"landscape": 2}):
        assert dry_run(smoke, *fig6) == {"shard": 4, "probe": 2, "aggregate": 1, "figure": 1}
        out = sh(smoke, "snakemake", "--cores", "2", *fig6, *SMOKE).stdout
        assert job_counts(out) == {"shard": 4, "probe": 2, "aggregate": 1, "figure": 1}, out[-3000:]
        assert dry_run(smoke, *fig6) == {}
    shard_dir = smoke / "data" / "smoke" / "shards" / "landscape"
    assert len(list(shard_dir.rglob("shard*of2.nc"))) == 4
    for p, ds in whole.items():
        xr.testing.assert_identical(xr.load_dataset(p), ds)  # rewritten by the gather, identical
    assert dry_run(smoke) == {}  # unsplit again: the gathered artifacts stand
    shutil.rmtree(smoke / "data" / "smoke" / "shards")


# -- 7. mtimes after a DVC checkout -------------------------------------------------------------
def _scramble_mtimes(files: list[Path]) -> None:
    """Upstream artifacts newer than downstream ones (in the past: no clock skew), as a pull may leave them."""
    order = sorted(files, key=lambda p: ("/agents/" not in str(p), "/checkpoints/" not in str(p), str(p)))
    rng = random.Random(0)
    base = int(time.time()) - 100_000
    for i, p in enumerate(reversed(order)):  # the training artifacts end up the newest
        t = base + 100 * i + rng.randint(0, 50)
        os.utime(p, (t, t))


def _pipeline_order_mtimes(root: Path, files: list[Path]) -> None:
    """Downstream artifacts newer than upstream ones, the order a run leaves them in."""
    order = sorted(files, key=lambda p: ("/agents/" not in str(p), "/checkpoints/" not in str(p),
                                         "/probes/" not in str(p), p.suffix == ".pdf", str(p)))
    base = int(time.time()) - 50_000
    for i, p in enumerate(order):
        os.utime(p, (base + 10 * i, base + 10 * i))


MTIME_ORDERS = {"scrambled": lambda root, files: _scramble_mtimes(files), "pipeline": _pipeline_order_mtimes}


@contextlib.contextmanager
def snakemake_metadata(root: Path, state: str):
    """"kept": as Snakemake left it; "fresh-clone": none (as after `git clone` + `dvc pull`)."""
    meta, aside = root / ".snakemake" / "metadata", root / ".snakemake" / "metadata.aside"
    if state == "fresh-clone":
        meta.rename(aside)
    try:
        yield
    finally:
        if aside.exists():
            shutil.rmtree(meta, ignore_errors=True)
            aside.rename(meta)


def reasons(out: str) -> str:
    return "\n".join(sorted({line.strip() for line in out.splitlines() if line.strip().startswith("reason:")}))


@pytest.mark.parametrize("order", MTIME_ORDERS)
@pytest.mark.parametrize("metadata", ["kept", "fresh-clone"])
def test_checkout_mtimes_do_not_rerun(dvc_committed, metadata, order):
    """SPEC: DVC does not preserve mtimes on checkout/pull; after one, Snakemake must see nothing to do,
    with or without its .snakemake/ metadata, whatever order the mtimes are in: what stands is decided
    from the artifacts' own job records (dag.reconcile, run by the Snakefile), with no extra command."""
    root = dvc_committed
    fig6 = root / dag.path("figure", run="smoke", figure="fig6")
    for p in [*(root / "data" / "smoke" / "probes").rglob("*.nc"), root / dag.path("aggregate", run="smoke", figure="fig6"),
              fig6]:
        p.unlink()
    sh(root, "dvc", "checkout", SMOKE_DVC)
    assert fig6.is_file() and dvc_status(root) == {}
    MTIME_ORDERS[order](root, data_files(root) + list((root / "figures").rglob("*.pdf")))
    with snakemake_metadata(root, metadata):
        out = sh(root, "snakemake", "-n", *SMOKE).stdout
        assert job_counts(out) == {}, "after a checkout Snakemake wants to rerun:\n" + reasons(out)
        # ... and a changed param is still seen, from the records alone
        with params_changed(root, "probes.landscape.y.points", 5):
            out = sh(root, "snakemake", "-n", *SMOKE).stdout
            assert job_counts(out) == LANDSCAPE_PROBES, reasons(out)
    assert dvc_status(root) == {}


def test_an_input_made_with_other_params_fails_naming_the_file_and_keys(smoke, tmp_path):
    """A stage never silently reads an artifact made with params (or code) other than the run gives it."""
    ckpt = dag.path("checkpoint", run="smoke", env="Humanoid-v5", algo="trpo", seed=0, iteration=3)
    cmd = ["pgprobe", "probe", "grad_estimates", "--params", "params.yaml", "--overlay", "config/smoke.yaml",
           "--input", f"checkpoint={ckpt}", "--out", tmp_path / "out.nc", "--quiet"]
    with params_changed(smoke, "algos.trpo.max_kl", 0.05):
        with params_changed(smoke, "train.gamma", 0.98):
            proc = sh(smoke, *cmd, check=False)
    assert proc.returncode != 0 and not (tmp_path / "out.nc").exists()
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("pgprobe: error:")]
    assert ckpt in line and "algos.trpo.max_kl: 0.13 -> 0.05" in line and "train.gamma: 0.99 -> 0.98" in line, line
    sh(smoke, *cmd)  # with the params it was made with, the same job runs


# -- 7b. sharing through a DVC remote: a colleague's fresh clone ------------------------------


@pytest.fixture(scope="module")
def pulled(dvc_committed, tmp_path_factory) -> Path:
    """Clone A (the smoke run, recorded with `dvc commit`) pushes to a local-directory remote, run-cache
    too; a fresh `git clone` B (no data, no .snakemake/) pulls."""
    a = dvc_committed
    remote = tmp_path_factory.mktemp("remote") / "store"
    sh(a, "dvc", "remote", "add", "-d", "-f", "shared", remote)
    git_commit(a, "a shared DVC remote")
    sh(a, "dvc", "push", "--run-cache", SMOKE_DVC)
    b = tmp_path_factory.mktemp("colleague") / "repo"
    sh(a, "git", "clone", "-q", a, b)
    assert not (b / "data").exists() and not (b / ".snakemake").exists()
    sh(b, "dvc", "pull", "--run-cache", SMOKE_DVC)
    return b


def dvc_would_run(root: Path) -> dict[str, int]:
    out = sh(root, "dvc", "repro", "--dry", SMOKE_DVC).stdout
    ran = re.findall(r"Running stage '(?:[^']*:)?([^']+)'", out)
    return {k: sum(stage_kind(n) == k for n in ran) for k in sorted({stage_kind(n) for n in ran})}


def pulled_files(root: Path) -> list[Path]:
    return data_files(root) + list((root / "figures").rglob("*.pdf"))


def test_a_pulled_clone_recomputes_nothing(pulled):
    assert dvc_status(pulled) == {} and dvc_would_run(pulled) == {}
    for order in MTIME_ORDERS:
        MTIME_ORDERS[order](pulled, pulled_files(pulled))
        out = sh(pulled, "snakemake", "-n", *SMOKE).stdout
        assert job_counts(out) == {}, f"mtimes {order}:\n" + reasons(out)


@pytest.mark.parametrize("order", MTIME_ORDERS)
@pytest.mark.parametrize("dotted,value,expected", [
    ("probes.landscape.y.points", 5, LANDSCAPE_PROBES),  # that probe and downstream
    ("algos.trpo.max_kl", 0.05, TRPO_DOWN),  # those agents and downstream
])
def test_a_pulled_clone_reruns_only_what_a_change_reaches(pulled, order, dotted, value, expected):
    """Snakemake decides from the params recorded in the pulled artifacts, whatever mtimes the pull left."""
    MTIME_ORDERS[order](pulled, pulled_files(pulled))
    with params_changed(pulled, dotted, value):
        out = sh(pulled, "snakemake", "-n", *SMOKE).stdout
        assert job_counts(out) == expected, reasons(out)
        if dotted.startswith("algos."):  # DVC names the stages whose own params changed
            assert {stage_kind(n) for n in dvc_status(pulled)} == {"train", "checkpoint", "probe"}


def test_a_pulled_clone_really_reruns_one_probe_in_both_runners(pulled):
    fig6_jobs = {k: v for k, v in LANDSCAPE_PROBES.items() if k != "all"}
    try:
        with params_changed(pulled, "probes.landscape.y.points", 5):
            out = sh(pulled, "dvc", "repro", SMOKE_DVC, timeout=900).stdout
            ran = re.findall(r"Running stage '(?:[^']*:)?([^']+)'", out)
            assert {k: sum(stage_kind(n) == k for n in ran) for k in fig6_jobs} == fig6_jobs, out[-3000:]
            sh(pulled, "git", "checkout", "HEAD", "--", "pipelines/smoke/dvc.lock")  # back to the pulled artifacts
            sh(pulled, "dvc", "checkout", SMOKE_DVC, "--force")
            _scramble_mtimes(pulled_files(pulled))
            out = sh(pulled, "snakemake", "--cores", "2", *SMOKE, timeout=900).stdout
            assert job_counts(out) == LANDSCAPE_PROBES, out[-3000:]
            assert dry_run(pulled) == {}
    finally:
        sh(pulled, "git", "checkout", "HEAD", "--", "pipelines/smoke/dvc.lock")
        sh(pulled, "dvc", "checkout", SMOKE_DVC, "--force")
    assert dvc_status(pulled) == {} and dry_run(pulled) == {}


def test_snakemake_directory_marker_does_not_change_dvc_hashes(dvc_committed):
    """Snakemake drops `.snakemake_timestamp` into directory() outputs (the snapshots); `pgprobe train`
    run by `dvc repro` does not.  DVC must hash the directory the same either way."""
    root = dvc_committed
    marker = root / dag.agent_dir("smoke", "Humanoid-v5", "trpo", 0) / "snapshots" / ".snakemake_timestamp"
    assert marker.exists()
    aside = root / "marker.aside"
    marker.rename(aside)
    try:
        assert dvc_status(root) == {}
    finally:
        aside.rename(marker)


# -- 8. DVC: the same selective recomputation ------------------------------------------------
def test_dvc_status_names_only_the_trpo_agents_for_a_trpo_param(dvc_committed):
    root = dvc_committed
    with params_changed(root, "algos.trpo.max_kl", 0.05):
        changed = set(dvc_status(root))
    trpo_train = {n for n in dvc_stages(root) if n.startswith("train-") and "-trpo-" in n}
    # dvc status names the stages whose own params or code changed (downstream ones follow in repro)
    trpo_downstream = {n for n in dvc_stages(root) if n.startswith(("checkpoint-", "probe-")) and "-trpo-" in n}
    assert changed == trpo_train | trpo_downstream, changed


def test_dvc_status_and_repro_are_selective(dvc_committed):
    from pgprobe.pipeline.artifacts import read_nc

    root = dvc_committed
    assert dvc_status(root) == {}, "after `dvc commit` of the Snakemake run, DVC should see it as up to date"
    stages = dvc_stages(root)
    probes = {n for n in stages if stage_kind(n) == "probe" and n.startswith("probe-landscape-")}
    assert len(probes) == 4  # figs 6 and 7
    concentration = {n for n in stages if n.startswith("probe-landscape_concentration-")}
    assert len(concentration) == 2
    landscape = root / "src" / "pgprobe" / "probes" / "landscape.py"
    with edited(landscape, lambda t: t + "\n# a comment that changes the file's bytes\n"):
        assert set(dvc_status(root)) == probes | concentration
    assert dvc_status(root) == {}
    lock_before = yaml.safe_load((root / "pipelines/smoke/dvc.lock").read_text())["stages"]
    with params_changed(root, "probes.landscape.y.points", 5):
        assert set(dvc_status(root)) == probes
        out = sh(root, "dvc", "repro", SMOKE_DVC, timeout=900).stdout
        ran = set(re.findall(r"Running stage '(?:[^']*:)?([^']+)'", out))
        downstream = probes | {"aggregate-fig6", "figure-fig6", "aggregate-fig7", "figure-fig7"}
        assert ran == downstream, out[-3000:]
        lock_after = yaml.safe_load((root / "pipelines/smoke/dvc.lock").read_text())["stages"]
        for name in set(stages) - ran:
            assert lock_after[name] == lock_before[name], name
        assert dvc_status(root) == {}
        for n in probes:
            assert read_nc(root / stages[n]["outs"][0]).sizes["y"] == 5
