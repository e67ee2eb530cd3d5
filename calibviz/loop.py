"""Running cases: here, in a pool of worker processes, or on a Dask cluster. Each case is
:func:`calibviz.io.evaluate_case` (a pure function of paths and options); results come back
to the caller in completion order through ``on_result``."""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import nullcontext
from multiprocessing import get_context

from .io import Case, CaseResult, Problem, evaluate_case
from .options import EvalOptions

#: Starting worker processes costs about 1.5 s (imports, compiled kernels from the cache);
#: with the automatic choice, processes are used only when the serial rest would take longer.
SPAWN_WORTH_SECONDS = 3.0


def warm_up(*modules: str, kernel: bool = True) -> threading.Thread:
    """Start in a daemon thread what would otherwise hold up the run later: the binning
    kernel loaded from Numba's cache (about 1 s of CPU in a fresh process, before the first
    case can bin) and the ``modules`` imported (``calibviz.report`` imports pandas). The
    first case's reading (GIL-free decoding) overlaps it; an error here is ignored (the
    case meets it again and reports it). Returns the thread."""
    thread = threading.Thread(target=_warm, args=(modules, kernel), daemon=True,
                              name="calibviz-warm-up")
    thread.start()
    return thread


def _warm(modules: tuple[str, ...], kernel: bool) -> None:
    try:
        if kernel:
            import numpy as np

            from .binning import BinAccumulator

            BinAccumulator(["warm-up"], precision=np.float32).add_class(
                0, np.zeros(1, np.float32), np.zeros(1, np.uint8), label_value=1)
        for module in modules:
            importlib.import_module(module)
    except Exception:  # noqa: S110 - only a head start: the run meets the error itself
        pass


def _init_worker(threads: int, parent: int) -> None:
    """Worker set-up: share the cores between workers; leave Ctrl-C to the parent, which
    stops the run (a worker finishes its case quietly instead of printing a traceback); exit
    at once when the parent dies (kill -9), instead of lingering with a case's memory."""
    import signal

    import numba

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    warm_up()


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.25)
        if os.getppid() != parent:
            os._exit(1)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def evaluate_cases(
    cases: list[Case],
    options: EvalOptions,
    *,
    workers: int | None,
    on_result: Callable[[CaseResult], None],
    client=None,
) -> int:
    """Evaluate ``cases`` (in ``workers`` processes when > 1), calling ``on_result`` in this
    process as each one finishes, in completion order. ``workers=None`` chooses: the first
    case runs here, and the rest go to one process per core only if they would take more
    than :data:`SPAWN_WORTH_SECONDS` serially. Returns the number of processes used (1 = here).
    ``client``: a ``distributed.Client``; the cases then run on its cluster (``workers`` is
    ignored) and the number of worker threads is returned.
    """
    if client is not None:
        from .dask_backend import evaluate_on_cluster

        return evaluate_on_cluster(cases, options, client, on_result)
    if cases and (workers is None or workers <= 1 or len(cases) <= 1):
        warm_up()  # the first case is evaluated here
    if workers is None:
        if not cases:
            return 1
        start = time.perf_counter()
        on_result(evaluate_case(cases[0], options))
        cases = cases[1:]
        estimate = (time.perf_counter() - start) * len(cases)
        workers = default_workers() if estimate > SPAWN_WORTH_SECONDS else 1
    if workers <= 1 or len(cases) <= 1:
        for case in cases:
            on_result(evaluate_case(case, options))
        return 1
    _evaluate_in_pool(cases, options, workers, on_result)
    return min(workers, len(cases))


def _evaluate_in_pool(cases, options, workers, on_result) -> None:
    threads = max(1, default_workers() // workers)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(cases)), mp_context=get_context("spawn"),
        initializer=_init_worker, initargs=(threads, os.getpid()),
    )
    pending = {pool.submit(evaluate_case, case, options): case for case in cases}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                case = pending.pop(future)
                try:
                    result = future.result()
                except Exception as error:  # a crash in a worker is one skipped case
                    result = CaseResult(case.case_id, None, [Problem(
                        case.case_id, case.prediction_name,
                        f"case {case.case_id}: evaluation failed: "
                        f"{type(error).__name__}: {error}",
                    )])
                on_result(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def check_cluster(scheduler: str | None, client, workers: int | None) -> None:
    """Refuse a scheduler that cannot be used (dask missing, given with --workers) before
    any case runs."""
    if scheduler is not None:
        from .dask_backend import check_usage

        check_usage(scheduler, client, workers)


def cluster(scheduler: str | None, client):
    """A context giving the Dask client to evaluate with (None: here or a local pool)."""
    if scheduler is None:
        return nullcontext(client)
    from .dask_backend import connected

    return connected(scheduler)
