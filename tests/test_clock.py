"""Clock and timers: deadline order, re-arming, cancelling, virtual and host time."""

from __future__ import annotations

import functools
import threading

from southbridge.core.clock import HostClock, ManualClock


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
