"""Learning-rate schedules, as multipliers of the peak LR at each optimizer step.

- cosine: linear warmup, then cosine to final_lr at the run's last step (the horizon is the run itself).
- wsd (warmup-stable-decay): linear warmup, constant peak, then a cooldown over the last
  `cooldown_fraction` of the run's steps to final_lr, linear or 1-sqrt (Hägele et al. 2024).

WSD is what lets one stable run serve several token multipliers: up to a run's `cooldown_start` its LR does
not depend on its horizon, so runs that differ only in the multiplier share that prefix (the trunk, see
testbed/trunk.py) and each trains only its own cooldown.
"""

from __future__ import annotations

import math


def cooldown_start(steps: int, fraction: float) -> int:
    """First step of a WSD cooldown of `fraction` of the run (at least one step, never the whole run)."""
    return steps - min(max(round(fraction * steps), 1), steps - 1)


def lr_factor(step: int, plan) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based) of `plan` (a RunPlan)."""
    if step < plan.warmup_steps:
        return (step + 1) / plan.warmup_steps
    floor = plan.final_lr / plan.lr
    if plan.schedule == "cosine":
        progress = (step - plan.warmup_steps) / max(plan.steps - plan.warmup_steps - 1, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if step < plan.cooldown_start:
        return 1.0
    # the cooldown's steps are exactly those below the peak; its last step reaches the floor
    progress = min((step - plan.cooldown_start + 1) / (plan.steps - plan.cooldown_start), 1.0)
    remaining = 1 - progress if plan.cooldown_shape == "linear" else 1 - math.sqrt(progress)
    return floor + (1 - floor) * remaining
