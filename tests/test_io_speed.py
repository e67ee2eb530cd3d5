"""The faster paths give what the plain ones give: reading ahead (channel c + 1 read in a
thread while c is binned), the running argmax, the argmax confusion counts, the transposed
volume check on the argmax kept for Dice, the kernel warmed up in a thread."""

from __future__ import annotations

import os
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from calibviz import loop
from calibviz.io import discover_cases, evaluate_case
from calibviz.io.prefetch import ReadAhead
from calibviz.io.segmentation import argmax_confusion, track_argmax
from calibviz.io.source import Source
from calibviz.io.types import InputError
from calibviz.loop import _share, warm_up
from calibviz.options import EvalOptions
from calibviz.run import evaluate_folder
from calibviz.synthetic import make_case, write_label, write_nifti


class _Recording(Source):
    """A source whose reads take a while, record their order and catch overlapping reads."""

    def __init__(self, n_channels=4, fail_at=None, delay=0.02):
        self.n_channels, self.spatial_shape = n_channels, (3, 2, 2)
        self.stored_shape, self.dtype, self.path = self.spatial_shape, np.dtype("f4"), "x"
        self.reads, self.fail_at, self.delay = [], fail_at, delay
        self.busy, self.overlapped, self.closed = False, False, False
        self.threads = {}

    def channel(self, c):
        self.overlapped |= self.busy
        self.busy = True
        self.threads[c] = threading.get_ident()
        time.sleep(self.delay)
        self.reads.append(c)
        self.busy = False
        if c == self.fail_at:
            raise InputError(f"cannot read channel {c} of x", "x")
        return np.full(self.spatial_shape, c, dtype=np.float32)

    def close(self):
        assert not self.busy, "closed while a read was using it"
        self.closed = True


def test_channels_in_order_are_all_read_ahead_in_other_threads():
    inner = _Recording()
    source = ReadAhead(inner)
    got = [float(source.channel(c)[0, 0, 0]) for c in range(4)]
    assert got == [0, 1, 2, 3]
    assert inner.reads == [0, 1, 2, 3]  # nothing read twice, nothing past the end
    assert threading.get_ident() not in inner.threads.values()  # channel 0 too: from the start
    assert not inner.overlapped
    source.close()
    assert inner.closed


def test_out_of_order_channels_are_still_right():
    inner = _Recording(n_channels=3)
    source = ReadAhead(inner)
    order = [0, 0, 1, 2, 1, 2, 0]  # the softmax activation reads 0, then 0..C-1 again
    assert [float(source.channel(c)[0, 0, 0]) for c in order] == order
    assert not inner.overlapped
    source.close()


def test_attributes_are_the_wrapped_sources():
    inner = _Recording(n_channels=5)
    source = ReadAhead(inner)
    assert (source.n_channels, source.spatial_shape, source.path) == (5, (3, 2, 2), "x")
    assert source.integer is False and source.scale is None
    with pytest.raises(AttributeError):
        _ = source.extra_affines
    source.close()


def test_an_error_comes_with_its_channel_not_before():
    inner = _Recording(fail_at=2)
    source = ReadAhead(inner)
    source.channel(0)
    source.channel(1)  # channel 2 fails meanwhile, in the reading thread
    with pytest.raises(InputError, match="channel 2"):
        source.channel(2)
    source.close()


def test_close_waits_for_the_read_in_flight():
    inner = _Recording(delay=0.2)
    source = ReadAhead(inner)
    source.channel(0)  # channel 1 is being read now
    source.close()  # _Recording.close asserts nothing is reading
    assert inner.closed and inner.reads == [0, 1]
    unused = _Recording(delay=0.2)
    ReadAhead(unused).close()  # a case that fails its checks before reading any channel
    assert unused.closed and unused.reads == [0]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_running_argmax_matches_numpy_with_ties_and_nan(dtype):
    rng = np.random.default_rng(3)
    probs = rng.random((5, 7, 6, 4)).astype(np.float32)
    probs[3] = probs[1]  # ties: the earlier channel wins
    probs[2, ::3] = np.nan  # NaN never wins
    probs[:, 0, 0, 0] = np.nan
    best = np.full(probs.shape[1:], -np.inf, dtype=np.float32)
    argbest = np.zeros(probs.shape[1:], dtype=dtype)
    for c in range(len(probs)):
        track_argmax(best, argbest, probs[c], c)
    expected = np.argmax(np.where(np.isnan(probs), -np.inf, probs), axis=0)
    np.testing.assert_array_equal(argbest, expected)
    np.testing.assert_array_equal(best, np.nanmax(probs, axis=0, initial=-np.inf))


def _naive_confusion(argmax, channel_labels, labels, valid, targets):
    predicted = np.asarray(channel_labels)[argmax]
    keep = np.ones(labels.shape, bool) if valid is None else valid
    rows = []
    for members in targets:
        truth, pred = np.isin(labels, members) & keep, np.isin(predicted, members) & keep
        tp = int(np.sum(truth & pred))
        rows.append((tp, int(pred.sum()) - tp, int(truth.sum()) - tp,
                     int(keep.sum()) - int(truth.sum()) - int(pred.sum()) + tp))
    return np.array(rows)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize("argmax_type", [np.uint8, np.int16])  # int16: over 256 channels
def test_argmax_confusion_matches_a_naive_count(dtype, with_valid, argmax_type):
    rng = np.random.default_rng(7)
    shape = (9, 8, 5)
    low = -2 if np.dtype(dtype).kind == "i" else 0
    labels = rng.integers(low, 8, size=shape).astype(dtype)  # 3, 5..7 and negatives undeclared
    argmax = rng.integers(0, 4, size=shape).astype(argmax_type)
    valid = rng.random(shape) > 0.3 if with_valid else None
    channel_labels, targets = [0, 1, 2, 4], [[1], [2], [1, 2, 4]]
    resolved = SimpleNamespace(channel_values=[(v,) for v in channel_labels],
                               declared=[0, 1, 2, 4], targets=[SimpleNamespace(members=m)
                                                               for m in targets])
    for layout in (labels, np.asfortranarray(labels)):
        got = argmax_confusion(np.asarray(argmax, order="K"), resolved, layout, valid)
        np.testing.assert_array_equal(
            got, _naive_confusion(argmax, channel_labels, labels, valid, targets))


def test_warm_up_ignores_what_it_cannot_do():
    thread = warm_up("calibviz.no_such_module", kernel=True)
    thread.join(timeout=120)
    assert not thread.is_alive()


@pytest.mark.parametrize("dice", ["argmax", "threshold"])  # argmax kept for Dice, or not
def test_transposed_volume_is_flagged_with_either_dice_rule(tmp_path, dice):
    for case, swap in (("c0", False), ("c1", True)):
        labels, probs = make_case((16, 16, 6), 3, seed=4)
        if swap:
            probs = np.swapaxes(probs, 1, 2)
        write_label(tmp_path / "labels" / f"{case}.nii.gz", labels)
        write_nifti(tmp_path / "pred" / f"{case}.nii.gz", np.moveaxis(probs, 0, -1))
    result = evaluate_folder(tmp_path / "pred", tmp_path / "labels", dice=dice)
    flagged = {p.case for p in result.problems if "looks transposed" in p.message}
    assert flagged == {"c1"}
    assert result.options["dice_rule"] == dice


# ------------------------------------------------------------------ the local pool
def _small_folder(root, n=6):
    for i in range(n):
        labels, probs = make_case((10, 9, 6), 3, seed=i)
        write_label(root / "labels" / f"case{i}.nii.gz", labels)
        write_nifti(root / "pred" / f"case{i}.nii.gz", np.moveaxis(probs, 0, -1))
    return discover_cases(root / "pred", root / "labels", EvalOptions())[0]


def _here_or_die(case, options):
    """Records the cases evaluated in the test's process; with ``CALIBVIZ_TEST_DIE`` set, a
    started worker dies at its first case."""
    if os.getpid() == int(os.environ["CALIBVIZ_TEST_PARENT"]):
        _HERE.append(case.case_id)
    elif os.environ.get("CALIBVIZ_TEST_DIE"):
        os._exit(1)
    return evaluate_case(case, options)


_HERE: list[str] = []


def test_share_of_the_started_processes():
    assert [_share(1, left) for left in (1, 2, 3, 4, 40)] == [1, 1, 2, 2, 2]
    assert [_share(3, left) for left in (1, 4, 8, 40)] == [1, 3, 6, 6]


@pytest.mark.parametrize("cores, processes", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_a_long_run_starts_a_process_per_two_cores(tmp_path, monkeypatch, cores, processes):
    """One process keeps two cores busy (two cases in flight): the automatic choice starts
    one per two cores for a run long enough to share, none on two cores or fewer."""
    cases = _small_folder(tmp_path)
    monkeypatch.setattr(loop, "default_workers", lambda: cores)
    monkeypatch.setattr(loop, "SPAWN_WORTH_SECONDS", 0.0)  # any run is long enough
    pools = []
    monkeypatch.setattr(loop, "_evaluate_in_pool",
                        lambda todo, options, workers, on_result: pools.append(workers))
    used = loop.evaluate_cases(cases, EvalOptions(), workers=None, on_result=lambda r: None)
    assert pools == ([] if processes == 1 else [processes])
    assert used == (min(processes, len(cases) - 2) if processes > 1 else 1)


@pytest.mark.parametrize("die", [False, True])
def test_pool_evaluates_here_too_and_each_case_once(tmp_path, monkeypatch, die):
    cases = _small_folder(tmp_path)
    alone = {r.case_id: r for r in (evaluate_case(c, EvalOptions()) for c in cases)}
    monkeypatch.setenv("CALIBVIZ_TEST_PARENT", str(os.getpid()))
    monkeypatch.setenv("CALIBVIZ_TEST_DIE", "1" if die else "")
    monkeypatch.setattr(loop, "evaluate_case", _here_or_die)
    here = []
    monkeypatch.setattr(sys.modules[__name__], "_HERE", here)
    got = []
    used = loop.evaluate_cases(cases, EvalOptions(), workers=2, on_result=got.append)
    assert used == 2 and sorted(r.case_id for r in got) == sorted(alone)  # each once
    assert here and len(here) < len(cases)  # shared between this process and the other
    for result in got:
        if result.ok:
            assert result.stats.equals(alone[result.case_id].stats)
        else:  # the started process died, with the cases given to it
            assert die and result.case_id not in here
            assert "evaluation failed: BrokenProcessPool" in result.problems[0].message
    failed = [r.case_id for r in got if not r.ok]
    assert failed == [] if not die else (failed and len(here) == len(cases) - len(failed))


class _Overlap:
    """Stands in for evaluate_case: records how many cases run at once, in which threads."""

    def __init__(self, fail=None, delay=0.05, hold=None):
        self.lock, self.running, self.most, self.threads = threading.Lock(), 0, 0, set()
        self.fail, self.delay, self.hold = fail, delay, hold  # hold: (fast case id, Event)

    def __call__(self, case, options):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.hold is not None and case.case_id != self.hold[0]:
            self.hold[1].wait()  # runs until the test lets it go
        with self.lock:
            self.running -= 1
        if case.case_id == self.fail:
            raise MemoryError("a case that blows up")
        return evaluate_case(case, options)


def test_here_two_cases_are_in_flight_and_results_are_the_same(tmp_path, monkeypatch):
    cases = _small_folder(tmp_path)
    alone = {r.case_id: r for r in (evaluate_case(c, EvalOptions()) for c in cases)}
    fake = _Overlap()
    monkeypatch.setattr(loop, "evaluate_case", fake)
    got, callers = [], set()

    def on_result(result):
        callers.add(threading.get_ident())
        got.append(result)

    assert loop.evaluate_cases(cases, EvalOptions(), workers=1, on_result=on_result) == 1
    assert fake.most == loop.CASES_IN_FLIGHT == 2  # never more than two cases in memory
    assert callers == {threading.get_ident()}  # results are handed over in this thread
    assert threading.get_ident() not in fake.threads
    assert sorted(r.case_id for r in got) == sorted(alone)
    for result in got:
        assert result.stats.equals(alone[result.case_id].stats)


def test_here_an_exception_in_a_case_thread_reaches_the_caller(tmp_path, monkeypatch):
    cases = _small_folder(tmp_path)
    monkeypatch.setattr(loop, "evaluate_case", _Overlap(fail=cases[1].case_id))
    with pytest.raises(MemoryError, match="blows up"):
        loop.evaluate_cases(cases, EvalOptions(), workers=1, on_result=lambda r: None)


def test_here_an_interrupt_does_not_wait_for_the_cases_in_flight(tmp_path, monkeypatch):
    cases = _small_folder(tmp_path)
    release = threading.Event()
    fake = _Overlap(hold=(cases[0].case_id, release))  # the other case runs on and on
    monkeypatch.setattr(loop, "evaluate_case", fake)

    def interrupt(result):
        raise KeyboardInterrupt

    raised = []

    def run():
        try:
            loop.evaluate_cases(cases, EvalOptions(), workers=1, on_result=interrupt)
        except KeyboardInterrupt:
            raised.append(True)

    caller = threading.Thread(target=run, daemon=True)
    try:
        caller.start()
        caller.join(timeout=30)  # a loop that waited for the held case would still be here
        assert raised and not caller.is_alive()
        assert fake.running == 1  # the interrupt came with a case still in flight
        assert all(t.daemon for t in threading.enumerate()
                   if t.name.startswith("calibviz-case"))  # an exit never waits for it
    finally:
        release.set()
