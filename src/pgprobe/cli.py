"""pgprobe's command line: one sub-command per pipeline stage (Snakemake and DVC rules call these)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PgprobeError


def _params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="the experiment (default: params.yaml)")
    p.add_argument("--overlay", action="append", default=[], help="overlay YAML (repeatable), e.g. config/smoke.yaml")


def cmd_train(args) -> None:
    from . import train

    _, agent = _agent(args)
    _threads(args.threads)
    train.run(agent, args.seed, Path(args.out), stop_at=args.stop_at, progress=not args.quiet)


def _agent(args):
    from . import config
    from .envs import make_unwrapped

    cfg = config.load(args.params, args.overlay)
    make_unwrapped(args.env)  # fail fast, with one clear message, on a bad env id
    return cfg, config.agent_config(cfg, args.env, args.algo)


def cmd_checkpoint(args) -> None:
    from . import checkpoint

    _, agent = _agent(args)
    _threads(args.threads)
    checkpoint.make(agent, args.seed, args.iteration, Path(args.train_dir), Path(args.out))


def cmd_probe(args) -> None:
    from . import artifacts, checkpoint, config
    from .probes import landscape

    cfg = config.load(args.params, args.overlay)
    _threads(1)
    ckpt = checkpoint.load(Path(args.checkpoint))
    probe_cfg = cfg["probes"][args.probe]
    ds = {"landscape": landscape.run}[args.probe](ckpt, probe_cfg, threads=args.threads, progress=not args.quiet)
    artifacts.write_nc(ds, Path(args.out))


def cmd_aggregate(args) -> None:
    from . import aggregate, artifacts

    ds = aggregate.AGGREGATORS[args.figure]([Path(p) for p in args.probes], args.figure)
    artifacts.write_nc(ds, Path(args.out))


def cmd_figure(args) -> None:
    import importlib
    import os

    from .artifacts import read_nc

    ds = read_nc(args.aggregate, kind=f"aggregate_{args.figure}")
    module = importlib.import_module(f"pgprobe.figures.{args.figure}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        module.render(ds, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_dvc_yaml(args) -> None:
    from . import config, dvcgen

    cfg = config.load(args.params, args.overlay)
    text = dvcgen.render(cfg, args.params)
    if args.out == "-":
        print(text, end="")
    else:
        Path(args.out).write_text(text)


def cmd_sync_mtimes(args) -> None:
    from . import config, stages

    cfg = config.load(args.params, args.overlay)
    n = stages.sync_mtimes(cfg)
    print(f"pgprobe: set modification times of {n} artifact files in pipeline order")


def cmd_info(args) -> None:
    from .artifacts import read_nc

    ds = read_nc(args.file)
    print(ds)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgprobe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one agent = (env, algo, seed); resumes from its snapshots")
    _params_args(p)
    p.add_argument("--env", required=True, help="gymnasium id, e.g. Hopper-v5")
    p.add_argument("--algo", required=True, help="a key of `algos` in params, e.g. ppo, ppo_m, trpo")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="directory for train.nc, snapshots/ and train.log")
    p.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this many iterations (no train.nc)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("checkpoint", help="replay iteration t from its snapshot: agent, batch and step")
    _params_args(p)
    p.add_argument("--env", required=True)
    p.add_argument("--algo", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--train-dir", required=True, help="the agent's training directory (with snapshots/)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("probe", help="one measurement on one checkpoint")
    p.add_argument("probe", choices=["landscape"])
    _params_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1, help="worker processes for environment rollouts")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("aggregate", help="combine probe files into one dataset for a figure")
    p.add_argument("figure", choices=["fig6"])
    p.add_argument("--out", required=True)
    p.add_argument("probes", nargs="+")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("figure", help="render a figure from its aggregate")
    p.add_argument("figure", choices=["fig6"])
    p.add_argument("--aggregate", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml: the same DAG as the Snakefile")
    _params_args(p)
    p.add_argument("--out", default="dvc.yaml")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("sync-mtimes", help="after `dvc pull`/`dvc checkout`: mtimes in pipeline order, "
                                           "so Snakemake sees the pulled artifacts as up to date")
    _params_args(p)
    p.set_defaults(func=cmd_sync_mtimes)

    p = sub.add_parser("info", help="print an artifact's contents and provenance")
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
