"""One training step's gradients in any BPTT mode (full, window, stream), and the registry of
those modes (`MODES`: the config's train.bptt choices, gradcheck's and the CLI's list).

See rnnlm_cli.nn.timeloop for what each mode's gradient is exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BpttMode:
    """How one batch of a BPTT mode runs.

    sentences  whole sentences from the zero state; nothing is carried to the next batch
               (else the batch starts from the state the previous one carried)
    window     per-output truncation to train.window states (else the full recursion over
               the batch's steps)
    """

    sentences: bool
    window: bool


MODES: dict[str, BpttMode] = {
    "full": BpttMode(sentences=True, window=False),
    "window": BpttMode(sentences=False, window=True),
    "stream": BpttMode(sentences=False, window=False),
}


def batch_gradients(model, batch, state=None, mode: str = "stream", window: int = 0, train: bool = True,
                    rng=None, normalize: str = "token"):
    """Forward + backward of one batch in `mode`; returns (fwd, grads, next_state).

    batch: a batching.StreamBatch or SentenceBatch (x, y, mask, loss_start, carry).
    state: the state before the batch (None = zeros; full mode always starts from zeros).
    window: k of window mode. normalize: "token" (grads of the mean loss per scored token,
    the convention training should use), "batch" or "sum". next_state: the state to pass
    with the next batch (None in full mode), a constant copy.
    """
    if mode not in MODES:
        raise ValueError(f"unknown bptt mode {mode!r}")
    how = MODES[mode]
    if how.sentences:
        state = None
    fwd = model.forward(batch.x, batch.y, state, mask=batch.mask, train=train, rng=rng,
                        loss_start=batch.loss_start)
    scale = {"token": 1.0 / max(fwd.count, 1.0), "batch": 1.0 / batch.x.shape[1], "sum": 1.0}[normalize]
    truncation = window if how.window else None
    grads = model.backward(fwd, truncation=truncation, scale=scale)
    next_state = None if how.sentences else fwd.state_after(batch.carry)
    return fwd, grads, next_state
