"""What the services may use of the running daemon, as a protocol: the services depend on this,
never on ``App``, so ``app`` wires them without an import cycle (App -> services -> runtime)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, Callable, Protocol

from signerd.adapters.config import Config
from signerd.adapters.hsm import KeyInfo, Keystore
from signerd.adapters.metrics import Metrics
from signerd.adapters.store import Store
from signerd.core.errors import SignerError
from .ledger import Ledger


class Notifier:
    """Wakes watchers when a transfer or a proposal changes (in this process)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    @property
    def version(self) -> int:
        return self._version

    def poke(self) -> None:
        """Wake every waiter without a change, so that each asks again whether its call is
        still open (a stream's end: its place is given back at once, not after ``timeout``)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float, active: Callable[[], bool] = lambda: True) -> int:
        """The version once it differs from ``seen``, ``active()`` turns false, or ``timeout``
        seconds have passed, whichever comes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._version == seen and active():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._version


class Runtime(Protocol):
    """The daemon as the services see it (``App`` implements it)."""

    config: Config
    store: Store
    ledger: Ledger
    metrics: Metrics
    notifier: Notifier
    keystore: Keystore
    instance_id: str
    audit_public_key: bytes  # signerd's audit key, pinned by the genesis: seals verify under it
    transfers: Any
    proposals: Any
    wallets: Any

    def hsm_generate(self, label: str) -> KeyInfo: ...

    def hsm_sign_start(self, jobs: list[tuple[str, bytes]], *, background: bool = False
                       ) -> Callable[[], list[tuple[int, int] | SignerError]]: ...

    def seal(self, kind: str, record: dict[str, Any]) -> str: ...

    def refresh_gauges(self) -> None: ...

    def ended(self, object_ids: Iterable[str]) -> set[str]: ...

    def signed(self, object_ids: Iterable[str]) -> set[str]: ...

    def vetoes(self, wallet_id: str, transaction: str, *, verify: bool = True
               ) -> tuple[tuple[str, str], ...]: ...
