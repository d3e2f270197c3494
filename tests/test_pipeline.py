"""The pipeline end to end, in a temporary copy of the repository, with Snakemake and DVC.

One smoke run (Snakemake, `--cores 2`) is shared by every test of this module; the
rest are dry runs (`snakemake -n`, `dvc status`) and one `dvc repro` of the landscape
probes.  The copy runs its own source (PYTHONPATH=<copy>/src), so editing a source
file in it is seen by both runners and by the jobs.

Order matters (pytest runs a module top to bottom): the tests that change params or
source restore them; the DVC test that reruns the probes comes last.
"""
from __future__ import annotations

import ast
import base64
import contextlib
import copy as _copy
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
import yaml

from pgprobe import stages

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SKIP_TOP = {".venv", "data", "figures", "logs", ".snakemake", ".pytest_cache"}  # ignored anyway; belt and braces
FIG = stages.figure_path("smoke", "fig6")

pytestmark = pytest.mark.skipif(not (VENV_BIN / "snakemake").exists() or not (VENV_BIN / "dvc").exists(),
                                reason="snakemake and dvc must be installed next to the test interpreter")


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


def smoke_params(root: Path) -> dict:
    """params.yaml deep-merged with config/smoke.yaml, validated by the copy's own pgprobe.config.load."""
    code = ("import json; from pgprobe import config; "
            "print(json.dumps(config.load('params.yaml', ['config/smoke.yaml'])))")
    return json.loads(sh(root, "python", "-c", code, merge=False).stdout)


def load_cfg(root: Path) -> dict:
    """The copy's params.yaml (already validated when the copy was made, and by every Snakemake call)."""
    return yaml.safe_load((root / "params.yaml").read_text())


def write_params(root: Path, cfg: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def git_commit(root: Path, msg: str) -> None:
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=pgprobe-tests", "-c", "user.email=tests@pgprobe.invalid",
       "commit", "-q", "--allow-empty", "-m", msg)


def job_counts(output: str) -> dict[str, int]:
    """The first `Job stats:` table of a Snakemake run or dry run; {} when there is nothing to do."""
    lines = output.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == "Job stats:")
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


def dry_run(root: Path, *extra) -> dict[str, int]:
    return job_counts(sh(root, "snakemake", "-n", *extra).stdout)


def snakemake_dag(root: Path) -> list[dict]:
    """Every job of `snakemake -n --forceall -p`: rule, inputs, outputs, shell command (no log redirect)."""
    out = sh(root, "snakemake", "-n", "--forceall", "-p").stdout
    jobs, job = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line)
        if m:
            job = {"rule": m.group(1), "input": [], "output": [], "cmd": None}
            jobs.append(job)
        elif job is not None and re.match(r"^\s+(input|output): ", line):
            key, files = line.strip().split(": ", 1)
            job[key] = [f.strip() for f in files.split(", ")]
        elif job is not None and line.startswith("Shell command: "):
            job["cmd"] = normalise_cmd(line[len("Shell command: "):])
    assert jobs, out[-3000:]
    return jobs


def normalise_cmd(cmd: str) -> str:
    cmd = re.sub(r"\s+2>\s*\S+\s*$", "", cmd.strip())  # Snakemake's log redirect
    # The probe rule passes Snakemake's thread count (worker processes for rollouts); the results do
    # not depend on it (test_landscape.py::test_parallel_workers_give_the_same_returns), DVC runs one.
    return re.sub(r"\s+--threads \d+", "", cmd)


def dvc_stages(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def stage_kind(name: str) -> str:
    return name.split("-", 1)[0]


AGENT_RE = re.compile(r"^data/[^/]+/(?:agents|checkpoints|probes/[^/]+)/([^/]+)/([^/]+)/seed\d+")


def stage_agent(stage: dict) -> tuple[str, str]:
    m = AGENT_RE.match(stage["outs"][0])
    return (m.group(1), m.group(2)) if m else ("", "")


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "data").rglob("*") if p.is_file())


def dvc_status(root: Path) -> dict:
    return json.loads(sh(root, "dvc", "status", "--json", merge=False).stdout or "{}")


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


@contextlib.contextmanager
def params_changed(root: Path, dotted: str, value):
    cfg = yaml.safe_load((root / "params.yaml").read_text())

    def change(_):
        new = _copy.deepcopy(cfg)
        *parents, leaf = dotted.split(".")
        node = new
        for p in parents:
            node = node[p]
        node[leaf] = value
        return yaml.safe_dump(new, sort_keys=False)

    with edited(root / "params.yaml", change):
        yield


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """A git copy of the repo with the merged smoke params as params.yaml, its dvc.yaml, and ONE smoke run."""
    root = copy_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    write_params(root, smoke_params(root))
    sh(root, "pgprobe", "dvc-yaml")
    sh(root, "git", "init", "-q")
    git_commit(root, "smoke copy")
    proc = sh(root, "snakemake", "--cores", "2", timeout=900)
    assert job_counts(proc.stdout) == {"train": 1, "checkpoint": 2, "probe_landscape": 2, "aggregate_fig6": 1,
                                       "figure_fig6": 1, "all": 1}, proc.stdout[-3000:]
    return root


@pytest.fixture(scope="module")
def dvc_committed(smoke) -> Path:
    """The smoke run recorded in DVC (`dvc commit --force`), dvc.lock committed to git."""
    if not (smoke / ".dvc" / "config").exists():
        sh(smoke, "dvc", "init", "-q")
    sh(smoke, "dvc", "commit", "--force")
    git_commit(smoke, "dvc commit of the smoke run")
    return smoke


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """A copy with the repo's own (paper) params.yaml and dvc.yaml, and no data: for dry runs only."""
    return copy_repo(tmp_path_factory.mktemp("bare") / "repo")


# -- 1. end to end ---------------------------------------------------------------------------
def test_smoke_pipeline_end_to_end(smoke):
    from pgprobe.artifacts import read_nc

    fig = smoke / FIG
    assert fig.is_file() and fig.stat().st_size > 0
    assert fig.read_bytes()[:5] == b"%PDF-"
    cfg = load_cfg(smoke)
    expected = {o for job in stages.plan(cfg) for o in job.outs}
    ncs = [p for p in data_files(smoke) if p.suffix == ".nc"]
    assert ncs
    assert not [p for p in data_files(smoke) if ".tmp" in p.name], "temporary files left behind"
    others = [p for p in data_files(smoke) if p.suffix != ".nc" and p.name not in ("train.log", ".snakemake_timestamp")]
    assert not others, f"unexpected files among the artifacts: {others}"
    kinds = {}
    for p in ncs:
        ds = read_nc(p)
        assert ds.attrs.get("pgprobe_kind"), f"{p} has no pgprobe_kind attr"
        assert ds.attrs.get("pgprobe_code"), f"{p} has no pgprobe_code attr"
        kinds.setdefault(ds.attrs["pgprobe_kind"], []).append(p)
    for out in expected:  # every declared output exists
        assert (smoke / out).exists(), out
    assert {"train_log", "snapshot", "checkpoint", "probe_landscape", "aggregate_fig6"} <= set(kinds)
    assert len(kinds["checkpoint"]) == len(kinds["probe_landscape"]) == len(cfg["figures"]["fig6"]["iterations"])
    # a landscape artifact describes itself: the normalisation, whether log-std moved, the direction
    # itself and every episode's return (SPEC, "Landscapes")
    import numpy as np

    lcfg = cfg["probes"]["landscape"]
    for p in kinds["probe_landscape"]:
        ds = read_nc(p)
        assert ds.attrs["direction_norm"] == lcfg["direction_norm"]
        assert bool(ds.attrs["perturb_log_std"]) == lcfg["perturb_log_std"]
        if lcfg["direction_norm"] == "unit":
            assert np.linalg.norm(ds["direction"].values) == pytest.approx(1.0)
        assert ds.sizes["x"] == lcfg["x"]["points"] and ds.sizes["y"] == lcfg["y"]["points"]
        assert (ds["episodes"].values >= 1).all()
        assert "episode_returns" in ds and "step" in ds
    assert dry_run(smoke) == {}, "a second `snakemake -n` should have nothing to do"


# -- 2. byte-determinism ---------------------------------------------------------------------
def test_train_and_checkpoint_are_byte_identical(smoke, tmp_path):
    cfg = load_cfg(smoke)
    env, algo, seed = stages.figure_agents(cfg, "fig6")[0]
    it = cfg["figures"]["fig6"]["iterations"][-1]
    agent = smoke / stages.agent_dir("smoke", env, algo, seed)
    again = tmp_path / "agent"
    sh(smoke, "pgprobe", "train", "--params", "params.yaml", "--env", env, "--algo", algo, "--seed", seed,
       "--out", again)
    assert (again / "train.nc").read_bytes() == (agent / "train.nc").read_bytes()
    snaps = sorted(p.name for p in (agent / "snapshots").glob("*.nc"))
    assert snaps and snaps == sorted(p.name for p in (again / "snapshots").iterdir())
    for name in snaps:
        assert (again / "snapshots" / name).read_bytes() == (agent / "snapshots" / name).read_bytes(), name
    ck = tmp_path / "ck.nc"
    sh(smoke, "pgprobe", "checkpoint", "--params", "params.yaml", "--env", env, "--algo", algo, "--seed", seed,
       "--iteration", it, "--train-dir", again, "--out", ck)
    assert ck.read_bytes() == (smoke / stages.checkpoint_path("smoke", env, algo, seed, it)).read_bytes()


# -- 5. the two DAGs agree -------------------------------------------------------------------
def _check_dags_agree(root: Path) -> list[dict]:
    cfg = load_cfg(root)
    jobs = [j for j in snakemake_dag(root) if j["rule"] != "all"]
    dvc = dvc_stages(root)
    snake = {(j["cmd"], frozenset(j["output"])): j for j in jobs}
    theirs = {(normalise_cmd(s["cmd"]), frozenset(s["outs"])): name for name, s in dvc.items()}
    assert set(snake) == set(theirs), (
        f"only in Snakemake: {sorted(set(snake) - set(theirs))}\nonly in dvc.yaml: {sorted(set(theirs) - set(snake))}")
    for key, name in theirs.items():
        s, j = dvc[name], snake[key]
        assert stage_kind(name) == j["rule"], name
        data_deps = [d for d in s["deps"] if not d.startswith("src/")]
        assert sorted(data_deps) == sorted(j["input"]), name
        assert sorted(d for d in s["deps"] if d.startswith("src/")) == sorted(stages.code_files(j["rule"])), name
        env, algo = stage_agent(s)
        assert s.get("params", []) == stages.stage_keys(cfg, j["rule"], env, algo), name
    return jobs


def test_dags_agree_smoke(smoke):
    jobs = _check_dags_agree(smoke)
    assert len(jobs) == 7
    # The params slice Snakemake recorded for each job has exactly the DVC stage's params keys and
    # the stage's code hash, computed from the copy's source.
    dvc = dvc_stages(smoke)
    by_out = {s["outs"][0]: name for name, s in dvc.items()}
    hashes = json.loads(sh(smoke, "python", "-c", "import json; from pgprobe import stages; "
                           "print(json.dumps({s: stages.code_hash(s) for s in stages.CODE}))", merge=False).stdout)
    for out, name in by_out.items():
        meta = smoke / ".snakemake" / "metadata" / base64.b64encode(out.encode()).decode()
        record = json.loads(meta.read_text())
        slices = [ast.literal_eval(p) for p in record["params"]]
        (slice_,) = [p for p in slices if isinstance(p, str) and " code=" in p]
        values, code = slice_.rsplit(" code=", 1)
        assert sorted(json.loads(values)) == sorted(dvc[name].get("params", [])), name
        assert code == hashes[record["rule"]], name


def test_dags_agree_paper(bare):
    sh(bare, "pgprobe", "dvc-yaml")  # the committed dvc.yaml should not change (next test)
    jobs = _check_dags_agree(bare)
    cfg = load_cfg(bare)
    assert len(jobs) == 1 + 2 * len(cfg["figures"]["fig6"]["iterations"]) * len(cfg["figures"]["fig6"]["seeds"]) + 2


def test_committed_dvc_yaml_is_fresh():
    proc = subprocess.run([str(VENV_BIN / "pgprobe"), "dvc-yaml", "--out", "-"], cwd=REPO, env=_env(REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (REPO / "dvc.yaml").read_text(), "dvc.yaml is stale: run `pgprobe dvc-yaml`"


def test_workflow_schema_is_the_package_schema():
    a, b = REPO / "workflow" / "schemas" / "params.schema.yaml", REPO / "src" / "pgprobe" / "schemas" / "params.schema.yaml"
    assert yaml.safe_load(a.read_text()) == yaml.safe_load(b.read_text())


# -- 6. params validated before any job ------------------------------------------------------
def _rename(cfg, dotted, new_leaf):
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[new_leaf] = node.pop(leaf)


def _set(cfg, dotted, value):
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value


BAD = {
    "unknown-env": (lambda c: _set(c, "figures.fig6.env", "Hoppper-v5"), "figures.fig6.env"),
    "unknown-algo": (lambda c: _set(c, "figures.fig6.algo", "a2c"), "figures.fig6.algo"),
    "zero-samples": (lambda c: _set(c, "probes.landscape.samples_per_point", 0), "probes.landscape.samples_per_point"),
    "iteration-not-saved": (lambda c: _set(c, "figures.fig6.iterations", [0, 3]), "figures.fig6.iterations"),
    "iteration-beyond-training": (lambda c: _set(c, "figures.fig6.iterations", [0, 6]), "figures.fig6.iterations"),
    "misspelt-key": (lambda c: _rename(c, "train.iterations", "iteratons"), "train.iteratons"),
}


def _line_names_key(line: str, key: str) -> bool:
    """The dotted key, or (a misspelt key) its parent and the unexpected name."""
    parent, _, leaf = key.rpartition(".")
    return key in line or (parent in line and f"'{leaf}'" in line)


def _names_key(output: str, key: str) -> bool:
    """One `pgprobe: error:` line naming the dotted key, or Snakemake's schema error naming it."""
    errors = [l for l in output.splitlines() if l.startswith("pgprobe: error:")]
    if errors:
        return len(errors) == 1 and _line_names_key(errors[0], key)
    parts = key.split(".")
    schema_path = "".join(f"['{p}']" for p in parts)
    return "Error validating config file" in output and (
        schema_path in output or f"'{parts[-1]}' was unexpected" in output)


@pytest.fixture(scope="module")
def bare_smoke_params(bare) -> dict:
    return smoke_params(bare)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_fail_before_any_job(bare, bare_smoke_params, case):
    mutate, key = BAD[case]
    good = (bare / "params.yaml").read_text()
    cfg = _copy.deepcopy(bare_smoke_params)
    mutate(cfg)
    try:
        write_params(bare, cfg)
        proc = sh(bare, "snakemake", "-n", check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert _names_key(proc.stdout, key), f"no one-line error naming {key}:\n{proc.stdout[-3000:]}"
        assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
        assert not (bare / "data").exists()
        proc = sh(bare, "pgprobe", "train", "--params", "params.yaml", "--env", "Humanoid-v5", "--algo", "trpo", "--seed", 0,
                  "--out", bare / "data" / "agent", check=False, merge=False)
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith("pgprobe: error:"), proc.stderr[-3000:]
        assert _line_names_key(lines[0], key), lines[0]
        assert not (bare / "data").exists()
    finally:
        (bare / "params.yaml").write_text(good)
        shutil.rmtree(bare / "data", ignore_errors=True)


# -- 3. selective recomputation, Snakemake ---------------------------------------------------
DOWNSTREAM_OF_PROBES = {"probe_landscape": 2, "aggregate_fig6": 1, "figure_fig6": 1, "all": 1}


def test_snakemake_landscape_param_reruns_only_landscape(smoke):
    with params_changed(smoke, "probes.landscape.x.points", 4):
        assert dry_run(smoke) == DOWNSTREAM_OF_PROBES
    assert dry_run(smoke) == {}


def test_snakemake_trpo_param_reruns_the_trpo_agent(smoke):
    with params_changed(smoke, "algos.trpo.max_kl", 0.05):
        assert dry_run(smoke) == {"train": 1, "checkpoint": 2, **DOWNSTREAM_OF_PROBES}


def test_snakemake_trpo_param_leaves_a_built_ppo_agent_alone(smoke):
    """A DAG with both algorithms: a PPO agent beside the figure's TRPO agent."""
    ppo = "data/smoke/agents/Humanoid-v5/ppo/seed0/train.nc"
    try:
        assert job_counts(sh(smoke, "snakemake", "--cores", "2", ppo).stdout) == {"train": 1}
        assert dry_run(smoke, ppo, "all") == {}
        with params_changed(smoke, "algos.trpo.max_kl", 0.05):
            assert dry_run(smoke, ppo, "all") == {"train": 1, "checkpoint": 2, **DOWNSTREAM_OF_PROBES}
            assert dry_run(smoke, ppo) == {}
        with params_changed(smoke, "algos.ppo.clip_eps", 0.3):
            assert dry_run(smoke, ppo, "all") == {"train": 1}
    finally:
        shutil.rmtree(smoke / "data/smoke/agents/Humanoid-v5/ppo", ignore_errors=True)


def test_snakemake_ppo_param_reruns_nothing_here(smoke):
    cfg = load_cfg(smoke)
    for stage in ("train", "checkpoint", "probe_landscape"):
        ppo_keys = stages.stage_keys(cfg, stage, "Humanoid-v5", "ppo")
        assert not any(k.startswith("algos.trpo") or k.endswith(".trpo") for k in ppo_keys), (stage, ppo_keys)
        assert not any(k.startswith("algos.ppo") for k in stages.stage_keys(cfg, stage, "Humanoid-v5", "trpo"))
    with params_changed(smoke, "algos.ppo.lr", 1e-3):
        assert dry_run(smoke) == {}


def _code_hash_in(root: Path, stage: str) -> tuple[str, str]:
    out = sh(root, "python", "-c", f"from pgprobe import stages; print(stages.__file__); print(stages.code_hash({stage!r}))",
             merge=False).stdout.split()
    return out[0], out[1]


def test_snakemake_landscape_code_change_reruns_only_landscape(smoke):
    landscape = smoke / "src" / "pgprobe" / "probes" / "landscape.py"
    where, before = _code_hash_in(smoke, "probe_landscape")
    assert Path(where).resolve().is_relative_to(smoke.resolve()), f"the copy imports pgprobe from {where}"
    _, train_before = _code_hash_in(smoke, "train")
    with edited(landscape, lambda t: t + "\n# a comment that changes the file's bytes\n"):
        _, after = _code_hash_in(smoke, "probe_landscape")
        assert after != before
        assert _code_hash_in(smoke, "train")[1] == train_before
        assert dry_run(smoke) == DOWNSTREAM_OF_PROBES
    assert dry_run(smoke) == {}


# -- 7. mtimes after a DVC checkout -------------------------------------------------------------
def _profile_args(root: Path) -> list[str]:
    """The project's way of running Snakemake after a checkout: `pgprobe sync-mtimes` (mtimes in DAG
    order; Snakemake compares input and output mtimes whatever its rerun triggers say), then the default
    profile, which Snakemake picks up by itself."""
    profile = root / "workflow" / "profiles" / "default" / "config.yaml"
    triggers = yaml.safe_load(profile.read_text()).get("rerun-triggers")
    assert triggers and "mtime" not in triggers, f"{profile} must set rerun-triggers without mtime"
    sh(root, "pgprobe", "sync-mtimes")
    return []


def _scramble_mtimes(root: Path, files: list[Path]) -> None:
    """Upstream artifacts newer than downstream ones (in the past: no clock skew), as a pull may leave them."""
    order = sorted(files, key=lambda p: ("/agents/" not in str(p), "/checkpoints/" not in str(p), str(p)))
    rng = random.Random(0)
    base = int(time.time()) - 100_000
    for i, p in enumerate(reversed(order)):  # the training artifacts end up the newest
        t = base + 100 * i + rng.randint(0, 50)
        os.utime(p, (t, t))


@pytest.mark.parametrize("metadata", ["kept", "fresh-clone"])
def test_checkout_mtimes_do_not_rerun(dvc_committed, metadata):
    """SPEC: DVC does not preserve mtimes on checkout/pull; after one, Snakemake must see nothing to do.

    "kept": an in-place checkout (Snakemake's .snakemake/metadata still there).  "fresh-clone": no
    Snakemake metadata, as after `git clone` + `dvc pull` on another machine.
    """
    root = dvc_committed
    # a real checkout: delete the downstream artifacts and let DVC restore them from its cache ...
    for p in [*(root / "data" / "smoke" / "probes").rglob("*.nc"), root / stages.aggregate_path("smoke", "fig6"),
              root / FIG]:
        p.unlink()
    sh(root, "dvc", "checkout")
    assert (root / FIG).is_file()
    assert dvc_status(root) == {}
    # ... then every artifact's mtime scrambled (the snapshots directory's marker included)
    _scramble_mtimes(root, data_files(root) + [root / FIG])
    meta, aside = root / ".snakemake" / "metadata", root / ".snakemake" / "metadata.aside"
    if metadata == "fresh-clone":
        meta.rename(aside)
    try:
        # with the mtime trigger (Snakemake's default) this reruns the pipeline
        assert dry_run(root, "--rerun-triggers", "mtime", "params", "input", "software-env", "code") != {}
        # the project's way (the default profile's rerun triggers) must see nothing to do
        out = sh(root, "snakemake", "-n", *_profile_args(root)).stdout
        reasons = sorted({l.strip() for l in out.splitlines() if l.strip().startswith("reason:")})
        assert job_counts(out) == {}, "after a checkout Snakemake wants to rerun:\n" + "\n".join(reasons)
    finally:
        if aside.exists():
            shutil.rmtree(meta, ignore_errors=True)
            aside.rename(meta)
    assert dvc_status(root) == {}


def test_snakemake_directory_marker_does_not_change_dvc_hashes(dvc_committed):
    """Snakemake drops `.snakemake_timestamp` into directory() outputs (the snapshots); `pgprobe train`
    run by `dvc repro` does not.  DVC must hash the directory the same either way, or artifacts made
    by one runner look modified to the other (and every checkpoint downstream reruns)."""
    root = dvc_committed
    cfg = load_cfg(root)
    env, algo, seed = stages.figure_agents(cfg, "fig6")[0]
    marker = root / stages.agent_dir("smoke", env, algo, seed) / "snapshots" / ".snakemake_timestamp"
    assert marker.exists()
    aside = root / "marker.aside"
    marker.rename(aside)
    try:
        assert dvc_status(root) == {}
    finally:
        aside.rename(marker)


# -- 4. DVC: the same selective recomputation ------------------------------------------------
def _changed_stages(root: Path) -> set[str]:
    return set(dvc_status(root))


def _is_downstream_of_probes(name: str) -> bool:
    return stage_kind(name) in ("probe_landscape", "aggregate_fig6", "figure_fig6")


def test_dvc_status_and_repro_are_selective(dvc_committed):
    root = dvc_committed
    assert dvc_status(root) == {}, "after `dvc commit` of the Snakemake run, DVC should see it as up to date"
    probes = {n for n in dvc_stages(root) if stage_kind(n) == "probe_landscape"}
    assert len(probes) == 2

    # (b) a source edit in the landscape probe: only the landscape stages are out of date
    landscape = root / "src" / "pgprobe" / "probes" / "landscape.py"
    with edited(landscape, lambda t: t + "\n# a comment that changes the file's bytes\n"):
        changed = _changed_stages(root)
        assert changed == probes, changed
    assert dvc_status(root) == {}

    # (a) a landscape-only param: `dvc status` names the probes; `dvc repro` runs only them and downstream
    lock_before = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    with params_changed(root, "probes.landscape.x.points", 4):
        changed = _changed_stages(root)
        assert changed == probes, changed
        out = sh(root, "dvc", "repro", timeout=900).stdout
        ran = set(re.findall(r"Running stage '([^']+)'", out))
        skipped = set(re.findall(r"Stage '([^']+)' didn't change, skipping", out))
        assert ran and all(_is_downstream_of_probes(n) for n in ran), out[-3000:]
        assert ran == {n for n in dvc_stages(root) if _is_downstream_of_probes(n)}, out[-3000:]
        assert skipped == set(dvc_stages(root)) - ran, out[-3000:]
        lock_after = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
        for name in skipped:
            assert lock_after[name] == lock_before[name], name
        assert dvc_status(root) == {}
        from pgprobe.artifacts import read_nc

        for n in probes:
            out_nc = dvc_stages(root)[n]["outs"][0]
            assert read_nc(root / out_nc).sizes["x"] == 4
