"""The learning-rate schedule (train/schedule.py) on hand-built sequences of validation losses.

Every expected rate follows from the rules in the module docstring by hand; the trainer tests
(test_train.py, test_reliability.py) check that training applies them."""

from __future__ import annotations

import math

import pytest

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.train.schedule import (CUT, KEEP, ROLLBACK, ScheduleState, after_validation, lr_for_epoch,
                                      stop_reason)

NAN = float("nan")


def run(tc: TrainConfig, losses):
    """Feed validation losses one by one: [(action, improved, lr after, best after, stop)]."""
    state, out = ScheduleState(tc.lr), []
    for loss in losses:
        state, d = after_validation(tc, state, loss)
        out.append((d.action, d.improved, state.lr, state.best_loss, d.stop))
    return out


def test_constant_keeps_the_rate_and_tracks_the_best():
    tc = TrainConfig(lr=0.1)
    assert run(tc, [5.0, 6.0, 4.0, NAN, 4.0]) == [
        (KEEP, True, 0.1, 5.0, ""),     # anything beats "no loss yet"
        (KEEP, False, 0.1, 5.0, ""),
        (KEEP, True, 0.1, 4.0, ""),
        (KEEP, False, 0.1, 4.0, ""),    # NaN is no improvement, and without reject_threshold no rollback
        (KEEP, False, 0.1, 4.0, ""),    # equal is not better
    ]
    assert [lr_for_epoch(tc, e, 0.1) for e in range(5)] == [0.1] * 5


def test_plateau_cuts_when_the_relative_improvement_is_too_small():
    tc = TrainConfig(lr=1.0, schedule="plateau", lr_factor=0.5, min_improvement=0.01)
    assert run(tc, [5.0, 4.0, 3.99, 3.0, 3.5, NAN]) == [
        (KEEP, True, 1.0, 5.0, ""),     # nothing to compare with yet
        (KEEP, True, 1.0, 4.0, ""),     # (5 - 4) / 5 = 20% >= 1%
        (CUT, True, 0.5, 3.99, ""),     # (4 - 3.99) / 4 = 0.25% < 1%: a cut, and still a new best
        (KEEP, True, 0.5, 3.0, ""),     # (3.99 - 3) / 3.99 = 24.8%
        (CUT, False, 0.25, 3.0, ""),    # worse: a negative improvement
        (KEEP, False, 0.25, 3.0, ""),   # NaN compares false everywhere: neither a cut nor a best
    ]


def test_plateau_stops_once_the_rate_falls_below_min_lr():
    # min_improvement 1.0: every evaluation after the first is a plateau; 0.02 -> 0.01 -> 0.005 -> 0.0025
    tc = TrainConfig(lr=0.02, schedule="plateau", lr_factor=0.5, min_improvement=1.0, min_lr=0.004)
    rows = run(tc, [3.0, 2.5, 2.0, 1.5])
    assert [r[2] for r in rows] == [0.02, 0.01, 0.005, 0.0025]
    assert [r[4] for r in rows] == ["", "", "", "learning rate 0.0025 fell below train.min_lr=0.004"]


@pytest.mark.parametrize("third", [3.0, NAN, math.inf])
def test_reject_threshold_rolls_back_and_cuts(third):
    # best 1.5 after two evaluations; a loss above 1.5 * (1 + 0.5) = 2.25, or not finite, is rejected
    tc = TrainConfig(lr=0.01, reject_threshold=0.5, lr_factor=0.5)
    assert run(tc, [2.0, 1.5, third, 2.25, 1.0]) == [
        (KEEP, True, 0.01, 2.0, ""),
        (KEEP, True, 0.01, 1.5, ""),
        (ROLLBACK, False, 0.005, 1.5, ""),   # the best loss stays that of best.npz
        (KEEP, False, 0.005, 1.5, ""),       # 2.25 is not above the threshold
        (KEEP, True, 0.005, 1.0, ""),
    ]


def test_the_first_evaluation_is_never_rejected_and_rollback_can_stop():
    tc = TrainConfig(lr=0.01, reject_threshold=0.1, lr_factor=0.5, min_lr=0.006)
    assert run(tc, [NAN]) == [(KEEP, False, 0.01, math.inf, "")]   # no best yet: nothing to roll back to
    assert run(tc, [1.0, 2.0]) == [(KEEP, True, 0.01, 1.0, ""),
                                   (ROLLBACK, False, 0.005, 1.0, "learning rate 0.005 fell below train.min_lr=0.006")]


def test_a_rollback_takes_precedence_over_a_plateau_cut():
    tc = TrainConfig(lr=1.0, schedule="plateau", reject_threshold=0.1, lr_factor=0.5)
    assert [r[:3] for r in run(tc, [1.0, 1.2])] == [(KEEP, True, 1.0), (ROLLBACK, False, 0.5)]   # one cut only


def test_epoch_decay_is_a_closed_form_of_the_epoch():
    # lr * factor ** max(0, e + 1 - decay_start): epochs 1..decay_start (1-based) at lr, then halving
    tc = TrainConfig(lr=0.02, schedule="epoch_decay", lr_factor=0.5, decay_start=2)
    assert [lr_for_epoch(tc, e, 123.0) for e in range(5)] == [0.02, 0.02, 0.01, 0.005, 0.0025]
    assert [lr_for_epoch(TrainConfig(lr=1.0, schedule="epoch_decay", lr_factor=0.1, decay_start=0), e, 1.0)
            for e in range(3)] == [pytest.approx(0.1), pytest.approx(0.01), pytest.approx(0.001)]


def test_stop_reason_only_with_min_lr():
    assert stop_reason(TrainConfig(min_lr=0.0), 1e-30) == ""
    assert stop_reason(TrainConfig(min_lr=0.001), 0.001) == ""          # not below
    assert stop_reason(TrainConfig(min_lr=0.001), 0.0005) == "learning rate 0.0005 fell below train.min_lr=0.001"
