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
    from . import config, train
    from .envs import make_unwrapped

    cfg = config.load(args.params, args.overlay)
    agent = config.agent_config(cfg, args.env, args.algo)
    make_unwrapped(args.env)  # fail fast, with one clear message, on a bad env id
    _threads(args.threads)
    train.run(agent, args.seed, Path(args.out), stop_at=args.stop_at, progress=not args.quiet)


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
