"""pgprobe's command line: one sub-command per pipeline stage (Snakemake and DVC rules call these).

Each handler imports only what its stage runs: the import closure of a handler (plus the module a
probe or figure declares) is that stage's code fingerprint (pipeline/codedeps.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import PgprobeError


def cmd_train(args) -> None:
    from . import train

    agent, cfg = _agent(args)
    _threads(args.threads)
    train.run(agent, args.seed, Path(args.out), stop_at=args.stop_at, progress=not args.quiet,
              attrs=_record(cfg, "train", env=args.env, algo=args.algo, seed=args.seed))


def cmd_checkpoint(args) -> None:
    from . import checkpoint

    from .pipeline import records

    agent, cfg = _agent(args)
    records.check_inputs([Path(args.train_dir) / "train.nc"], cfg)
    _threads(args.threads)
    checkpoint.make(agent, args.seed, args.iteration, Path(args.train_dir), Path(args.out),
                    attrs=_record(cfg, "checkpoint", env=args.env, algo=args.algo, seed=args.seed,
                                  iteration=args.iteration))


def cmd_probe(args) -> None:
    import importlib

    from .errors import ConfigError
    from .pipeline import artifacts, config, records
    from .pipeline.declarations import PROBES
    from .probes.api import ProbeInputs

    if args.probe not in PROBES:
        raise ConfigError(f"unknown probe {args.probe!r} (declared: {', '.join(PROBES)})")
    decl = PROBES[args.probe]
    cfg = config.load(args.params, args.overlay)
    if args.gather:
        return _gather(args, cfg)
    shard = _shard(args) if args.shard else None
    _threads(1)
    inputs = ProbeInputs.parse(args.input)
    records.check_inputs(inputs.paths.values(), cfg)
    probe_cfg = config.lookup(cfg, decl.params) if decl.params else {}
    entry = getattr(importlib.import_module(decl.module), decl.entry)
    ds = entry(inputs, probe_cfg, threads=_cores(args.threads), progress=not args.quiet,
               **({"shard": shard} if shard else {}))
    ds = artifacts.with_agent_coords(ds, *inputs.agent_coords())
    ds.attrs.update(artifacts.provenance(f"probe_{args.probe}", {"probe": probe_cfg, "upstream": inputs.params()},
                                         "probe", (decl.module,)))
    env, algo, seed, iteration = inputs.agent_coords()
    job = dict(probe=args.probe, env=env, algo=algo, seed=seed, iteration=iteration)
    if shard:
        from .pipeline import shards

        shards.mark(ds, *shard)
        ds.attrs.update(_record(cfg, "shard", **job, shard=shard[0], shards=shard[1]))
    else:
        ds.attrs.update(_record(cfg, "probe", **job))
    artifacts.write_nc(ds, Path(args.out))


def _shard(args) -> tuple[int, int]:
    from .errors import ConfigError
    from .pipeline.declarations import PROBES

    if PROBES[args.probe].shard_dim is None:
        raise ConfigError(f"--shard: probe {args.probe!r} does not split into shards (no shard_dim declared)")
    k, sep, n = args.shard.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise ConfigError(f"--shard {args.shard!r}: expected K/N with 0 <= K < N")
    return int(k), int(n)


def _gather(args, cfg: dict) -> None:
    """The probe's artifact from its shards (pipeline/shards.py): what one job would have written."""
    import importlib

    from .errors import ArtifactError
    from .pipeline import artifacts, records, shards
    from .pipeline.declarations import PROBES

    records.check_inputs(args.gather, cfg)
    jobs = {json.dumps({k: v for k, v in records.recorded(p)["wildcards"].items() if k not in ("shard", "shards")},
                       sort_keys=True) for p in args.gather}
    job = json.loads(next(iter(jobs)))
    if len(jobs) != 1 or job["probe"] != args.probe:
        raise ArtifactError(f"--gather: the shards are not all of one {args.probe} job: {sorted(jobs)}")
    parts = [artifacts.read_nc(p, kind=f"probe_{args.probe}") for p in args.gather]
    decl = PROBES[args.probe]
    ds = shards.gather(parts, decl.shard_dim)
    if decl.finish:
        ds = getattr(importlib.import_module(decl.module), decl.finish)(ds)
    ds.attrs.update(_record(cfg, "probe", **job))
    artifacts.write_nc(ds, Path(args.out))


def cmd_aggregate(args) -> None:
    import importlib

    from .pipeline import aggregate, artifacts, config, records
    from .pipeline.declarations import FIGURES

    cfg = config.load(args.params, args.overlay, check_envs=False)  # no gymnasium in an aggregate job
    records.check_inputs(args.inputs, cfg)
    decl = FIGURES[args.figure]
    module = importlib.import_module(decl.module)
    combined = aggregate.combine([Path(p) for p in args.inputs], aggregate.input_kind(decl),
                                 getattr(module, "VARIABLES", None))
    ds = module.summarize(combined)
    ds.attrs.update(artifacts.provenance(f"aggregate_{args.figure}", {"inputs": args.inputs}, "aggregate",
                                         (decl.module,)))
    ds.attrs["run"] = aggregate.run_of(args.inputs)
    ds.attrs.update(_record(cfg, "aggregate", figure=args.figure))
    artifacts.write_nc(ds, Path(args.out))


def cmd_figure(args) -> None:
    import importlib
    import os

    from .pipeline.artifacts import read_nc
    from .pipeline.declarations import FIGURES

    ds = read_nc(args.aggregate, kind=f"aggregate_{args.figure}")
    module = importlib.import_module(FIGURES[args.figure].module)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        module.render(ds, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_dvc_yaml(args) -> None:
    from .pipeline import config, dvcgen

    cfg = config.load(args.params, args.overlay)
    text = dvcgen.render(cfg, args.params, args.overlay)
    out = args.out or dvcgen.default_path(cfg, args.overlay)
    if out == "-":
        print(text, end="")
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        print(f"pgprobe: wrote {out}" + (f" (build it with: dvc repro {out})" if out != "dvc.yaml" else ""))


def cmd_sync_mtimes(args) -> None:
    from .pipeline import config, dag

    cfg = config.load(args.params, args.overlay)
    got = dag.reconcile(cfg)
    print(f"pgprobe: {got['stand']} jobs stand for their params and code, {got['rerun']} will rerun; "
          f"modification times of {got['touched']} files set in pipeline order")


def cmd_info(args) -> None:
    from .pipeline.artifacts import describe, read_nc

    print(describe(read_nc(args.file), args.file))


def _agent(args) -> tuple[dict, dict]:
    from .envs import make_unwrapped
    from .pipeline import config

    cfg = config.load(args.params, args.overlay)
    make_unwrapped(args.env)  # fail fast, with one clear message, on a bad env id
    return config.agent_config(cfg, args.env, args.algo), cfg


def _record(cfg: dict, kind: str, **wildcards) -> dict:
    """The attr an artifact carries: the record of the job that made it (pipeline/records.py)."""
    from .pipeline import records

    return {records.RECORD_ATTR: records.serialise(records.job_record(cfg, kind, wildcards))}


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _cores(n: int) -> int:
    """--threads 0: every core this process may use."""
    import os

    return n if n > 0 else len(os.sched_getaffinity(0))


def _params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="the experiment (default: params.yaml)")
    p.add_argument("--overlay", action="append", default=[], help="overlay YAML (repeatable), e.g. config/smoke.yaml")


def _agent_args(p: argparse.ArgumentParser) -> None:
    _params_args(p)
    p.add_argument("--env", required=True, help="gymnasium id, e.g. Hopper-v5")
    p.add_argument("--algo", required=True, help="a key of `algos` in params, e.g. ppo, ppo_m, trpo")
    p.add_argument("--seed", type=int, required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgprobe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one agent = (env, algo, seed); resumes from its snapshots")
    _agent_args(p)
    p.add_argument("--out", required=True, help="directory for train.nc, snapshots/ and train.log")
    p.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this many iterations (no train.nc)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("checkpoint", help="replay iteration t from the snapshot at or before it: agent, batch, step")
    _agent_args(p)
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--train-dir", required=True, help="the agent's training directory (with snapshots/)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("probe", help="one measurement on one agent at one iteration")
    p.add_argument("probe", help="a probe declared in pgprobe.pipeline.declarations, e.g. landscape")
    _params_args(p)
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="what the probe reads, as its declaration names it (e.g. checkpoint=...)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1, help="worker processes for rollouts (0: every core)")
    p.add_argument("--shard", metavar="K/N", help="compute only the K-th of N blocks (a probe with a shard_dim)")
    p.add_argument("--gather", action="append", default=[], metavar="PATH",
                   help="instead of computing: gather these shards into the probe's artifact")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("aggregate", help="combine a figure's inputs by coordinates and summarise them")
    p.add_argument("figure")
    _params_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("figure", help="render a figure from its aggregate")
    p.add_argument("figure")
    p.add_argument("--aggregate", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("dvc-yaml", help="write the DVC pipeline of a run (the same DAG as the Snakefile)")
    _params_args(p)
    p.add_argument("--out", default=None, help="default: dvc.yaml for the paper run, pipelines/<run>/dvc.yaml "
                                               "for any other run; - for stdout")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("sync-mtimes", help="after `dvc pull`/`dvc checkout`: mtimes in pipeline order, "
                                           "so Snakemake sees the pulled artifacts as up to date")
    _params_args(p)
    p.set_defaults(func=cmd_sync_mtimes)

    p = sub.add_parser("info", help="what made an artifact (stage, params, code, packages) and what it holds")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PgprobeError as exc:
        print(f"pgprobe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
