"""Load params.yaml (+ an overlay), validate it once, and hand each stage only its own slice.

The slices are what Snakemake's `params:` and DVC's `params:` see, so changing a
key reruns exactly the stages whose slice contains it.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ..errors import ConfigError

SCHEMA_PATH = Path(__file__).parent / "schemas" / "params.schema.yaml"
ALGO_KINDS = ("ppo", "trpo")


def deep_merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of parameters")
    return data


def load(params: str | Path = "params.yaml", overlays: list[str | Path] = (), check_envs: bool = True) -> dict:
    """The params, overlays merged in, validated; `check_envs=False` skips making each env (gymnasium),
    for jobs that never touch an env (aggregates)."""
    cfg = _read_yaml(params)
    for overlay in overlays:
        cfg = deep_merge(cfg, _read_yaml(overlay))
    validate(cfg, check_envs)
    return cfg


def validate(cfg: dict, check_envs: bool = True) -> None:
    """Schema first (misspelt keys, types, ranges), then the checks a schema cannot express.
    Expands `iterations: {every: N}` into its list, in place."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"params: {where}: {err.message}")
    for name, algo in cfg["algos"].items():
        if algo["kind"] not in ALGO_KINDS:
            raise ConfigError(f"params: algos.{name}.kind: unknown algorithm kind {algo['kind']!r}")
    algo_schema = {**schema["$defs"]["algo"], "$defs": schema["$defs"]}
    for env, per_algo in cfg.get("env_overrides", {}).items():
        for name in per_algo:
            if name not in cfg["algos"]:
                raise ConfigError(f"params: env_overrides.{env}.{name}: no algorithm {name!r} in algos")
            merged = deep_merge(cfg["algos"][name], per_algo[name])
            for err in jsonschema.Draft202012Validator(algo_schema).iter_errors(merged):
                where = ".".join([f"env_overrides.{env}.{name}", *map(str, err.absolute_path)])
                raise ConfigError(f"params: {where}: {err.message}")
    _expand_iterations(cfg)
    t = cfg["train"]
    if t["steps_per_iter"] % t["num_envs"]:
        raise ConfigError(f"params: train.steps_per_iter ({t['steps_per_iter']}) must be a multiple "
                          f"of train.num_envs ({t['num_envs']})")
    _check_minibatches(cfg)
    _check_figures(cfg, check_envs)
    _check_landscape(cfg)
    _check_shards(cfg)


def _expand_iterations(cfg: dict) -> None:
    """`iterations: {every: N}` -> [0, N, 2N, ...] below train.iterations, in place, so that every
    consumer (the DAG, the jobs, both runners) sees a list."""
    for f in cfg.get("figures", {}).values():
        if isinstance(f.get("iterations"), dict):
            f["iterations"] = list(range(0, cfg["train"]["iterations"], f["iterations"]["every"]))


def _check_minibatches(cfg: dict) -> None:
    n = cfg["train"]["steps_per_iter"]
    for env in [None, *cfg.get("env_overrides", {})]:
        for name in cfg["algos"]:
            mb = agent_config(cfg, env, name)["algo_cfg"]["minibatches"]
            if n // mb < 2:
                where = f"env_overrides.{env}.{name}" if env and name in cfg["env_overrides"][env] else f"algos.{name}"
                raise ConfigError(f"params: {where}.minibatches: {mb} minibatches leave fewer than 2 pairs each "
                                  f"(train.steps_per_iter={n})")


def _check_figures(cfg: dict, check_envs: bool = True) -> None:
    """Every figure is declared, names known envs and algos, and probes iterations training reaches."""
    from .declarations import FIGURES, PROBES, figure_probe, probe_needs

    t = cfg["train"]
    for fig, f in cfg.get("figures", {}).items():
        if fig not in FIGURES:
            raise ConfigError(f"params: figures.{fig}: no such figure (declared: {', '.join(FIGURES)})")
        for algo in f["algos"]:
            if algo not in cfg["algos"]:
                raise ConfigError(f"params: figures.{fig}.algos: no algorithm {algo!r} in algos "
                                  f"({', '.join(cfg['algos'])})")
        for env in f["envs"] if check_envs else []:
            from ..envs import check_env_id, check_exact_resume

            try:
                check_env_id(env)
            except ConfigError as exc:
                raise ConfigError(f"params: figures.{fig}.envs: {exc}") from None
            if not t["reset_every_iter"]:
                try:
                    check_exact_resume(env)
                except ConfigError as exc:
                    raise ConfigError(f"params: train.reset_every_iter: {exc}") from None
        probe = figure_probe(fig)
        if probe is not None and "iterations" not in f:
            raise ConfigError(f"params: figures.{fig}.iterations: required (the figure shows probes at iterations)")
        for need in probe_needs(probe) if probe is not None else []:
            block = PROBES[need].params
            if block and block.split(".", 1)[1] not in cfg.get("probes", {}):
                raise ConfigError(f"params: {block}: missing (figures.{fig} needs it)")
        for it in f.get("iterations", []):
            if it >= t["iterations"]:
                raise ConfigError(f"params: figures.{fig}.iterations: {it} is not a training iteration "
                                  f"(train.iterations={t['iterations']}: 0 .. {t['iterations'] - 1})")


def _check_landscape(cfg: dict) -> None:
    """The grid holds theta_t (x = 0) and theta_t+1 (x = 1), and y = 0; budgets (pairs per point) increase."""
    import numpy as np

    for name, block in cfg.get("probes", {}).items():
        pairs = [b["pairs"] for b in block.get("budgets", [])]
        if any(a >= b for a, b in zip(pairs, pairs[1:])):
            raise ConfigError(f"params: probes.{name}.budgets: pairs must increase from one budget to the next, "
                              f"got {pairs}")
        if "x" not in block or "y" not in block:
            continue
        for axis, must in (("x", (0.0, 1.0)), ("y", (0.0,))):
            a = block[axis]
            grid = np.linspace(a["min"], a["max"], a["points"])
            for value in must:
                if not np.isclose(grid, value, atol=1e-9).any():
                    raise ConfigError(f"params: probes.{name}.{axis}: the grid {np.round(grid, 4).tolist()} "
                                      f"does not contain {axis} = {value:g}")


# The length of each shard_dim (declarations.py) under a probe's params block `p` and the whole config
SHARD_SIZES = {
    "x": lambda p, cfg: int(p["x"]["points"]),  # a plane's grid rows
    # true_gradient: blocks of chunks (a null chunk is the agent's batch)
    "block": lambda p, cfg: min(int(p["blocks"]), -(-int(p["n_star"]) // int(p["chunk"] or cfg["train"]["steps_per_iter"]))),
}


def _check_shards(cfg: dict) -> None:
    """Every `shards:` entry names a probe declared with a shard_dim and leaves each shard at least one
    element of it (pipeline/shards.py; kept here so that no stage but the probes' imports shards.py)."""
    from .declarations import PROBES

    for probe, n in cfg.get("shards", {}).items():
        decl = PROBES.get(probe)
        if decl is None or decl.shard_dim is None:
            splittable = [p for p, d in PROBES.items() if d.shard_dim]
            raise ConfigError(f"params: shards.{probe}: not a probe that splits into shards "
                              f"(those that do: {', '.join(splittable)})")
        block = cfg.get("probes", {}).get(decl.params.split(".", 1)[1])
        size = SHARD_SIZES[decl.shard_dim](block, cfg) if block else None
        if size is not None and int(n) > size:
            raise ConfigError(f"params: shards.{probe}: {n} shards, but its {decl.shard_dim} axis has {size} "
                              f"elements (at most one shard per element)")


def lookup(cfg: dict, dotted: str):
    """cfg["a"]["b"] for "a.b" (DVC's way of naming a params key)."""
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def algo_names(cfg: dict) -> list[str]:
    return list(cfg["algos"])


def agent_config(cfg: dict, env_id: str, algo: str) -> dict:
    """Everything that determines one agent's training, and nothing else."""
    if algo not in cfg["algos"]:
        raise ConfigError(f"unknown algorithm {algo!r}; params define: {', '.join(cfg['algos'])}")
    algo_cfg = deep_merge(cfg["algos"][algo], cfg.get("env_overrides", {}).get(env_id, {}).get(algo, {}))
    return {"env": env_id, "algo": algo, "train": copy.deepcopy(cfg["train"]), "algo_cfg": algo_cfg}
