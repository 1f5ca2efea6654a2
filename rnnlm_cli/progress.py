"""How the library reports progress without deciding anything about terminals.

A long-running library function takes `progress`, a factory with tqdm's signature subset:

    bar = progress(total=N, desc="epoch 1/3", initial=0, unit="it")   # unit "B": bytes
    bar.update(n)            # n more units done
    bar.set_postfix(**info)  # live figures (loss=..., lr=...)
    bar.close()

The default, `no_progress` (also used when a caller passes None), reports nothing. The command
line passes a factory that makes tqdm bars on stderr when stderr is a terminal
(rnnlm_cli/cli/progress_bars.py); tests pass a recorder. Users so far: training (a bar per
epoch, in updates), preprocessing (a bar per pass, in bytes) and diagnose-gradients (a bar
per model, in passes).
"""

from __future__ import annotations

from typing import Callable, Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def set_postfix(self, **info) -> object: ...

    def close(self) -> object: ...


ProgressFactory = Callable[..., Bar]


class NullBar:
    """A bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **info) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def no_progress(total: int | None = None, desc: str = "", initial: int = 0, unit: str = "it") -> NullBar:
    return NullBar()
