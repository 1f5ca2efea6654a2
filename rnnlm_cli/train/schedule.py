"""The learning-rate policy: pure functions of the configuration and the schedule's state.

The trainer asks two questions and applies the answers (nothing here touches a model or a file):

  lr_for_epoch(tc, epoch, lr)          the rate at the start of epoch `epoch` (0-based)
      constant, plateau   the rate in force (`lr`) is kept
      epoch_decay         tc.lr * tc.lr_factor ** max(0, epoch + 1 - tc.decay_start): the rate
                          of epoch e (1-based) is tc.lr up to e = decay_start, then shrinks by
                          lr_factor per epoch

  after_validation(tc, state, loss)    what a validation loss does, in this order:
      rollback   with tc.reject_threshold > 0 and a best loss so far: a loss that is not
                 finite or exceeds best * (1 + reject_threshold) rolls the parameters and the
                 optimizer state back to the best checkpoint and multiplies the rate by
                 lr_factor (as faster-rnnlm does); the best loss stays
      cut        plateau schedule, once there is a best loss: a relative improvement
                 (best - loss) / |best| below tc.min_improvement multiplies the rate by lr_factor
      keep       otherwise
      `improved` (loss < best: a new best.npz) is reported with cut and keep.

  stop_reason(tc, lr)                  training stops once the rate falls below tc.min_lr
      (checked at each epoch start and after each validation; 0 = never)

The state is what an exact resume needs: the rate and the best validation loss so far
(`Progress.lr` and `Progress.best_loss` in the checkpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnlm_cli.config import TrainConfig

KEEP, CUT, ROLLBACK = "keep", "cut", "rollback"


@dataclass(frozen=True)
class ScheduleState:
    lr: float
    best_loss: float = math.inf


@dataclass(frozen=True)
class Decision:
    """What one validation loss asks of the trainer."""

    action: str            # KEEP, CUT (the rate was multiplied by lr_factor) or ROLLBACK (to best.npz, rate cut)
    improved: bool = False  # a new best loss: save best.npz
    stop: str = ""          # why training stops now ("" to go on)


def lr_for_epoch(tc: TrainConfig, epoch: int, lr: float) -> float:
    """The rate at the start of epoch `epoch` (0-based), given the rate `lr` in force."""
    if tc.schedule == "epoch_decay":
        return tc.lr * tc.lr_factor ** max(0, epoch + 1 - tc.decay_start)
    return lr


def stop_reason(tc: TrainConfig, lr: float) -> str:
    """Why training stops at this rate ("" when it goes on)."""
    if tc.min_lr and lr < tc.min_lr:
        return f"learning rate {lr:.3g} fell below train.min_lr={tc.min_lr}"
    return ""


def after_validation(tc: TrainConfig, state: ScheduleState, loss: float) -> tuple[ScheduleState, Decision]:
    """The schedule's new state and the trainer's action after a validation loss."""
    best = state.best_loss
    if tc.reject_threshold and math.isfinite(best):
        if not math.isfinite(loss) or loss > best * (1 + tc.reject_threshold):
            lr = state.lr * tc.lr_factor
            return ScheduleState(lr, best), Decision(ROLLBACK, stop=stop_reason(tc, lr))
    lr, action = state.lr, KEEP
    if tc.schedule == "plateau" and math.isfinite(best) and (best - loss) / abs(best) < tc.min_improvement:
        lr, action = state.lr * tc.lr_factor, CUT
    improved = loss < best
    new = ScheduleState(lr, loss if improved else best)
    return new, Decision(action, improved=improved, stop=stop_reason(tc, lr))
