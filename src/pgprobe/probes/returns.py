"""Realised returns of a probe's batch: the discounted return to go within each episode, in the train
rewards the agent optimises.  Fig 4's "true" value function regresses on them, fig 3 measures the value
network against them.  (Not in rollout.py: that file is part of every training job's code.)"""
from __future__ import annotations

import numpy as np


def mc_returns(batch, gamma: float, bootstrap_truncation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) discounted returns to go of the train rewards within each episode, and (T, N) bool: the
    return is complete (its episode ended within the batch: a termination, or a time-limit truncation
    unless `bootstrap_truncation`), not cut by the batch end."""
    r = batch.train_rewards
    ended = batch.terminated if bootstrap_truncation else batch.done
    ret, complete = np.zeros(r.shape), np.zeros(r.shape, bool)
    running, whole = np.zeros(r.shape[1]), np.zeros(r.shape[1], bool)
    for t in reversed(range(r.shape[0])):
        end = ~batch.continues[t]
        running = r[t] + gamma * np.where(end, 0.0, running)
        whole = np.where(end, ended[t], whole)
        ret[t], complete[t] = running, whole
    return ret, complete
