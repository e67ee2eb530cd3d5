"""Running cases: here, in a pool of worker processes, or on a Dask cluster. Each case is
:func:`calibviz.io.evaluate_case` (a pure function of paths and options); results come back
to the caller in completion order through ``on_result``."""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from multiprocessing import get_context

from .interrupts import starting_children
from .io import Case, CaseResult, Problem, evaluate_case
from .options import EvalOptions

#: Starting a worker process costs about 1.5-2 s of CPU (imports, compiled kernels from the
#: cache; this process evaluates cases meanwhile); with the automatic choice, processes are
#: used only when the serial rest would take longer.
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
    at once when the parent dies (kill -9), instead of lingering with a case's memory. The
    garbage collector is tuned as in the ``calibviz`` command (:mod:`calibviz.gctune`; the
    pool's shutdown waits for every worker's exit)."""
    import numba

    from .gctune import tune_this_process
    from .interrupts import leave_ctrl_c_to_parent

    tune_this_process()
    leave_ctrl_c_to_parent()
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


#: Worker processes allowed per core (``--workers``, ``--scheduler local:N``): each holds a
#: case's arrays and its own imports (~100 MB); more than a few per core add memory and
#: start-up time, not speed.
PROCESSES_PER_CORE = 4


def check_processes(n: int, option: str) -> None:
    """``ValueError`` naming ``option`` when ``n`` worker processes exceed
    :data:`PROCESSES_PER_CORE` per core of this machine."""
    cores = default_workers()
    if n > PROCESSES_PER_CORE * cores:
        raise ValueError(f"{option}: {n} worker processes for this machine's {cores} "
                         f"core{'s' if cores != 1 else ''}; use at most "
                         f"{PROCESSES_PER_CORE * cores} ({PROCESSES_PER_CORE} per core: each "
                         "process holds a case's arrays and its own imports)")


def automatic_workers() -> int:
    """Processes for a run long enough to share: one per :data:`CASES_IN_FLIGHT` cores, as
    one process keeps that many busy (a case decoding while another is binned, on the
    kernel's threads). On two cores that is this process alone: a second one evaluated 40
    cases of 4 × 192×192×96 at 0.98× the rate of one, with 40 % more memory, and cases of
    3 × 64×64×32 to 3 × 160×160×80 at 0.89-1.04×."""
    return max(1, default_workers() // CASES_IN_FLIGHT)


def evaluate_cases(
    cases: list[Case],
    options: EvalOptions,
    *,
    workers: int | None,
    on_result: Callable[[CaseResult], None],
    client=None,
) -> int:
    """Evaluate ``cases`` (in ``workers`` processes when > 1: this one and ``workers - 1``
    started ones; with 1, here, two cases at a time: :func:`_evaluate_here`), calling
    ``on_result`` in this process as each one finishes, in completion order.
    ``workers=None`` chooses: the first two cases run here (the first may compile the
    kernels), and the rest go to :func:`automatic_workers` processes only if they would
    take more than :data:`SPAWN_WORTH_SECONDS` serially. Returns the number of processes
    used (1 = here).
    ``client``: a ``distributed.Client``; the cases then run on its cluster (``workers`` is
    ignored) and the number of worker threads is returned.
    """
    if client is not None:
        from .dask_backend import evaluate_on_cluster

        return evaluate_on_cluster(cases, options, client, on_result)
    if cases:
        warm_up()  # this process evaluates cases too (the first, or its share of a pool's)
    if workers is None:
        # the first case may compile the kernels (first run after install): time the second
        for _ in range(2):
            if not cases:
                return 1
            start = time.perf_counter()
            on_result(evaluate_case(cases[0], options))
            cases = cases[1:]
        estimate = (time.perf_counter() - start) * len(cases)
        workers = automatic_workers() if estimate > SPAWN_WORTH_SECONDS else 1
    if workers <= 1 or len(cases) <= 1:
        _evaluate_here(cases, options, on_result)
        return 1
    _evaluate_in_pool(cases, options, workers, on_result)
    return min(workers, len(cases))


class _CaseThread(threading.Thread):
    """One case evaluated in a daemon thread (a Ctrl-C never waits for it)."""

    def __init__(self, case: Case, options: EvalOptions, done: threading.Semaphore) -> None:
        super().__init__(name=f"calibviz-case-{case.case_id}", daemon=True)
        self.case, self.options, self.done = case, options, done
        self.result: CaseResult | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = evaluate_case(self.case, self.options)
        except BaseException as error:  # handed to the caller (MemoryError, a bug)
            self.error = error
        finally:
            self.done.release()


#: cases evaluated at the same time in this process (see :func:`_evaluate_here`)
CASES_IN_FLIGHT = 2


def _evaluate_here(cases: list[Case], options: EvalOptions, on_result) -> None:
    """Evaluate ``cases`` in this process, :data:`CASES_IN_FLIGHT` at a time in threads.

    One case is decoded (GIL-free ``.gz``/``.npz`` inflation) while the other is checked and
    binned, so the cores stay busy between a case's last channel and the next case's first;
    memory is that of two cases. ``on_result`` runs in this thread, in completion order.
    """
    if len(cases) <= 1:
        for case in cases:
            on_result(evaluate_case(case, options))
        return
    todo, running = deque(cases), []
    done = threading.Semaphore(0)
    while todo or running:
        while todo and len(running) < CASES_IN_FLIGHT:
            running.append(_CaseThread(todo.popleft(), options, done))
        done.acquire()
        finished = next(t for t in running if t.result is not None or t.error is not None)
        running.remove(finished)
        if finished.error is not None:
            raise finished.error
        on_result(finished.result)


def _evaluate_in_pool(cases, options, workers, on_result) -> None:
    """``workers`` processes evaluate ``cases``: this one and ``workers - 1`` started ones.

    This process evaluates cases itself while the others start (imports and compiled
    kernels: 1-2 s each) and between collecting their results; each started process has one
    case running and one queued (:func:`_share`). Every process's kernel uses its share of the
    cores. Should a started process die, its cases are that case's error and the rest are
    evaluated here.
    """
    threads = max(1, default_workers() // workers)
    started = min(workers, len(cases)) - 1
    pool = ProcessPoolExecutor(max_workers=started, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    todo, pending, broken = deque(cases), {}, False
    try:
        with _numba_threads(threads):
            while todo or pending:
                for future in [f for f in pending if f.done()]:
                    on_result(_pool_result(future, pending.pop(future)))
                while todo and len(pending) < _share(started, len(todo) + len(pending)) \
                        and not broken:
                    try:
                        with starting_children():  # a submit may start a process
                            future = pool.submit(evaluate_case, todo[0], options)
                        pending[future] = todo[0]
                        todo.popleft()
                    except BrokenProcessPool:
                        broken = True
                if todo:
                    on_result(evaluate_case(todo.popleft(), options))
                elif pending:
                    wait(pending, return_when=FIRST_COMPLETED)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _share(started: int, left: int) -> int:
    """Cases to have running or queued in ``started`` processes when ``left`` remain: one
    running and one waiting in each, but no more than their share of what is left (this
    process takes the rest)."""
    return min(2 * started, -(-left * started // (started + 1)))


def _pool_result(future, case: Case) -> CaseResult:
    try:
        return future.result()
    except Exception as error:  # a crash in a started process: this case's error
        return CaseResult(case.case_id, None, [Problem(
            case.case_id, case.prediction_name,
            f"case {case.case_id}: evaluation failed: {type(error).__name__}: {error}",
        )])


@contextmanager
def _numba_threads(threads: int):
    """This thread's kernels on ``threads`` threads for a while."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def check_cluster(scheduler: str | None, client, workers: int | None) -> None:
    """Refuse a scheduler that cannot be used (dask missing, given with --workers) before
    any case runs."""
    if scheduler is not None:
        from .dask_backend import check_usage

        check_usage(scheduler, client, workers)
    if client is not None:
        check_client(client)


def check_client(client) -> None:
    """``TypeError`` unless ``client`` is a ``distributed.Client``, ``ValueError`` when it is
    closed: said before any case runs, not as Dask's internal error."""
    if isinstance(client, str | os.PathLike) or not hasattr(client, "scheduler_info"):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__} "
                        f"{client!r}" + ("; for a scheduler address give "
                                         "distributed.Client(address)"
                                         if isinstance(client, str) else ""))
    if getattr(client, "status", "running") in ("closing", "closed"):
        raise ValueError("the Dask client is closed; open a new distributed.Client")


def cluster(scheduler: str | None, client):
    """A context giving the Dask client to evaluate with (None: here or a local pool)."""
    if scheduler is None:
        return nullcontext(client)
    from .dask_backend import connected

    return connected(scheduler)
