"""What README.md says about the quick run agrees with the quick params (config/quick.yaml over params.yaml)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgprobe.pipeline import config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick():
    return config.load(REPO / "params.yaml", [REPO / "config" / "quick.yaml"], check_envs=False)


@pytest.fixture(scope="module")
def readme():
    return (REPO / "README.md").read_text()


def _caption(readme: str, image: str) -> str:
    """The italic caption under a README image (up to the closing `*`)."""
    start = readme.index(f"({image})")
    return readme[start:readme.index("*\n", readme.index("*", start) + 1)].replace("\n", " ")


def _number(text: str) -> int:
    return int(text.replace(" ", "").replace(",", ""))


def test_fig6_caption_states_the_quick_landscape_budget_and_iterations(readme, quick):
    cap = _caption(readme, "docs/fig6-quick.png")
    land = quick["probes"]["landscape"]
    assert _number(re.search(r"([\d ,]+) state-action pairs per grid point", cap).group(1)) == land["samples_per_point"]
    assert _number(re.search(r"the step from ([\d ,]+) fresh pairs", cap).group(1)) == land["many_samples"]
    its = re.search(r"its iterations ([\d/]+)", cap).group(1)
    assert [int(i) for i in its.split("/")] == quick["figures"]["fig6"]["iterations"]
    assert f"{land['x']['points']} x {land['y']['points']} grid" in cap
    assert f"{quick['train']['iterations']} training iterations" in cap


def test_fig8_caption_states_the_quick_seeds(readme, quick):
    cap = _caption(readme, "docs/fig8-quick.png")
    seeds = quick["figures"]["fig8"]["seeds"]
    said = re.search(r"seeds? ([\d, and]+?)[;)]", cap).group(1)
    assert [int(s) for s in re.findall(r"\d+", said)] == seeds
