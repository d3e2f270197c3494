"""Figures: each module renders from its aggregate only (no torch, no gymnasium)."""
from __future__ import annotations


def footer(ds, extra: str = "") -> str:
    a = ds.attrs
    seeds = ", ".join(str(int(s)) for s in ds["seed"].values) if "seed" in ds.coords else "?"
    return (f"run: {a.get('run', '?')}   env: {a.get('env')}   algo: {a.get('algo')}   "
            f"seeds: {seeds}   {extra}   pgprobe {a.get('pgprobe_code', '')}")
