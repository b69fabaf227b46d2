"""Clock and timers: deadline order, re-arming, cancelling, virtual and host time."""

from __future__ import annotations

import functools
import threading

from southbridge.core.clock import COMPACT_MIN, MAX_CALLBACKS_PER_PASS, HostClock, ManualClock


def test_timers_fire_in_deadline_order_with_now_at_their_deadline() -> None:
    c = ManualClock()
    fired: list[tuple[str, int]] = []

    def fire(name: str) -> None:
        fired.append((name, c.now()))

    for name, when in (("c", 300), ("a", 100), ("b", 200), ("a2", 100)):
        c.timer(functools.partial(fire, name), name).arm(when)
    assert c.next_deadline() == 100
    assert c.advance(250) == 250
    assert fired == [("a", 100), ("a2", 100), ("b", 200)]  # ties in arming order
    c.advance(50)
    assert fired[-1] == ("c", 300)
    assert c.next_deadline() is None


def test_timer_rearms_itself_periodically() -> None:
    c = ManualClock()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(c.now())
        if len(ticks) < 5:
            t.arm(c.now() + 1000)

    t = c.timer(tick)
    t.arm(1000)
    c.advance(10_000)
    assert ticks == [1000, 2000, 3000, 4000, 5000]


def test_cancel_and_rearm_replace_pending_deadline() -> None:
    c = ManualClock()
    hits: list[int] = []
    t = c.timer(lambda: hits.append(c.now()))
    t.arm(100)
    t.cancel()
    assert not t.armed
    c.advance(200)
    assert hits == []
    t.arm(500)
    t.arm(300)  # re-arming moves the deadline; the old one is dead
    c.advance(1000)
    assert hits == [300]


def test_past_deadline_fires_on_next_run_and_time_never_goes_back() -> None:
    c = ManualClock(start=1000)
    hits: list[int] = []
    c.timer(lambda: hits.append(c.now())).arm(10)
    assert c.set(500) == 1000  # backwards request: clock stays
    assert hits == [1000]
    assert c.step_next() is None


def test_step_next_moves_to_next_deadline() -> None:
    c = ManualClock()
    c.timer(lambda: None).arm(12345)
    assert c.step_next() == 12345


def test_timer_callback_exception_does_not_stop_the_clock() -> None:
    c = ManualClock()
    hits: list[int] = []

    def bad() -> None:
        raise RuntimeError("device bug")

    c.timer(bad).arm(1)
    c.timer(lambda: hits.append(1)).arm(2)
    c.advance(10)
    assert hits == [1]


def test_host_clock_thread_fires_timers_under_the_lock() -> None:
    c = HostClock()
    lock = threading.RLock()
    stop = threading.Event()
    done = threading.Event()
    owned: list[bool] = []

    def cb() -> None:
        owned.append(lock._is_owned())  # type: ignore[attr-defined]
        done.set()

    c.timer(cb).arm(c.now() + 1_000_000)
    th = threading.Thread(target=c.run, args=(stop, lock), daemon=True)
    th.start()
    assert done.wait(5)
    stop.set()
    c.wake()
    th.join(5)
    assert owned == [True] and not th.is_alive()
    assert c.now() > 0


# -- hostile timer programming (issue 15) ------------------------------------------------


def test_alternating_far_and_near_rearms_keep_the_heap_bounded() -> None:
    """A guest alternating a far and a near one-shot count re-arms one timer 200,000 times:
    the heap keeps at most 2 * live + COMPACT_MIN entries, and the live deadline still wins."""
    c = ManualClock()
    hits: list[int] = []
    t = c.timer(lambda: hits.append(c.now()))
    others = [c.timer(lambda: None) for _ in range(8)]
    for i, o in enumerate(others):
        o.arm(10**12 + i)
    peak = 0
    for i in range(200_000):
        t.arm(10**15 if i % 2 == 0 else 1000 + i)
        peak = max(peak, len(c._heap))
    assert peak <= 2 * 9 + COMPACT_MIN + 1
    c.advance(10**6)
    assert hits == [1000 + 199_999]
    assert c.next_deadline() == 10**12


def test_cancel_storm_keeps_the_heap_bounded() -> None:
    c = ManualClock()
    t = c.timer(lambda: None)
    for i in range(50_000):
        t.arm(i + 1)
        t.cancel()
    assert len(c._heap) <= COMPACT_MIN + 1
    assert c.next_deadline() is None


def test_set_bounded_stops_a_timer_storm_at_an_exact_instant() -> None:
    """A timer re-arming 1 ns ahead (an unclamped LAPIC periodic count of 1): a bounded
    step fires exactly the budget, each at its own deadline, and time stops at the last."""
    c = ManualClock()
    seen: list[int] = []

    def storm() -> None:
        seen.append(c.now())
        t.arm(c.now() + 1)

    t = c.timer(storm)
    t.arm(1)
    assert c.set_bounded(1_000_000, 1000) == (1000, False)
    assert seen == list(range(1, 1001))
    assert c.set_bounded(1500, 10_000) == (1500, True)  # budget not exhausted: reaches target
    assert len(seen) == 1500
    # A budget exactly used up with nothing else due still reaches the target.
    q = ManualClock()
    q.timer(lambda: None).arm(5)
    assert q.set_bounded(100, 1) == (100, True)


def test_host_run_due_fires_a_bounded_pass() -> None:
    """A timer that keeps re-arming in the past: one pass fires at most the cap and returns."""
    c = HostClock()
    count = 0

    def storm() -> None:
        nonlocal count
        count += 1
        if count < 20_000:  # a guard so an unbounded run_due still ends (and fails the test)
            t.arm(0)

    t = c.timer(storm)
    t.arm(0)
    fired = c.run_due()
    assert 1 <= fired <= MAX_CALLBACKS_PER_PASS
    assert count == fired


def test_timer_storm_on_the_host_clock_leaves_the_lock_to_other_threads() -> None:
    """The issue's freeze: a self-re-arming timer due at once, fired by the timer thread
    under the machine lock. A second (vCPU) thread must get the lock every time it asks."""
    c = HostClock()
    lock = threading.RLock()
    stop = threading.Event()
    halt = threading.Event()

    def storm() -> None:
        if not halt.is_set():
            t.arm(c.now())

    t = c.timer(storm)
    t.arm(0)
    th = threading.Thread(target=c.run, args=(stop, lock), daemon=True)
    th.start()
    got = 0
    try:
        for _ in range(20):
            if lock.acquire(timeout=5):
                got += 1
                lock.release()
    finally:
        halt.set()
        stop.set()
        c.wake()
        th.join(10)
    assert got == 20
    assert c.fired > 0 and c.pauses > 0
    assert not th.is_alive()


def test_host_clock_pause_freezes_time_and_timers_until_resume() -> None:
    """QMP stop stops machine time: now() holds its value and no timer comes due; resume
    goes on from the same instant (the stopped span never counts)."""
    from southbridge.core.clock import HostClock

    c = HostClock()
    fired: list[int] = []
    t = c.timer(lambda: fired.append(c.now()), "t")
    c.pause()
    frozen = c.now()
    t.arm(frozen + 1)  # due 1 ns later: never, while stopped
    assert c.stopped and c.now() == frozen and c.run_due() == 0
    c.pause()  # idempotent
    assert c.now() == frozen
    c.resume()
    assert not c.stopped and c.now() >= frozen
    while not fired:  # the next nanosecond of machine time comes at once
        c.run_due()
    assert fired[0] >= frozen + 1
    c.resume()  # idempotent
