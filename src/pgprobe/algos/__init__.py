"""The algorithms, by `kind`: each module has `update_policy` (one iteration's policy update)
and `objective` (the surrogate it maximises, as the probes evaluate it)."""
from . import ppo, trpo

KINDS = {"ppo": ppo, "trpo": trpo}
