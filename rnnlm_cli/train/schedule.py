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

  averaging_triggered(history, loss, nonmono)   train.average=nt: whether this validation
      starts weight averaging (the non-monotone trigger of NT-ASGD, below)

The state is what an exact resume needs: the rate and the best validation loss so far
(`Progress.lr` and `Progress.best_loss` in the checkpoint), and for train.average=nt the
validation losses before the trigger (`Progress.valid_history`).

The non-monotone trigger (Merity et al. 2018, Algorithm 1, as the AWD-LSTM code writes it:
`t > nonmono and val_loss > min(best_val_loss[:-nonmono])`): with the earlier validation losses
L_1 .. L_{k-1} and this one L_k, averaging starts when k - 1 > n and L_k > min(L_1 .. L_{k-1-n}),
n = train.average_nonmono: this loss is worse than the best of the losses more than n
validations before it. The first validation that can fire it is therefore the (n + 2)-th.
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


def averaging_triggered(history: list[float], loss: float, nonmono: int) -> bool:
    """Whether validation loss `loss` starts averaging (train.average=nt), given the validation
    losses before it, oldest first, and n = `nonmono`: len(history) > n and loss > the smallest
    of history[:len(history) - n] (the module docstring states the rule). A non-finite loss
    compares as worse than any finite one."""
    if len(history) <= nonmono:
        return False
    best_before = min(history[:len(history) - nonmono])
    return not (loss <= best_before)          # NaN: worse
