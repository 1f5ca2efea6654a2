"""Speed tricks that change no number: BLAS thread control and blocked products.

The layers (cells, output, model) and the optimizers are written as maths; how a product is cut
into pieces and how many BLAS threads run it is decided here. Every constant below says where
and how it was measured; on another machine it may be worth measuring again
(scripts/bench.py, `--env` to A/B a setting).

Threads. numpy's BLAS uses every core by default (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set the
number at start-up). That suits the big products of the output layer, but the time loop is a
chain of small GEMMs, (B, H) @ (H, G*H) with B = 20: handing each to two threads costs more in
synchronisation than it saves (2-3x slower measured at H = 200, and far worse when other
processes compete for the cores: a threaded GEMM then waits for a descheduled helper thread,
up to a time slice per call; a class-softmax training step measured 5x slower that way).

So the model runs its forward and its backward under `loop_threads()` (one thread), and only
the big products -- at least BIG_GEMM multiply-adds, e.g. the full softmax's (N, H) x (H, V)
products -- go back to every thread the process started with (`big_gemm(macs)`). The switch
goes through threadpoolctl (one controller, made on first use). Entering `loop_threads()` when
it is already in force costs nothing; a real switch costs ~23 us (threadpoolctl 3.8, measured
on the 2-core Haswell of scripts/bench.py: 2,000 enter/exit pairs; the ctypes calls it replaced
took ~2 us), which is why it happens only at a few boundaries, never per time step: the model's
forward, backward and generation step, the big products inside them, and the class softmax's
factored gradient (its norm and its SGD update are small products that run after the backward).
A class-softmax training step at k1 = 4 (~80 tokens, ~5 ms) makes four switches.

    RNNLM_LOOP_THREADS   BLAS threads for everything but the big products: default 1;
                         0 leaves the BLAS alone (every call may use every thread)
    RNNLM_BIG_THREADS    BLAS threads for the big products: `all` (default: every thread the
                         process started with), a count, or `auto`: decided once per process, at
                         the first big product, from the load average -- one thread when other
                         processes keep the other cores busy (`big_threads()`)

Why `auto` is not the default. Under load a threaded product waits for its helper thread at
every synchronisation point inside the GEMM, and OpenBLAS's helpers spin after each product:
with other trainings on both cores of the bench machine, the 1-layer LSTM (E = H = 200) trained
1.4-2.2x faster with one thread for the big products too (scripts/bench.py --variant, alternating
fresh children; results/bench-big-threads.json). But a
product's last bits depend on its thread count (OpenBLAS splits the work differently: measured,
(700 x 10,000) @ (10,000 x 200) differs between one and two threads in float32 and float64), so
a thread count chosen from the load would give the same seed different rounding from run to run
and break `--resume`'s bit-identity. With `all` or a count the numbers depend only on the setting.

The setting is process-wide (OpenBLAS has one thread count; threadpoolctl lets only one
Python thread at a time change it). Without a BLAS that threadpoolctl can control, the thread
switches do nothing.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

# multiply-adds from which a product gets every thread back inside loop_threads(): the full
# softmax's (700, 200) x (200, 10,000) products (1.4e9) gain ~1.8x from the second core on the
# bench machine; the time loop's (20, 200) x (200, 800) (3.2e6) lose 2-3x
BIG_GEMM = 64_000_000

_blas: dict = {}                 # "controller": threadpoolctl's, restricted to BLAS; "default": threads
_mode = threading.local()        # .now: None (untouched), "loop" or "all", per Python thread


def loop_threads_setting() -> int:
    """RNNLM_LOOP_THREADS as a count (default 1; 0: leave the BLAS alone)."""
    try:
        return max(0, int(os.environ.get("RNNLM_LOOP_THREADS", "1")))
    except ValueError:
        return 1


def big_threads_setting() -> str:
    """RNNLM_BIG_THREADS as given: "all" (default), "auto" or a count."""
    value = os.environ.get("RNNLM_BIG_THREADS", "all").strip().lower()
    if value in ("all", "auto"):
        return value
    try:
        return str(max(1, int(value)))
    except ValueError:
        return "all"


def auto_threads(default: int, cores: int, load: float) -> int:
    """`auto`'s choice: the cores left by other processes (the 1-minute load average less this
    process's own 1), rounded, between 1 and `default`."""
    others = max(0.0, load - 1.0)
    return max(1, min(default, int(cores - others + 0.5)))


def big_threads() -> int | None:
    """BLAS threads for the big products (None without a controllable BLAS); decided once."""
    if _controller() is None:
        return None
    if "big" not in _blas:
        setting, default = big_threads_setting(), _blas["default"]
        if setting == "all":
            _blas["big"] = default
        elif setting == "auto":
            _blas["big"] = auto_threads(default, os.cpu_count() or default, os.getloadavg()[0])
        else:
            _blas["big"] = min(default, int(setting))
    return _blas["big"]


def _controller():
    """threadpoolctl's controller of the loaded BLAS libraries (None when there is none), and the
    thread count they had when first seen here."""
    if "controller" not in _blas:
        from threadpoolctl import ThreadpoolController
        blas = ThreadpoolController().select(user_api="blas")
        counts = [lib["num_threads"] for lib in blas.info() if lib.get("num_threads")]
        _blas["controller"] = blas if counts else None
        _blas["default"] = max(counts) if counts else None
    return _blas["controller"]


@contextmanager
def _switch(mode: str, threads: int):
    before = getattr(_mode, "now", None)
    _mode.now = mode
    try:
        with _controller().limit(limits=threads, user_api="blas"):
            yield
    finally:
        _mode.now = before


@contextmanager
def loop_threads():
    """Run the block with RNNLM_LOOP_THREADS (default 1) BLAS threads, if that is fewer than
    the process started with. Re-entrant: inside another loop_threads() it does nothing."""
    want = loop_threads_setting()
    if not want or getattr(_mode, "now", None) == "loop" or _controller() is None or want >= _blas["default"]:
        yield
        return
    with _switch("loop", want):
        yield


@contextmanager
def all_threads():
    """Inside loop_threads(): run the block with the big products' threads (`big_threads()`:
    by default every thread the process started with)."""
    if getattr(_mode, "now", None) != "loop":
        yield
        return
    threads = big_threads()
    if threads is None or threads <= loop_threads_setting():
        yield
        return
    with _switch("all", threads):
        yield


@contextmanager
def _nothing():
    yield


def big_gemm(macs: float):
    """all_threads() for a product of at least BIG_GEMM multiply-adds; nothing for smaller ones."""
    return all_threads() if macs >= BIG_GEMM else _nothing()


def info() -> dict:
    """What the bench reports: the BLAS library (threadpoolctl's `info()`), its version,
    threads and core type, and the loop-thread setting."""
    blas = _controller()
    if blas is None:
        return {"library": None, "loop_threads": loop_threads_setting()}
    lib = blas.info()[0]
    return {"library": lib.get("internal_api"), "version": lib.get("version"), "filepath": lib.get("filepath"),
            "threads": lib.get("num_threads"), "core": lib.get("architecture"),
            "threading_layer": lib.get("threading_layer"), "loop_threads": loop_threads_setting(),
            "big_threads_setting": big_threads_setting(), "big_threads": big_threads()}


# --------------------------------------------------------------------------- blocked products

def block_product(d: np.ndarray, h: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = d^T h for d (r, k), h (r, H). One row (r = 1) is an outer product: numpy's matmul
    with an inner dimension of 1 measured ~10x slower than np.multiply for k = 400, H = 200."""
    if d.shape[0] == 1:
        return np.multiply(d[0][:, None], h[0][None, :], out=out)
    return np.matmul(d.T, h, out=out)


# The class softmax's word products are skinny: a class's few rows (r ~ N / C) against its k
# words. OpenBLAS packs both operands of a product before multiplying, which costs as much as the
# product here; builds with small-matrix kernels (0.3.1x+, e.g. SkylakeX) skip the packing for
# small products (measured: up to ~240,000 multiply-adds), 2-3x faster for these shapes: 7 rows
# x 200 x 4096 words ran at 8 GMAC/s as one product, at 23 in 160-word pieces (bench class-k35
# shapes, timeit of the product alone). Elsewhere a piece costs a call.
SMALL_GEMM = 200_000
# backward: words per product along the summed dimension of d W^T; ~1.4x faster than one
# product for the 1,600-word tail class of PTB at C = 100 (bench class-k35, timeit)
INNER_STEP = 512
# factored SGD: rows of a (k, H) block product formed and subtracted at a time, so the block
# stays in cache between being written and subtracted (~1.7x faster than whole classes of up
# to 1,600 words; bench class-k35, the update alone)
UPDATE_ROWS = 256
# element-wise chains (Adam's eleven passes) run over pieces of this many elements, so the
# parameter, gradient, moments and scratch sit in the L2 cache (~2-3x faster than whole-array
# passes on a 2M-element (10,000 x 200) embedding; timeit of one update)
ELEMENTWISE_BLOCK = 32768
# the softmax statistics take an (N, K) buffer in row blocks of about this many bytes, so the
# bias, max, subtract, exp and sum find each block in cache (L2) instead of passing over the
# whole buffer five times: 6.4-7.5 against 7.5-10.5 ms for 700 x 10,000 in isolation (threads
# did not help: OpenBLAS's threads still spin on the other core after the logits product)
STATS_BYTES = 1 << 20


def small_columns(rows: int, inner: int) -> int:
    """Columns per piece so that rows x inner x columns stays within SMALL_GEMM (at least 32)."""
    return max(32, SMALL_GEMM // max(1, rows * inner))


def matmul_column_pieces(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (m, n) = a (m, K) @ b (K, n), in column pieces of at most SMALL_GEMM multiply-adds."""
    n = b.shape[1]
    step = small_columns(a.shape[0], a.shape[1])
    for j in range(0, n, step):
        e = min(n, j + step)
        np.matmul(a, b[:, j:e], out=out[:, j:e])
    return out


def matmul_inner_pieces(a: np.ndarray, b: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """out (m, n) = a (m, K) @ b (K, n), summed over INNER_STEP pieces of K; scratch (>= m, n)."""
    K, m = a.shape[1], a.shape[0]
    np.matmul(a[:, :INNER_STEP], b[:INNER_STEP], out=out)
    for j in range(INNER_STEP, K, INNER_STEP):
        e = min(K, j + INNER_STEP)
        out += np.matmul(a[:, j:e], b[j:e], out=scratch[:m])
    return out


def update_scratch(max_rows: int, width: int, dtype) -> np.ndarray:
    """(min(max_rows, UPDATE_ROWS), width) scratch for subtract_block_product, made once per update."""
    return np.empty((min(UPDATE_ROWS, max_rows), width), dtype=dtype)


def subtract_block_product(target: np.ndarray, d: np.ndarray, h: np.ndarray, scratch: np.ndarray) -> None:
    """target (k, H) -= d^T h for d (r, k), h (r, H), UPDATE_ROWS rows at a time;
    scratch from update_scratch(k or more, H, dtype)."""
    k = d.shape[1]
    for lo in range(0, k, UPDATE_ROWS):
        hi = min(k, lo + UPDATE_ROWS)
        target[lo:hi] -= block_product(d[:, lo:hi], h, scratch[:hi - lo])


def cache_row_blocks(rows: int, row_bytes: int):
    """(lo, hi) row ranges of about STATS_BYTES each, covering 0..rows."""
    step = max(1, STATS_BYTES // max(1, row_bytes))
    return [(lo, min(rows, lo + step)) for lo in range(0, rows, step)]


def elementwise_blocks(update, arrays, scratch, block: int = ELEMENTWISE_BLOCK) -> None:
    """update(*pieces, *scratch_pieces) over pieces of `block` elements of same-shaped arrays
    (whole when they are small or not contiguous). scratch: flat arrays of >= min(size, block)
    elements (a larger one is made for a large non-contiguous whole). Only for element-wise
    updates: the pieces see the same numbers as the whole."""
    n = arrays[0].size
    if n <= block or not all(a.flags.c_contiguous for a in arrays):
        whole = [s[:n] if s.size >= n else np.empty(n, dtype=s.dtype) for s in scratch]
        update(*arrays, *(s.reshape(arrays[0].shape) for s in whole))
        return
    flat = [a.reshape(-1) for a in arrays]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        update(*(f[lo:hi] for f in flat), *(s[:hi - lo] for s in scratch))
