"""Fig 7: fig 6 for PPO on Humanoid (the same landscape probe, aggregate and drawing; its own agents and
caption).  PPO's surrogate is its clipped objective on the batch that made the step: past the point where
the likelihood ratios leave [1 - eps, 1 + eps] the clipping stops rewarding the step, so the surrogate
plateaus (or drops) beyond x ~ 1."""
from __future__ import annotations

import xarray as xr

from . import fig6

VARIABLES = fig6.VARIABLES
CAPTION = ("Surrogate objective (PPO's clipped objective on the batch that made the step) beside the true "
           "reward (mean return of complete episodes) on the plane spanned by the update step (x; 1 = one full "
           "step) and a random unit direction (y).  The clipping flattens the surrogate past x ~ 1.  The paper "
           "(Ilyas et al. 2020, fig. 7): early in training surrogate and true reward agree; later the step that "
           "raises the surrogate lowers the true reward, for PPO even when the step is computed from many samples.")


def summarize(combined: xr.Dataset) -> xr.Dataset:
    return fig6.summarize(combined, figure="fig7")


def render(ds: xr.Dataset, out: str, seed_index: int = 0) -> None:
    fig6.render(ds, out, seed_index)
