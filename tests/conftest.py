import os

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "disable")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
