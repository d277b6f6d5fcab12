"""One daemon per state folder and per address; SIGHUP does not stop it (issue 13, item 3).

Before: a second ``signerd run`` on the same state folder (its metrics on another port) started
and served the same gRPC port (SO_REUSEPORT), sharing one SQLite file and one HSM token; a busy
address said only "Address already in use"; the unit's ``ExecReload`` sent SIGHUP, which killed
the daemon without draining.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.daemon import Daemon, edit_config, init_state, signerd_cmd
from tests.support.rpc import pb
from tests.support.fixtures import DaemonFactory


def serving(d: Daemon) -> bool:
    stub = health_pb2_grpc.HealthStub(d.channel("platform"))
    ok = stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    return ok and d.custody().ListWallets(pb.ListWalletsRequest(), timeout=10) is not None


def run_once(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True,
                          text=True, timeout=90)


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, tmp_path: Path):
    yield from daemon_factory.run(path=tmp_path / "state")


def test_a_second_daemon_on_the_same_state_folder_exits_2_naming_the_holder(
        daemon: Daemon) -> None:
    state = daemon.state
    assert daemon.proc is not None
    expected = (f"signerd: state folder {state} is in use by another signerd (pid "
                f"{daemon.proc.pid}, lock file {state / 'signerd.lock'}); stop it first")
    # The same config (both say port 0: the second would get ports of its own), then a copy
    # of it in the same folder: the folder is what is locked.
    other = daemon.config.with_name("signerd-2.toml")
    shutil.copyfile(daemon.config, other)
    for cfg in (daemon.config, other):
        r = run_once(cfg)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.strip().splitlines() == [expected], r.stderr[-2000:]
        assert "listening on" not in r.stdout
    assert (state / "signerd.lock").read_text().strip() == str(daemon.proc.pid)
    assert serving(daemon)


def test_the_lock_goes_with_the_process_however_it_ends(daemon: Daemon) -> None:
    daemon.kill()  # SIGKILL: no clean-up ran, the kernel released the lock
    d = Daemon(daemon.config).start()
    try:
        assert serving(d)
    finally:
        assert d.stop() == 0
    d = Daemon(daemon.config).start()  # and after a clean stop
    assert serving(d)
    assert d.stop() == 0


@pytest.mark.parametrize("section, port, what", [
    ("server", "port", "gRPC"),  # the gRPC port is not shared, and a busy one is named
    ("metrics", "metrics_port", "metrics"),
], ids=["grpc", "metrics"])
def test_a_busy_listen_address_is_named(daemon: Daemon, tmp_path: Path, section: str, port: str,
                                        what: str) -> None:
    cfg = init_state(tmp_path / "other")
    address = f"127.0.0.1:{getattr(daemon, port)}"
    edit_config(cfg, section, listen=address)
    r = run_once(cfg)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == \
        f"signerd: cannot listen on {address} ({what}): Address already in use"
    assert serving(daemon)


def test_a_port_held_by_any_other_socket_is_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        address = f"127.0.0.1:{s.getsockname()[1]}"
        cfg = init_state(tmp_path / "s")
        edit_config(cfg, "server", listen=address)
        r = run_once(cfg)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == \
        f"signerd: cannot listen on {address} (gRPC): Address already in use"


def test_sighup_does_not_stop_the_daemon(daemon: Daemon) -> None:
    """signerd reloads nothing on SIGHUP (the unit no longer sends it): it logs that a
    changed configuration needs a restart and goes on serving."""
    assert daemon.proc is not None and daemon.log_path is not None
    for _ in range(2):
        daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert daemon.proc.poll() is None
        assert serving(daemon)
    log = daemon.log_path.read_text()
    assert log.count("SIGHUP: signerd reloads nothing") == 2
    assert daemon.stop() == 0  # SIGTERM still drains and exits 0


def test_sigusr1_writes_every_threads_stack_and_the_daemon_goes_on(daemon: Daemon) -> None:
    """For a daemon that stops answering: SIGUSR1 puts each thread's stack on stderr (the
    journal under systemd), and signerd keeps serving."""
    assert daemon.proc is not None and daemon.log_path is not None
    daemon.proc.send_signal(signal.SIGUSR1)
    deadline = time.time() + 10
    while "daemon.py" not in daemon.log_path.read_text() and time.time() < deadline:
        time.sleep(0.1)  # the main thread's stack (in daemon.py's run loop) comes last
    time.sleep(0.2)
    log = daemon.log_path.read_text()
    assert log.count("most recent call first") >= 3, log[-2000:]  # main, gRPC and own threads
    assert "signerd" in log and "daemon.py" in log
    assert daemon.proc.poll() is None and serving(daemon)
    assert daemon.stop() == 0


def test_sigterm_just_after_it_says_it_listens_drains_and_exits_0(tmp_path: Path) -> None:
    """The handlers are in place before the HSM, the store and the server start: a supervisor
    that stops signerd the moment it says it listens gets a drained exit 0, not a process
    killed by the signal."""
    cfg = init_state(tmp_path / "state")
    p = subprocess.Popen(signerd_cmd("run", "--config", str(cfg)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert "listening on" in line, line
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
