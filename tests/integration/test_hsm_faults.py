"""HSM faults against a real daemon and a real SoftHSM token: the token missing at start or
removed while running (its folder moved away), a wrong PIN, a locked PIN and a slow HSM.

In every case health goes NOT_SERVING, signing RPCs answer UNAVAILABLE, no transfer is SIGNED
without its signature row, and once the fault is gone the daemon serves again and signs what
reached quorum meanwhile, checked by eth-account's own signature recovery. The monitor probes
every 0.5 s here.

SoftHSM cannot lock a user PIN, so the locked-PIN case runs the daemon on a tiny PKCS#11 shim
(compiled here from the C source below) that forwards every call to SoftHSM, except that while a
marker file exists the token reports CKF_USER_PIN_LOCKED and C_Login answers CKR_PIN_LOCKED.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable

import grpc
import pytest
from eth_account import Account
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signerd.daemon import find_softhsm_module
from signerd.adapters.hsm import DEFAULT_CALL_TIMEOUT
from tests.support.daemon import Daemon, edit_config, init_state, signerd_cmd
from tests.support.governance import decide
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.hsm import (NOT_SERVING, SERVING, health, remove_token, return_token, wait_for,
                               write_pin)
from tests.support.fixtures import DaemonFactory

PROBE = 0.5


def stays(what: str, pred: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred(), what
        time.sleep(0.1)


def db(d: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(d.state / "signerd.db")


def signature_rows(d: Daemon, transfer_id: str) -> int:
    with db(d) as c:
        return c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                         (transfer_id,)).fetchone()[0]


def assert_store_honest(d: Daemon) -> None:
    """No transfer is SIGNED without a stored signature, nor has a result without being SIGNED."""
    with db(d) as c:
        bad = c.execute("SELECT id FROM transfers t WHERE state = 'SIGNED' AND NOT EXISTS "
                        "(SELECT 1 FROM signatures s WHERE s.transfer_id = t.id)").fetchall()
        leaked = c.execute("SELECT id FROM transfers WHERE state != 'SIGNED' AND "
                           "(raw_tx != '' OR tx_hash != '')").fetchall()
    assert not bad and not leaked, (bad, leaked)


def state_of(d: Daemon, transfer_id: str) -> int:
    return d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id)).state


def half_approved(d: Daemon, nonce: int) -> tuple[pb.Wallet, pb.Transfer]:
    w = eth_wallet(d)
    t = submit(d, w.id, tx_fields(nonce=nonce))
    decide(d, t.id, "inv1")
    return w, t


def assert_signing_refused(d: Daemon, transfer_id: str) -> None:
    """The approval completing quorum is recorded, but the signature cannot be made."""
    e = rpc_error(decide, d, transfer_id, "cust1")
    assert e.code() == grpc.StatusCode.UNAVAILABLE, e.details()
    assert "HSM" in e.details()
    assert state_of(d, transfer_id) == pb.APPROVED
    assert signature_rows(d, transfer_id) == 0
    e = rpc_error(d.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-DOWN"))
    assert e.code() == grpc.StatusCode.UNAVAILABLE
    assert rpc_error(d.audit().GetHead, pb.GetHeadRequest()).code() == \
        grpc.StatusCode.UNAVAILABLE
    assert not d.admin().KeyStatus(pb.KeyStatusRequest()).hsm_up
    assert "signerd_hsm_up 0.0" in d.metrics()
    assert_store_honest(d)


def assert_signed_after_recovery(d: Daemon, w: pb.Wallet, transfer_id: str) -> None:
    wait_for("health SERVING", lambda: health(d) == SERVING)
    wait_for("the approved transfer signed", lambda: state_of(d, transfer_id) == pb.SIGNED)
    t = d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id))
    assert Account.recover_transaction(bytes.fromhex(t.raw_tx)) == w.address
    assert signature_rows(d, transfer_id) == 1
    assert "signerd_hsm_up 1.0" in d.metrics()
    assert_store_honest(d)


def log_messages(d: Daemon) -> list[str]:
    assert d.log_path is not None
    return [json.loads(line)["msg"] for line in d.log_path.read_text().splitlines()
            if line.startswith("{")]


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("hsmfault", hsm={"probe_seconds": PROBE}, clean_exit=True)


def test_token_removed_while_running_then_back(daemon: Daemon) -> None:
    w, t = half_approved(daemon, nonce=1)
    remove_token(daemon)
    try:
        wait_for("health NOT_SERVING", lambda: health(daemon) == NOT_SERVING)
        assert_signing_refused(daemon, t.id)
        # Reads that need no HSM keep working.
        assert daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).id == w.id
    finally:
        return_token(daemon)
    assert_signed_after_recovery(daemon, w, t.id)


def test_wrong_pin_or_loose_pin_file_at_reconnect_keep_it_down(daemon: Daemon) -> None:
    w, t = half_approved(daemon, nonce=2)
    pin_file = daemon.state / "hsm" / "pin"
    good = pin_file.read_text()
    wrong = "0123456789abcdef0123456789abcdef\n"
    remove_token(daemon)
    try:
        wait_for("health NOT_SERVING", lambda: health(daemon) == NOT_SERVING)
        write_pin(pin_file, wrong)
    finally:
        return_token(daemon)
    try:
        stays("NOT_SERVING with a wrong PIN", lambda: health(daemon) == NOT_SERVING, 8 * PROBE)
        assert_signing_refused(daemon, t.id)
        msgs = log_messages(daemon)
        refused = [m for m in msgs if m.endswith(f"the PIN in {pin_file} is incorrect")]
        assert len(refused) == 1, "the token must see the wrong PIN once, never again"
        assert any("not tried again until the file changes" in m for m in msgs)
        write_pin(pin_file, good, mode=0o640)  # the right PIN, but others may read the file
        stays("NOT_SERVING with a group-readable PIN file", lambda: health(daemon) == NOT_SERVING,
              4 * PROBE)
        assert any("readable by group or others" in m for m in log_messages(daemon))
    finally:
        write_pin(pin_file, good)
    assert_signed_after_recovery(daemon, w, t.id)
    text = daemon.log_path.read_text()
    assert wrong.strip() not in text and good.strip() not in text


def test_token_missing_at_start_exits_with_a_reason_then_starts_once_back(tmp_path: Path
                                                                          ) -> None:
    cfg = init_state(tmp_path / "state")
    d = Daemon(cfg)
    with db(d) as c:
        events = c.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    remove_token(d)
    r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("signerd:")]
    assert len(lines) == 1 and "token 'signerd' is not available" in lines[0], r.stderr
    with db(d) as c:
        assert c.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == events
    return_token(d)  # under systemd, Restart=on-failure starts it again
    d.start()
    try:
        assert health(d) == SERVING
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------- a locked PIN (PKCS#11 shim)

SHIM_C = r"""
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>
typedef unsigned long CK_ULONG;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { CK_VERSION version; void *fn[68]; } FUNCS;  /* CK_FUNCTION_LIST, v2.40 */
typedef CK_ULONG (*get_list_t)(FUNCS **);
typedef CK_ULONG (*token_info_t)(CK_ULONG, unsigned char *);
typedef CK_ULONG (*login_t)(CK_ULONG, CK_ULONG, unsigned char *, CK_ULONG);
typedef CK_ULONG (*init_t)(void *);
static FUNCS *real;
static FUNCS mine;
static int locked(void) { return access(LOCK_FILE, F_OK) == 0; }
static CK_ULONG get_token_info(CK_ULONG slot, unsigned char *info) {  /* C_GetTokenInfo */
  CK_ULONG rv = ((token_info_t)real->fn[6])(slot, info);
  if (rv == 0 && locked()) *(CK_ULONG *)(info + 96) |= 0x40000UL;  /* CKF_USER_PIN_LOCKED */
  return rv;
}
static CK_ULONG login(CK_ULONG s, CK_ULONG user, unsigned char *pin, CK_ULONG len) {  /* C_Login */
  if (user == 1 && locked()) return 0xA4UL;  /* CKU_USER: CKR_PIN_LOCKED */
  return ((login_t)real->fn[18])(s, user, pin, len);
}
static int load(void) {
  if (real) return 0;
  void *h = dlopen(REAL_MODULE, RTLD_NOW | RTLD_LOCAL);
  get_list_t g = h ? (get_list_t)dlsym(h, "C_GetFunctionList") : 0;
  if (!g || g(&real) != 0) return -1;
  memcpy(&mine, real, sizeof mine);
  mine.fn[6] = (void *)get_token_info;
  mine.fn[18] = (void *)login;
  return 0;
}
CK_ULONG C_GetFunctionList(FUNCS **out) { if (load()) return 5UL; *out = &mine; return 0; }
CK_ULONG C_Initialize(void *a) { if (load()) return 5UL; return ((init_t)real->fn[0])(a); }
CK_ULONG C_Finalize(void *a) { if (load()) return 5UL; return ((init_t)real->fn[1])(a); }
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the PIN-locking PKCS#11 shim")
    folder = tmp_path_factory.mktemp("shim")
    lock = folder / "pin-locked"
    (folder / "shim.c").write_text(SHIM_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(folder / "shim.so"),
                    str(folder / "shim.c"), f'-DLOCK_FILE="{lock}"',
                    f'-DREAL_MODULE="{find_softhsm_module()}"', "-ldl"], check=True, timeout=120)
    return folder / "shim.so", lock


def test_locked_pin_at_start_and_while_reconnecting(tmp_path: Path, shim: tuple[Path, Path]
                                                    ) -> None:
    module, lock = shim
    cfg = init_state(tmp_path / "state")
    edit_config(cfg, "hsm", module=str(module), probe_seconds=PROBE)
    lock.touch()
    try:
        r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and "user PIN of token signerd is locked" in r.stderr, r.stderr
    finally:
        lock.unlink()
    d = Daemon(cfg).start()
    try:
        assert health(d) == SERVING
        w, t = half_approved(d, nonce=1)
        lock.touch()  # locked meanwhile; the live login is not affected until it is lost
        remove_token(d)
        try:
            wait_for("health NOT_SERVING", lambda: health(d) == NOT_SERVING)
        finally:
            return_token(d)
        stays("NOT_SERVING with the PIN locked", lambda: health(d) == NOT_SERVING, 6 * PROBE)
        assert_signing_refused(d, t.id)
        assert any("user PIN of token signerd is locked" in m for m in log_messages(d))
        lock.unlink()  # the security officer unlocks it
        assert_signed_after_recovery(d, w, t.id)
    finally:
        lock.unlink(missing_ok=True)
        assert d.stop() == 0


# ---------------------------------------------------------------- a slow HSM

def test_slow_hsm_counts_as_down_and_nothing_is_signed_late(tmp_path: Path) -> None:
    cfg = init_state(tmp_path / "state")
    edit_config(cfg, "hsm", probe_seconds=PROBE)
    d = Daemon(cfg).start()
    try:
        w, t = half_approved(d, nonce=1)
    finally:
        assert d.stop() == 0
    edit_config(cfg, "testing", hsm_delay_seconds=DEFAULT_CALL_TIMEOUT + 0.5)
    d.start()
    try:
        wait_for("health NOT_SERVING", lambda: health(d) == NOT_SERVING, timeout=20)
        t0 = time.monotonic()
        assert d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id)).id == t.id
        assert time.monotonic() - t0 < 1.0, "reads must not wait behind the slow HSM"
        assert_signing_refused(d, t.id)
        assert any("HSM too slow" in m for m in log_messages(d))
        stays("still NOT_SERVING while slow", lambda: health(d) == NOT_SERVING, 4 * PROBE)
        assert state_of(d, t.id) == pb.APPROVED and signature_rows(d, t.id) == 0
    finally:
        assert d.stop() == 0
    edit_config(cfg, "testing", hsm_delay_seconds=0.0)
    d.start()  # the HSM is fast again: recovery signs what reached quorum
    try:
        assert_signed_after_recovery(d, w, t.id)
    finally:
        assert d.stop() == 0
