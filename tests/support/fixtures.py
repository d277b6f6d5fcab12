"""The one daemon factory of the tests: a real ``signerd run`` (real SoftHSM token, real gRPC
server over mTLS, real store) on a fresh state folder made by ``signerd init``.

tests/conftest.py imports the ``daemon_factory`` fixture from here, so every test module can
use it. A test module's own ``daemon`` fixture keeps its scope and its options and is one line:

    @pytest.fixture(scope="module")
    def daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
        yield from daemon_factory.run("limits", limits=LIMITS, clean_exit=True)

``run`` starts the daemon, yields it, and stops it when the fixture ends (at the end of the
fixture's own scope); ``start`` gives a started daemon the factory stops at the end of the
session if nothing stopped it before.

``in_process_app`` is the same for a module's ``app`` fixture: signerd's App in this process on
a fresh state folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.daemon import Daemon, edit_config, init_state


class DaemonFactory:
    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.started: list[Daemon] = []

    def state(self, name: str = "state", *init_args: str, path: Path | None = None,
              store_url: str = "", **sections: dict[str, Any]) -> Path:
        """A fresh state folder (``signerd init``: its own SoftHSM token, PKI, operators, SQLite
        unless ``store_url`` names another store), at ``path`` or in a new temporary folder
        named after ``name``; each keyword is a config section whose keys are set
        (``limits={"max_streams": 10}``). Returns the config file."""
        if path is None:
            path = self.tmp_path_factory.mktemp(name) / "state"
        if store_url:
            init_args = (*init_args, "--store-url", store_url)
        cfg = init_state(path, *init_args)
        for section, values in sections.items():
            edit_config(cfg, section, **values)
        return cfg

    def start(self, name: str = "state", *init_args: str, config: Path | None = None,
              path: Path | None = None, store_url: str = "", **sections: dict[str, Any]
              ) -> Daemon:
        """A started daemon on a fresh state folder (see :meth:`state`), or on ``config`` when
        given (an existing state folder; then no other option applies)."""
        if config is None:
            config = self.state(name, *init_args, path=path, store_url=store_url, **sections)
        elif init_args or path or store_url or sections:
            raise TypeError("config names an existing state folder: no other option applies")
        d = Daemon(config).start()
        self.started.append(d)
        return d

    def run(self, name: str = "state", *init_args: str, config: Path | None = None,
            path: Path | None = None, store_url: str = "", clean_exit: bool = False,
            **sections: dict[str, Any]) -> Iterator[Daemon]:
        """For a fixture to ``yield from``: the started daemon, stopped (SIGTERM) when the
        fixture ends; with ``clean_exit``, that stop must exit 0 (it drained)."""
        d = self.start(name, *init_args, config=config, path=path, store_url=store_url,
                       **sections)
        try:
            yield d
        finally:
            self.started.remove(d)
            rc = d.stop()
        if clean_exit:
            assert rc == 0, f"the daemon exited {rc} on SIGTERM, not 0 (it drains and exits 0)"

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


@pytest.fixture(scope="session")
def daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


def in_process_app(path: Path) -> Iterator[Any]:
    """For a module's ``app`` fixture (``yield from in_process_app(folder / "state")``):
    signerd's App in this process, started, on a fresh state folder at ``path`` (``signerd
    init``); stopped when the fixture ends. Another test of this process may have initialised
    SoftHSM with another token folder, and the library reads its config at C_Initialize, so the
    keystore is made to initialise it again for this token, and afterwards too for the next
    in-process user's."""
    from signerd.adapters import config as C
    from signerd.adapters import hsm
    from signerd.app import App

    cfg = C.load(init_state(path))
    a = App(cfg)  # sets SOFTHSM2_CONF to this state folder's token
    hsm._INITIALISED.pop(cfg.hsm.module, None)
    a.start()
    try:
        yield a
    finally:
        a.stop()
        hsm._INITIALISED.pop(cfg.hsm.module, None)
