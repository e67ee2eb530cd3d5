"""The compiled kernels' cache on a read-only installation: a writable fallback, or none,
never a traceback (a system-wide install run by an unprivileged user)."""

from __future__ import annotations

import numba
import numba.core.caching as caching
import pytest

from calibviz import binning


@pytest.fixture
def restore_cache_dir():
    before = numba.config.CACHE_DIR
    yield
    numba.config.CACHE_DIR = before


def _failing(times: int):
    calls = {"n": 0}

    class Cache:
        def __init__(self, function):
            calls["n"] += 1
            if calls["n"] <= times:
                raise RuntimeError("cannot cache function: no locator available")

    return Cache


def test_unwritable_package_folder_falls_back_to_a_temporary_cache(monkeypatch,
                                                                 restore_cache_dir):
    monkeypatch.setattr(caching, "FunctionCache", _failing(1))
    assert binning._cache_setting() is True
    assert "calibviz-numba" in numba.config.CACHE_DIR


def test_nothing_writable_compiles_in_memory(monkeypatch, restore_cache_dir):
    monkeypatch.setattr(caching, "FunctionCache", _failing(2))
    assert binning._cache_setting() is False
    assert numba.config.CACHE_DIR == ""
