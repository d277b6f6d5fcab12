"""No secret leaves the daemon: after a full end-to-end run, the daemon's log, its metrics, every
RPC error it answered, the audit export and the store are searched for the HSM user PIN and SO
PIN, the operators' private keys, every TLS private key of the state folder and a seized key
imported during the run, each in the forms it could leak in (text, hex, base64, decimal, PEM).

The run covers the paths that handle secrets or report failures: Ethereum and Bitcoin transfers
signed after quorum, a rejection, refused approvals and calls, bad policies and keys, a seized-key
import (and a malformed one), the HSM token removed, a wrong PIN and a group-readable PIN file
at reconnect, then recovery.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                          load_pem_private_key)

from signerd.core.approval import sign_statement
from signerd.adapters.key_files import load_private
from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.governance import decide
from tests.support.rpc import pb
from tests.support.bitcoin import EXTERNAL, build_psbt, wallet
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.hsm import (NOT_SERVING, SERVING, health, remove_token, return_token, wait_for,
                               write_pin)

SEIZED_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


@dataclass
class Run:
    daemon: Daemon
    errors: list[str] = field(default_factory=list)
    metrics: str = ""
    export: bytes = b""
    logs: str = ""
    store: bytes = b""

    def expect_error(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
        try:
            fn(*args, **kw)
        except grpc.RpcError as e:
            self.errors.append(f"{e.code().name}: {e.details()}")
            self.errors += [f"{k}={v}" for k, v in (e.trailing_metadata() or ())]
            return e
        raise AssertionError("expected an RPC error")


def full_run(d: Daemon, run: Run) -> None:
    # Ethereum: submit, one reject elsewhere, approve to quorum, signed.
    w = eth_wallet(d)
    t = submit(d, w.id, tx_fields(nonce=1))
    decide(d, t.id, "inv1")
    assert decide(d, t.id, "cust1").state == pb.SIGNED
    t2 = submit(d, w.id, tx_fields(nonce=2))
    assert decide(d, t2.id, "judge1", pb.REJECT, reason="no court order").state == pb.REJECTED
    # Bitcoin: a PSBT signed after quorum.
    bw = wallet(d)
    psbt, _ = build_psbt(bw, [100_000], [(EXTERNAL, 90_000)])
    bt = d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=bw.id,
                                                             psbt=psbt.serialize()))
    decide(d, bt.id, "inv2")
    assert decide(d, bt.id, "cust2").state == pb.SIGNED
    # Refusals of every kind.
    t3 = submit(d, w.id, tx_fields(nonce=3))
    run.expect_error(d.custody("auditor").ListWallets, pb.ListWalletsRequest())
    run.expect_error(d.approval("inv1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t3.id, operator_id="inv1", decision=pb.APPROVE, signature=b"\x01" * 64))
    statement = d.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t3.id, decision=pb.APPROVE)).statement
    wrong_key = sign_statement(load_private(d.state / "operators" / "cust1.key"), statement)
    run.expect_error(d.approval("inv1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t3.id, operator_id="inv1", decision=pb.APPROVE, signature=wrong_key))
    run.expect_error(d.approval("inv1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t3.id, operator_id="cust1", decision=pb.APPROVE, signature=wrong_key))
    run.expect_error(d.custody().GetWallet, pb.GetWalletRequest(wallet_id="w_missing"))
    run.expect_error(d.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id, toml="name = ["))
    run.expect_error(d.admin().RegisterOperator, pb.RegisterOperatorRequest(
        id="eve", roles=["investigator"],
        public_key_pem=(d.state / "operators" / "inv1.key").read_bytes()))  # a private key!
    run.expect_error(d.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=bw.id, psbt=b"cHNidP8B" + b"A" * 40))
    # A seized key goes into the HSM; a malformed one is refused without echoing it.
    d.admin().ImportKey(pb.ImportKeyRequest(hex=SEIZED_HEX, chain=pb.ETHEREUM, chain_ids=[1],
                                            case_ref="CASE-SECRET", seizure_record="SR-1"))
    run.expect_error(d.admin().ImportKey, pb.ImportKeyRequest(
        hex=SEIZED_HEX[:-2] + "zz", chain=pb.ETHEREUM, chain_ids=[1], case_ref="CASE-SECRET2",
        seizure_record="SR-2"))
    # The HSM goes away; at reconnect the PIN is wrong, then the PIN file too open; then back.
    pin_file = d.state / "hsm" / "pin"
    good = pin_file.read_text()
    decide(d, t3.id, "inv1")
    remove_token(d)
    try:
        wait_for("NOT_SERVING", lambda: health(d) == NOT_SERVING)
    finally:
        write_pin(pin_file, "ffffffffffffffffffffffffffffffff\n")
        return_token(d)
    try:
        wait_for("a refused login", lambda: "is incorrect" in d.log_path.read_text())
        run.expect_error(decide, d, t3.id, "cust1")  # quorum, but no signature: UNAVAILABLE
        write_pin(pin_file, good, mode=0o644)
        wait_for("a refused PIN file", lambda: "readable by group" in d.log_path.read_text())
        run.expect_error(d.audit().GetHead, pb.GetHeadRequest())
    finally:
        write_pin(pin_file, good)
    wait_for("SERVING", lambda: health(d) == SERVING)
    wait_for("signed after recovery", lambda: d.custody().GetTransfer(
        pb.GetTransferRequest(transfer_id=t3.id)).state == pb.SIGNED)
    run.export = b"".join(c.data for c in d.audit().Export(pb.ExportRequest()))
    run.metrics = d.metrics()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cfg = init_state(tmp_path_factory.mktemp("secrets") / "state")
    edit_config(cfg, "hsm", probe_seconds=0.5)
    d = Daemon(cfg).start()
    r = Run(d)
    try:
        full_run(d, r)
    finally:
        assert d.stop() == 0
    r.logs = "\n".join(p.read_text() for p in sorted(d.state.glob("daemon-*.log")))
    r.store = b"".join(p.read_bytes() for p in d.state.glob("signerd.db*"))
    return r


# ---------------------------------------------------------------- what counts as a secret

def _binary_forms(raw: bytes) -> set[str]:
    return {raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
            .rstrip("="), str(int.from_bytes(raw, "big"))}


def _pem_forms(pem: str) -> set[str]:
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    return {"".join(body)} | {ln for ln in body if len(ln) >= 16}


def secrets_of(state: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name in ("pin", "so-pin"):
        text = (state / "hsm" / name).read_text().strip()
        out[f"hsm/{name}"] = {text, text.encode().hex(), base64.b64encode(text.encode()).decode()}
    for path in sorted(state.glob("operators/*.key")):
        key = load_private(path)
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        out[f"operators/{path.name}"] = _binary_forms(raw) | _pem_forms(path.read_text())
    ca_key = state.parent / f"{state.name}.ca" / "ca.key"  # beside the state folder
    for path in sorted(state.glob("pki/**/*.key")) + [ca_key]:
        key = load_pem_private_key(path.read_bytes(), None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            raw = key.private_numbers().private_value.to_bytes(32, "big")
        else:
            assert isinstance(key, ed25519.Ed25519PrivateKey)
            raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        out[str(path.relative_to(state.parent) if path == ca_key else path.relative_to(state))] \
            = _binary_forms(raw) | _pem_forms(path.read_text())
    out["imported seized key"] = _binary_forms(bytes.fromhex(SEIZED_HEX))
    out["wrong PIN tried at reconnect"] = {"ffffffffffffffffffffffffffffffff"}
    return out


def leaks(haystack: str, secrets: dict[str, set[str]]) -> list[str]:
    low = haystack.lower()
    return [name for name, forms in secrets.items()
            if any(f in haystack or (re.fullmatch(r"[0-9a-f]+", f) and f in low) for f in forms)]


def test_every_secret_of_the_state_folder_is_searched_for(run: Run) -> None:
    secrets = secrets_of(run.daemon.state)
    assert {"hsm/pin", "hsm/so-pin", "state.ca/ca.key", "pki/server.key",
            "pki/clients/platform.key", "operators/inv1.key", "imported seized key"} <= set(secrets)
    assert len([n for n in secrets if n.startswith("operators/")]) == 9
    assert all(len(f) >= 16 for forms in secrets.values() for f in forms)


def test_the_run_saw_what_it_is_meant_to(run: Run) -> None:
    codes = {e.split(":", 1)[0] for e in run.errors if ":" in e and "=" not in e.split(":")[0]}
    assert {"PERMISSION_DENIED", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE"} <= codes
    assert "is incorrect" in run.logs and "readable by group" in run.logs
    assert b"transfer.signed" in run.export and b"rpc.denied" in run.export
    assert "signerd_grpc_permission_denied_total" in run.metrics


@pytest.mark.parametrize("where", ["daemon log", "metrics", "RPC errors", "audit export",
                                   "store"])
def test_no_secret_in(run: Run, where: str) -> None:
    haystack = {
        "daemon log": run.logs,
        "metrics": run.metrics,
        "RPC errors": "\n".join(run.errors),
        "audit export": run.export.decode("utf-8", errors="replace"),
        "store": run.store.decode("latin-1"),
    }[where]
    assert haystack
    assert leaks(haystack, secrets_of(run.daemon.state)) == []


def test_the_search_finds_each_secret_when_it_is_there(run: Run) -> None:
    secrets = secrets_of(run.daemon.state)
    for name, forms in secrets.items():
        for form in forms:
            variants = [form] + ([form.upper()] if re.fullmatch(r"[0-9a-f]+", form) else [])
            for v in variants:
                assert name in leaks(f'{{"msg": "x", "detail": "{v}"}}', secrets), (name, v)
