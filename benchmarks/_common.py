"""Helpers shared by the benchmarks: the repository's params, agent configs, thread pinning."""
from __future__ import annotations

import os
import platform
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
ENV_ID = "Hopper-v5"


def agent(algo: str, iterations: int, env_id: str = ENV_ID, params: Path = PARAMS) -> dict:
    """The agent config the pipeline would train, from params.yaml, with `train.iterations` overridden."""
    from pgprobe.pipeline import config

    cfg = config.load(params)
    a = config.agent_config(cfg, env_id, algo)
    a["train"]["iterations"] = int(iterations)
    return a


def pin_threads(n: int = 1) -> None:
    import torch

    torch.set_num_threads(n)


def machine() -> str:
    import numpy
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"{platform.node()} | {os.cpu_count()} cpus | load avg {load[0]:.2f} | "
            f"python {platform.python_version()} | torch {torch.__version__} | numpy {numpy.__version__}")
