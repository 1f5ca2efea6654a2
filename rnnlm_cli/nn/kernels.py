"""BLAS thread control for the time loop.

numpy's OpenBLAS uses every core by default (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set the
number at start-up). That suits the big products of the output layer, but the time loop is a
chain of small GEMMs, (B, H) @ (H, G*H) with B = 20: handing each to two threads costs more in
synchronisation than it saves (2-3x slower measured at H = 200, and far worse when other
processes compete for the cores: a threaded GEMM then waits for a descheduled helper thread,
up to a time slice per call; a class-softmax training step measured 5x slower that way).

So the model runs its forward and backward under `loop_threads()` (one thread), and only the
big products -- at least BIG_GEMM multiply-adds, i.e. the full softmax's three (N, H) x (H, V)
products -- go back to every thread the process started with (`big_gemm(macs)`).

    RNNLM_LOOP_THREADS   BLAS threads for everything but the big products: default 1;
                         0 leaves OpenBLAS alone (every call may use every thread)

The switch is process-wide (OpenBLAS has one thread count), so two models running in
different Python threads at once would see each other's setting. Without OpenBLAS (MKL,
Accelerate, a build that cannot be found) everything here is a no-op.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
from contextlib import contextmanager

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
        "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
        "openblas_get_num_threads")
_CORE = ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
         "openblas_get_corename")
_CONFIG = ("scipy_openblas_get_config64_", "scipy_openblas_get_config", "openblas_get_config64_",
           "openblas_get_config")

_state: dict = {}

BIG_GEMM = 64_000_000   # multiply-adds from which a product gets every thread back


def _symbol(lib, names, restype, argtypes=()):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype, fn.argtypes = restype, list(argtypes)
            return fn
    return None


def _openblas() -> dict:
    """The OpenBLAS that numpy loaded, found in /proc/self/maps (Linux); {} when there is none."""
    if "found" in _state:
        return _state
    _state["found"] = False
    try:
        importlib.import_module("numpy")        # loads numpy's BLAS
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = sorted({m for m in re.findall(r"(/\S+\.so[.\d]*)", fh.read()) if "openblas" in m.lower()})
        for path in paths:
            lib = ctypes.CDLL(path)
            setter, getter = _symbol(lib, _SET, None, (ctypes.c_int,)), _symbol(lib, _GET, ctypes.c_int)
            if setter is not None and getter is not None:
                _state.update(found=True, path=path, set=setter, get=getter, default=int(getter()),
                              core=_symbol(lib, _CORE, ctypes.c_char_p), config=_symbol(lib, _CONFIG, ctypes.c_char_p))
                break
    except (OSError, AttributeError):
        pass
    return _state


def _loop_threads_setting() -> int:
    try:
        return max(0, int(os.environ.get("RNNLM_LOOP_THREADS", "1")))
    except ValueError:
        return 1


def num_threads() -> int | None:
    """OpenBLAS's current thread count (None without OpenBLAS)."""
    lib = _openblas()
    return int(lib["get"]()) if lib.get("found") else None


@contextmanager
def nothing():
    yield


def big_gemm(macs: float):
    """Every thread the process started with, for a product of at least BIG_GEMM multiply-adds
    (inside loop_threads); a no-op context for smaller ones."""
    return all_threads() if macs >= BIG_GEMM else nothing()


@contextmanager
def all_threads():
    """Run the block with the thread count OpenBLAS had when first seen here."""
    lib = _openblas() if _loop_threads_setting() else {}
    if not lib.get("found"):
        yield
        return
    before = int(lib["get"]())
    if before >= lib["default"]:
        yield
        return
    lib["set"](lib["default"])
    try:
        yield
    finally:
        lib["set"](before)


@contextmanager
def loop_threads():
    """Run the block with RNNLM_LOOP_THREADS (default 1) BLAS threads, if that is fewer."""
    want = _loop_threads_setting()
    lib = _openblas() if want else {}
    if not lib.get("found"):
        yield
        return
    before = int(lib["get"]())
    if before <= want:
        yield
        return
    lib["set"](want)
    try:
        yield
    finally:
        lib["set"](before)


def info() -> dict:
    """What the bench reports: library path, core type (kernel), build config, threads."""
    lib = _openblas()
    if not lib.get("found"):
        return {"openblas": None}
    out = {"openblas": lib["path"], "threads": int(lib["get"]()), "loop_threads": _loop_threads_setting()}
    for key in ("core", "config"):
        if lib.get(key) is not None:
            out[key] = lib[key]().decode("utf-8", "replace")
    return out
