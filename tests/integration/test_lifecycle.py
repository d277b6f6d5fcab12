"""One daemon per state folder and per address; SIGHUP does not stop it (issue 13, item 3).

Before: a second ``signerd run`` on the same state folder (its metrics on another port) started
and served the same gRPC port (SO_REUSEPORT), sharing one SQLite file and one HSM token; a busy
address said only "Address already in use"; the unit's ``ExecReload`` sent SIGHUP, which killed
the daemon without draining.
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.daemon import Daemon, edit_config, init_state, signerd_cmd
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.governance import decide
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


# ---------------------------------------------------------------- a state folder moves

def absolute_paths_inside(state: Path) -> dict[str, str]:
    """Every text file of ``state`` that names the folder's own absolute path, by file."""
    found = {}
    for p in sorted(state.rglob("*")):
        if p.is_file() and p.suffix != ".log":
            text = p.read_bytes().decode("utf-8", "replace")
            if str(state) in text:
                found[str(p.relative_to(state))] = text
    return found


def log_levels(d: Daemon) -> list[str]:
    assert d.log_path is not None
    return [json.loads(line)["level"] for line in d.log_path.read_text().splitlines()
            if line.startswith("{")]


def sign_one_transfer(d: Daemon) -> None:
    """A key made in the HSM, a transfer approved by two operators and signed by the HSM."""
    w = eth_wallet(d)
    t = submit(d, w.id, tx_fields())
    decide(d, t.id, "inv1")
    t = decide(d, t.id, "cust1")
    assert t.state == pb.SIGNED and t.raw_tx


def test_a_moved_state_folder_starts_from_its_new_place_and_signs(tmp_path: Path) -> None:
    """SoftHSM reads a relative token folder against the process's working directory, so
    softhsm2.conf names it absolute: the one absolute path of the state folder inside it.
    signerd writes it again at start when the folder has moved, and everything else in the
    folder is relative to it."""
    old = tmp_path / "old" / "state"
    init_state(old)
    assert set(absolute_paths_inside(old)) == {"hsm/softhsm2.conf"}
    new = tmp_path / "moved" / "state"
    new.parent.mkdir()
    shutil.move(old, new)
    assert not old.exists()
    d = Daemon(new / "signerd.toml").start()
    try:
        assert serving(d)
        sign_one_transfer(d)
        conf = (new / "hsm" / "softhsm2.conf").read_text()
        assert f"directories.tokendir = {new / 'hsm' / 'tokens'}\n" in conf
        assert str(old) not in conf
        assert "the state folder moved" in d.log_path.read_text()  # type: ignore[union-attr]
        assert "warning" not in log_levels(d) and "error" not in log_levels(d)
    finally:
        assert d.stop() == 0
    d = Daemon(new / "signerd.toml").start()  # and once in place, nothing more to do
    try:
        assert serving(d)
        assert "the state folder moved" not in d.log_path.read_text()  # type: ignore[union-attr]
    finally:
        assert d.stop() == 0


def test_a_copied_state_folder_uses_its_own_token_not_the_originals(tmp_path: Path) -> None:
    """A copy started beside its original (a restore test, say) must not sign with the
    original's token: the copy's config is written to name the copy's own token folder."""
    original = tmp_path / "original"
    init_state(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = sorted(p.name for p in (original / "hsm" / "tokens").rglob("*"))
    d = Daemon(copy / "signerd.toml").start()
    try:
        eth_wallet(d)  # a key generated in the copy's token
    finally:
        assert d.stop() == 0
    assert sorted(p.name for p in (original / "hsm" / "tokens").rglob("*")) == before
    assert sorted(p.name for p in (copy / "hsm" / "tokens").rglob("*")) != before
    assert str(original) not in (copy / "hsm" / "softhsm2.conf").read_text()


def test_a_hand_written_softhsm_config_is_left_as_it_is(tmp_path: Path) -> None:
    """Only signerd's own SoftHSM config is written again; one an operator edited (another
    token folder on purpose, another log level) is theirs."""
    from signerd.adapters.hsm import place_softhsm_conf, softhsm_conf_text

    hsm = tmp_path / "hsm"
    (hsm / "tokens").mkdir(parents=True)
    conf = hsm / "softhsm2.conf"
    edited = softhsm_conf_text(Path("/elsewhere/tokens")).replace("ERROR", "INFO")
    conf.write_text(edited)
    assert place_softhsm_conf(conf) is None and conf.read_text() == edited
    conf.write_text(softhsm_conf_text(Path("/elsewhere/tokens")))
    assert place_softhsm_conf(conf) == Path("/elsewhere/tokens")
    assert conf.read_text() == softhsm_conf_text(hsm.resolve() / "tokens")
    assert place_softhsm_conf(conf) is None  # in place: nothing to do
