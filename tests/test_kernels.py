"""kernels.py: the thread switches (checked through threadpoolctl itself) and the blocked
products against whole products."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from rnnlm_cli.nn import kernels


def blas_threads() -> int:
    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


@pytest.fixture
def two_threads(monkeypatch):
    """A BLAS with at least two threads to switch between (skipped on a one-thread BLAS)."""
    monkeypatch.delenv("RNNLM_LOOP_THREADS", raising=False)
    if kernels._controller() is None or kernels._blas["default"] < 2 or blas_threads() < 2:
        pytest.skip("needs a BLAS that threadpoolctl controls, with 2+ threads")
    return kernels._blas["default"]


def test_loop_threads_and_big_products(two_threads):
    with kernels.loop_threads():
        assert blas_threads() == 1
        with kernels.big_gemm(kernels.BIG_GEMM - 1):
            assert blas_threads() == 1
        with kernels.big_gemm(kernels.BIG_GEMM):
            assert blas_threads() == two_threads
            with kernels.loop_threads():                # the time loop inside a big product
                assert blas_threads() == 1
            assert blas_threads() == two_threads
        assert blas_threads() == 1
    assert blas_threads() == two_threads
    with kernels.big_gemm(kernels.BIG_GEMM):           # outside loop_threads: nothing to give back
        assert blas_threads() == two_threads


def test_nested_loop_threads_switch_once(two_threads, monkeypatch):
    calls = []
    controller = kernels._controller()
    real = type(controller).limit
    monkeypatch.setattr(type(controller), "limit", lambda self, **kw: (calls.append(kw), real(self, **kw))[1])
    with kernels.loop_threads():
        with kernels.loop_threads():
            with kernels.loop_threads():
                assert blas_threads() == 1
    assert calls == [{"limits": 1, "user_api": "blas"}]


@pytest.mark.parametrize("setting", ["0", "64"])
def test_the_setting_can_leave_the_blas_alone(two_threads, monkeypatch, setting):
    # 0: leave it alone; more threads than the BLAS has: nothing to limit
    monkeypatch.setenv("RNNLM_LOOP_THREADS", setting)
    with kernels.loop_threads(), kernels.big_gemm(kernels.BIG_GEMM):
        assert blas_threads() == two_threads


def test_setting_parses_like_before(monkeypatch):
    for value, expect in (("2", 2), ("0", 0), ("-3", 0), ("many", 1)):
        monkeypatch.setenv("RNNLM_LOOP_THREADS", value)
        assert kernels.loop_threads_setting() == expect
    monkeypatch.delenv("RNNLM_LOOP_THREADS")
    assert kernels.loop_threads_setting() == 1


def test_info_names_the_blas_threadpoolctl_sees():
    info = kernels.info()
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    if not blas:
        assert info["library"] is None
        return
    assert info["library"] == blas[0]["internal_api"] and info["filepath"] == blas[0]["filepath"]
    assert info["threads"] == blas[0]["num_threads"] and info["core"] == blas[0].get("architecture")


# --------------------------------------------------------------------------- blocked products

rng = np.random.default_rng(0)


@pytest.mark.parametrize("r", [1, 3])
def test_block_product_is_d_transpose_h(r):
    d, h = rng.standard_normal((r, 5)), rng.standard_normal((r, 4))
    out = np.empty((5, 4))
    np.testing.assert_allclose(kernels.block_product(d, h, out), d.T @ h, rtol=1e-14, atol=1e-15)


def test_products_in_pieces_equal_whole_products(monkeypatch):
    a, b = rng.standard_normal((3, 7)), rng.standard_normal((7, 10))
    monkeypatch.setattr(kernels, "small_columns", lambda rows, inner: 4)     # pieces 4, 4, 2
    np.testing.assert_allclose(kernels.matmul_column_pieces(a, b, np.empty((3, 10))), a @ b, rtol=1e-13)
    monkeypatch.setattr(kernels, "INNER_STEP", 3)                            # sums over 3, 3, 1
    got = kernels.matmul_inner_pieces(a, b, np.empty((3, 10)), np.empty((5, 10)))
    np.testing.assert_allclose(got, a @ b, rtol=1e-13)
    monkeypatch.setattr(kernels, "UPDATE_ROWS", 2)                           # rows 2, 2, 2, 1
    d, h = rng.standard_normal((3, 7)), rng.standard_normal((3, 4))
    target = rng.standard_normal((7, 4))
    expect = target - d.T @ h
    kernels.subtract_block_product(target, d, h, kernels.update_scratch(7, 4, np.float64))
    np.testing.assert_allclose(target, expect, rtol=1e-13)


def test_small_columns_keeps_pieces_within_the_limit():
    # 7 rows x 200 inner: 200,000 // 1,400 = 142 columns; never fewer than 32
    assert kernels.small_columns(7, 200) == kernels.SMALL_GEMM // 1400 == 142
    assert kernels.small_columns(700, 200) == 32


def test_cache_row_blocks_cover_the_rows(monkeypatch):
    monkeypatch.setattr(kernels, "STATS_BYTES", 300)
    assert kernels.cache_row_blocks(10, 100) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert kernels.cache_row_blocks(2, 10_000) == [(0, 1), (1, 2)]             # a row wider than the budget


@pytest.mark.parametrize("contiguous", [True, False])
def test_elementwise_blocks_give_the_whole_update(contiguous):
    x0 = rng.standard_normal((6, 10))
    y = rng.standard_normal((6, 10))
    if not contiguous:
        x0, y = x0.T, y.T                                                     # (10, 6) views

    def update(x, y, tmp):
        np.multiply(y, 3.0, out=tmp)
        x += tmp

    x = x0.copy(order="K")
    kernels.elementwise_blocks(update, (x, y), (np.empty(7),), block=7)
    np.testing.assert_array_equal(x, x0 + 3.0 * y)


# --------------------------------------------------------------------------- threads of the big products

@pytest.fixture
def big_setting(two_threads, monkeypatch):
    """Set RNNLM_BIG_THREADS for one test; the once-per-process decision is made again."""
    def use(value):
        monkeypatch.setenv("RNNLM_BIG_THREADS", value)
        monkeypatch.delitem(kernels._blas, "big", raising=False)
    yield use
    kernels._blas.pop("big", None)


def test_auto_counts_the_cores_other_processes_leave():
    # load average 1.0 is this process alone: every thread; one more busy process: one thread
    assert kernels.auto_threads(2, 2, 1.0) == 2
    assert kernels.auto_threads(2, 2, 1.4) == 2
    assert kernels.auto_threads(2, 2, 2.0) == 1
    assert kernels.auto_threads(2, 2, 9.0) == 1
    assert kernels.auto_threads(8, 8, 3.0) == 6
    assert kernels.auto_threads(4, 16, 0.2) == 4          # never more than the BLAS started with


def test_big_threads_setting_parses(monkeypatch):
    for value, expect in (("all", "all"), ("AUTO", "auto"), ("1", "1"), ("0", "1"), ("lots", "all")):
        monkeypatch.setenv("RNNLM_BIG_THREADS", value)
        assert kernels.big_threads_setting() == expect
    monkeypatch.delenv("RNNLM_BIG_THREADS")
    assert kernels.big_threads_setting() == "all"


@pytest.mark.parametrize("value", ["1", "auto"])
def test_big_products_follow_the_setting(big_setting, monkeypatch, two_threads, value):
    big_setting(value)
    monkeypatch.setattr(kernels.os, "getloadavg", lambda: (5.0, 5.0, 5.0))    # a busy machine
    with kernels.loop_threads(), kernels.big_gemm(kernels.BIG_GEMM):
        assert blas_threads() == 1
    assert kernels.info()["big_threads"] == 1
    # decided once: a quiet machine later does not change it (the numbers of a run stay put)
    monkeypatch.setattr(kernels.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with kernels.loop_threads(), kernels.big_gemm(kernels.BIG_GEMM):
        assert blas_threads() == 1
    assert blas_threads() == two_threads


def test_auto_on_a_quiet_machine_gives_every_thread(big_setting, monkeypatch, two_threads):
    big_setting("auto")
    monkeypatch.setattr(kernels.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setattr(kernels.os, "cpu_count", lambda: two_threads)
    with kernels.loop_threads(), kernels.big_gemm(kernels.BIG_GEMM):
        assert blas_threads() == two_threads
