"""The notifier that open streams wait on: a change or the end of the waiter's call wakes it."""
from __future__ import annotations

import threading
import time

from signerd.services.runtime import Notifier


def _open_call() -> threading.Event:
    """A call's liveness as the waiter asks it: set while the call is open."""
    active = threading.Event()
    active.set()
    return active


def _waiter(n: Notifier, seen: int, active: threading.Event) -> tuple[threading.Thread, list[int]]:
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(n.wait(seen, 60.0, active.is_set)),
                         daemon=True)
    t.start()
    time.sleep(0.05)  # the thread is (most likely) inside wait; either way the result holds
    return t, got


def test_a_change_wakes_a_waiter_with_the_new_version() -> None:
    n = Notifier()
    active = _open_call()
    t, got = _waiter(n, n.version, active)
    n.notify()
    t.join(10)
    assert not t.is_alive() and got == [1]


def test_a_poke_wakes_a_waiter_whose_call_has_ended_long_before_its_timeout() -> None:
    n = Notifier()
    active = _open_call()
    t, got = _waiter(n, n.version, active)
    active.clear()  # the call ends (gRPC's callback)...
    n.poke()        # ...and pokes the notifier
    t.join(10)
    assert not t.is_alive(), "the waiter slept on after its call ended"
    assert got == [0]


def test_a_poke_does_not_end_the_wait_of_a_call_that_is_still_open() -> None:
    n = Notifier()
    active = _open_call()
    t, got = _waiter(n, n.version, active)
    n.poke()
    t.join(0.3)
    assert t.is_alive() and got == []
    n.notify()
    t.join(10)
    assert got == [1]


def test_a_wait_ends_at_its_timeout_without_a_change() -> None:
    n = Notifier()
    t0 = time.monotonic()
    assert n.wait(n.version, 0.2) == 0
    assert time.monotonic() - t0 >= 0.2
