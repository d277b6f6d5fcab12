"""Operators whose keys live on a token: a second SoftHSM token, made here, stands in for each
operator's smartcard (its own token folder, label and PIN, apart from the daemon's HSM). Keys
are generated on it by `signerctl operator keygen --pkcs11`, registered through the governance
quorum, and used by the real `signerctl` for proposal and transfer approvals that reach SIGNED
through a real daemon; the signed output is checked by eth-account and python-bitcointx.
Then every way it must refuse: the token absent, a wrong PIN, a key the URI does not find, a key
of another type than the registered one, a PIN on the command line; and what one person alone
could try: a store writer changing an operator's key row, a registration that needs a token-held
key without the declaration, one key in two encodings for two operators."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account

from signerd.core import operator_keys
from signerd.core.approval import sign_statement, statement_digest
from signerd.core.operator_keys import KeyType
from signerd.daemon import find_softhsm_module
from tests.support.attacks import eth_transfer, eth_wallet, operator_cert, sqlite_writer
from tests.support.bitcoin import EXTERNAL, build_psbt, submit, verify_with_bitcointx, wallet
from tests.support.cli import ctl
from tests.support.daemon import Daemon, signerctl_cmd
from tests.support.fixtures import DaemonFactory
from tests.support.governance import decide, govern
from tests.support.rpc import pb, rpc_error

MODULE = find_softhsm_module()
PIN = "314159"
SO_PIN = "27182818"
GOVERNANCE_KEYS = ("admin1", "admin2")


class Card:
    """An operator's smartcard: a SoftHSM token in a folder of its own, named by its own
    SOFTHSM2_CONF, with a PIN file for the URI's pin-source."""

    def __init__(self, folder: Path, label: str):
        self.folder = folder
        self.label = label
        (folder / "tokens").mkdir(parents=True)
        self.conf = folder / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {folder / 'tokens'}\n"
                             "objectstore.backend = file\nlog.level = ERROR\n")
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin",
                        PIN, "--so-pin", SO_PIN], env=self.env(), check=True,
                       capture_output=True, timeout=60)
        self.pin_file = folder / "pin"
        self.write_pin(self.pin_file, PIN)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    @staticmethod
    def write_pin(path: Path, pin: str, mode: int = 0o600) -> Path:
        path.write_text(pin + "\n")
        path.chmod(mode)
        return path

    def uri(self, obj: str, pin_file: Path | None = None, token: str | None = None) -> str:
        return (f"pkcs11:token={token or self.label};object={obj}"
                f"?pin-source=file:{pin_file or self.pin_file}")


def card_ctl(d: Daemon, card: Card, *args: str, ok: bool = True,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """signerctl on the operator's machine, with the card's PKCS#11 module configuration."""
    r = subprocess.run(
        signerctl_cmd("--config", str(d.config), "--server", f"127.0.0.1:{d.port}", *args),
        capture_output=True, text=True, timeout=60, input=stdin, cwd=d.state.parent,
        env=card.env())
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def keygen(d: Daemon, card: Card, obj: str, kind: str) -> dict:
    out = json.loads(card_ctl(
        d, card, "--json", "operator", "keygen", "--pkcs11", card.uri(obj), "--type", kind,
        "--pkcs11-module", MODULE, "--out", str(card.folder / f"{obj}.pub")).stdout)
    assert out["key_type"] == kind and not out["extractable"] and out["sensitive"]
    return out


def register(d: Daemon, card: Card, op_id: str, role: str, pub: str, device: str,
             approvers: tuple[str, ...] = GOVERNANCE_KEYS) -> dict:
    """operator add through signerctl, approved with signerctl by ``approvers`` (an approver
    named as ``card:OBJECT`` approves with its key on the card)."""
    p = json.loads(ctl(d, "--json", "operator", "add", op_id, "--role", role, "--pubkey", pub,
                       "--token-held", device).stdout)
    assert p["state"] == "PENDING_APPROVAL", p
    for who in approvers:
        if who.startswith("card:"):
            p = json.loads(card_ctl(d, card, "--json", "--as", who[5:], "proposal", "approve",
                                    p["id"], "--key", card.uri(who[5:]), "--pkcs11-module",
                                    MODULE, "--yes").stdout)
        else:
            p = json.loads(ctl(d, "--json", "--as", who, "proposal", "approve", p["id"],
                               "--key", str(d.state / "operators" / f"{who}.key"),
                               "--yes").stdout)
    assert p["state"] == "APPROVED", p
    operator_cert(d, op_id)
    return p


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    yield from daemon_factory.run("optokens")


@pytest.fixture(scope="module")
def card(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Card:
    return Card(tmp_path_factory.mktemp("card"), "operator-card")


@pytest.fixture(scope="module")
def operators(daemon: Daemon, card: Card) -> dict[str, dict]:
    """On the card: tokadm (admin, P-256), tokcust (custody officer, P-256) and tokinv
    (investigator, Ed25519); tokadm approves tokcust's and tokinv's registrations with its key on
    the card, beside admin1's file key."""
    keys = {"tokadm": keygen(daemon, card, "tokadm", "p256"),
            "tokcust": keygen(daemon, card, "tokcust", "p256"),
            "tokinv": keygen(daemon, card, "tokinv", "ed25519")}
    device = keys["tokadm"]["device"]
    assert "SoftHSM" in device and card.label in device
    register(daemon, card, "tokadm", "admin", keys["tokadm"]["public_key"], device)
    for op, role in (("tokcust", "custody_officer"), ("tokinv", "investigator")):
        register(daemon, card, op, role, keys[op]["public_key"], device,
                 approvers=("admin1", "card:tokadm"))
    return keys


def approve(d: Daemon, card: Card, transfer_id: str, op: str, *extra: str,
            ok: bool = True) -> subprocess.CompletedProcess[str]:
    return card_ctl(d, card, "--json", "--as", op, "transfer", "approve", transfer_id, "--key",
                    card.uri(op), "--pkcs11-module", MODULE, "--yes", *extra, ok=ok)


def test_registered_token_operators_as_the_ledger_proves_them(daemon: Daemon, card: Card,
                                                              operators: dict) -> None:
    auth = daemon.governance().GetAuthority(pb.GetAuthorityRequest())
    ops = {o.id: o for o in auth.operators}
    assert (ops["tokcust"].key_type, ops["tokinv"].key_type, ops["inv1"].key_type) == (
        "p256", "ed25519", "ed25519")
    assert ops["tokcust"].token_held == operators["tokcust"]["device"]
    assert ops["inv1"].token_held == ""
    assert ops["tokcust"].fingerprint == operators["tokcust"]["fingerprint"]
    listing = ctl(daemon, "operator", "list").stdout
    line = next(x for x in listing.splitlines() if x.startswith("tokcust "))
    assert "p256" in line and "yes" in line


def test_token_keys_approve_an_ethereum_transfer_to_signed(daemon: Daemon, card: Card,
                                                           operators: dict) -> None:
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    first = json.loads(approve(daemon, card, t.id, "tokinv").stdout)  # Ed25519 on the card
    assert first["state"] == "PENDING_APPROVAL"
    done = json.loads(approve(daemon, card, t.id, "tokcust").stdout)  # P-256 on the card
    assert done["state"] == "SIGNED", done
    raw = bytes.fromhex(done["raw_tx"].removeprefix("0x"))
    assert Account.recover_transaction(raw) == w.address


def test_a_token_key_and_a_file_key_approve_a_bitcoin_transfer_to_signed(
        daemon: Daemon, card: Card, operators: dict) -> None:
    w = wallet(daemon)
    psbt, prev = build_psbt(w, [60_000], [(EXTERNAL, 59_000)])
    t = submit(daemon, w, psbt)
    decide(daemon, t.id, "inv1")
    done = json.loads(approve(daemon, card, t.id, "tokcust").stdout)
    assert done["state"] == "SIGNED", done
    assert verify_with_bitcointx(done["raw_tx"], prev) == 1


def test_the_private_key_never_leaves_the_card(card: Card, operators: dict) -> None:
    """Sensitive, never extractable, private (invisible without the PIN): its value cannot be
    read, and the token refuses to wrap it out under a key the caller holds."""
    script = f"""
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as px
lib = pkcs11.lib({MODULE!r})
token = lib.get_token(token_label={card.label!r})
with token.open() as public:
    assert not list(public.get_objects({{Attribute.CLASS: ObjectClass.PRIVATE_KEY}}))
with token.open(user_pin={PIN!r}, rw=True) as s:
    for label in ("tokadm", "tokcust", "tokinv"):
        (key,) = s.get_objects({{Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                  Attribute.LABEL: label}})
        assert key[Attribute.SENSITIVE] and key[Attribute.ALWAYS_SENSITIVE]
        assert not key[Attribute.EXTRACTABLE] and key[Attribute.NEVER_EXTRACTABLE]
        assert key[Attribute.PRIVATE] and key[Attribute.TOKEN]
        try:
            key[Attribute.VALUE]
            raise SystemExit("the key's value was readable")
        except px.AttributeSensitive:
            pass
        wrapper = s.generate_key(KeyType.AES, 256, template={{Attribute.WRAP: True,
                                                               Attribute.TOKEN: False}})
        try:
            wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            raise SystemExit("the key was wrapped out")
        except (px.KeyUnextractable, px.MechanismInvalid, px.KeyNotWrappable):
            pass
        try:
            key[Attribute.EXTRACTABLE] = True
            raise SystemExit("the key was made extractable")
        except (px.AttributeReadOnly, px.AttributeValueInvalid):
            pass
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], env=card.env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


# ---------------------------------------------------------------- clear refusals


def pending_transfer(daemon: Daemon) -> pb.Transfer:
    return eth_transfer(daemon, eth_wallet(daemon))


def refused(r: subprocess.CompletedProcess[str], needle: str) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("signerctl: "), line
    assert needle in line, line
    return line


def no_decision(daemon: Daemon, transfer_id: str) -> None:
    t = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id))
    assert t.state == pb.PENDING_APPROVAL and not t.approvals, t


def test_token_absent(daemon: Daemon, card: Card, operators: dict) -> None:
    t = pending_transfer(daemon)
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("tokcust", token="not-inserted"), "--pkcs11-module", MODULE, "--yes",
                 ok=False)
    refused(r, "token 'not-inserted' is not present (is the card inserted")
    # the card pulled out: the module starts and finds no token with its label
    (token_dir,) = (card.folder / "tokens").iterdir()
    away = card.folder / "pulled-out"
    token_dir.rename(away)
    try:
        r = approve(daemon, card, t.id, "tokcust", ok=False)
        refused(r, f"token '{card.label}' is not present")
    finally:
        away.rename(token_dir)
    no_decision(daemon, t.id)


def test_wrong_pin_is_reported_and_not_retried(daemon: Daemon, card: Card,
                                               operators: dict) -> None:
    t = pending_transfer(daemon)
    wrong = Card.write_pin(card.folder / "wrong.pin", "000000")
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("tokcust", pin_file=wrong), "--pkcs11-module", MODULE, "--yes",
                 ok=False)
    line = refused(r, f"wrong PIN for token '{card.label}'")
    assert "not tried again" in line and "000000" not in line
    loose = Card.write_pin(card.folder / "loose.pin", PIN, 0o644)
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("tokcust", pin_file=loose), "--pkcs11-module", MODULE, "--yes",
                 ok=False)
    refused(r, "is accessible by group or others (mode 0644); chmod 600 it")
    # without a PIN file and without a terminal: refused, not waiting for a PIN
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 f"pkcs11:token={card.label};object=tokcust", "--pkcs11-module", MODULE,
                 "--yes", ok=False, stdin="")
    refused(r, "no PIN: there is no terminal to ask on")
    # never on the command line
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 f"pkcs11:token={card.label};object=tokcust?pin-value={PIN}",
                 "--pkcs11-module", MODULE, "--yes", ok=False)
    line = refused(r, "pin-value is refused: a PIN never goes on the command line")
    assert PIN not in line
    no_decision(daemon, t.id)
    # the card still takes the right PIN
    assert json.loads(approve(daemon, card, t.id, "tokcust").stdout)["approvals"]


def test_key_not_found_by_the_uri(daemon: Daemon, card: Card, operators: dict) -> None:
    t = pending_transfer(daemon)
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("nobody"), "--pkcs11-module", MODULE, "--yes", ok=False)
    refused(r, f"no private key object=nobody on token '{card.label}'")
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("tokcust"), "--yes", ok=False)
    refused(r, "which PKCS#11 module talks to the token? pass --pkcs11-module")
    no_decision(daemon, t.id)


def test_a_key_of_another_type_than_the_registered_one_is_refused_before_signing(
        daemon: Daemon, card: Card, operators: dict) -> None:
    t = pending_transfer(daemon)
    # tokcust registered a P-256 key; the Ed25519 key on the card is not it
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("tokinv"), "--pkcs11-module", MODULE, "--yes", ok=False)
    refused(r, "is an Ed25519 key, but operator tokcust registered a P-256 key (fingerprint "
               f"{operators['tokcust']['fingerprint']})")
    # the same type, another key: tokadm's P-256 key offered as tokcust's
    r = card_ctl(daemon, card, "--as", "tokcust", "transfer", "approve", t.id, "--key",
                 card.uri("tokadm"), "--pkcs11-module", MODULE, "--yes", ok=False)
    refused(r, "is not operator tokcust's registered key")
    # an Ed25519 file operator offering a P-256 card key
    r = card_ctl(daemon, card, "--as", "inv1", "transfer", "approve", t.id, "--key",
                 card.uri("tokcust"), "--pkcs11-module", MODULE, "--yes", ok=False)
    refused(r, "is a P-256 key, but operator inv1 registered an Ed25519 key")
    no_decision(daemon, t.id)


def test_keygen_refuses_a_label_already_on_the_card(daemon: Daemon, card: Card,
                                                    operators: dict) -> None:
    r = card_ctl(daemon, card, "operator", "keygen", "--pkcs11", card.uri("tokcust"), "--type",
                 "p256", "--pkcs11-module", MODULE, "--out", str(card.folder / "again.pub"),
                 ok=False)
    refused(r, f"token '{card.label}' already holds an object object=tokcust")
    assert not (card.folder / "again.pub").exists()


# ---------------------------------------------------------------- one person alone


def test_store_writer_changes_an_operators_key_row(daemon: Daemon, card: Card,
                                                   operators: dict) -> None:
    """A DBA swaps tokcust's key row (P-256 on the card) for an Ed25519 key they hold, and
    inv1's Ed25519 row for a P-256 key they hold: the daemon shows and verifies the keys the
    ledger proves, so the DBA's signatures do not count and the real operators' still do."""
    db = sqlite_writer(daemon)
    mallory_ed = operator_keys.generate(KeyType.ED25519)
    mallory_p = operator_keys.generate(KeyType.P256)
    db.run(("UPDATE operators SET public_key_pem = ? WHERE id = ?",
            (operator_keys.public_pem(mallory_ed).decode(), "tokcust")),
           ("UPDATE operators SET public_key_pem = ? WHERE id = ?",
            (operator_keys.public_pem(mallory_p).decode(), "inv1")))
    auth = daemon.governance().GetAuthority(pb.GetAuthorityRequest())
    ops = {o.id: o for o in auth.operators}
    assert (ops["tokcust"].key_type, ops["inv1"].key_type) == ("p256", "ed25519")
    assert ops["tokcust"].fingerprint == operators["tokcust"]["fingerprint"]
    t = pending_transfer(daemon)
    for op, key in (("tokcust", mallory_ed), ("inv1", mallory_p)):
        statement = daemon.approval(op).GetStatement(pb.GetStatementRequest(
            transfer_id=t.id, decision=pb.APPROVE)).statement
        e = rpc_error(daemon.approval(op).SubmitApproval, pb.SubmitApprovalRequest(
            transfer_id=t.id, operator_id=op, decision=pb.APPROVE,
            signature=sign_statement(key, statement),
            statement_sha256=statement_digest(statement)))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert f"signature for operator {op}" in e.details(), e.details()
    no_decision(daemon, t.id)
    decide(daemon, t.id, "inv1")
    done = json.loads(approve(daemon, card, t.id, "tokcust").stdout)
    assert done["state"] == "SIGNED", done


def test_a_role_that_needs_a_token_held_key(daemon: Daemon, card: Card, operators: dict,
                                            tmp_path: Path) -> None:
    """The governance adds a role whose operators must hold their key on a token; a
    registration for it without the declaration is refused, with it the quorum approves it."""
    auth = daemon.governance().GetAuthority(pb.GetAuthorityRequest())
    gov = auth.governance_toml.replace('roles = [', 'hardware_keys = ["treasurer"]\nroles = '
                                       '["treasurer", ', 1)
    path = tmp_path / "governance.toml"
    path.write_text(gov)
    p = json.loads(ctl(daemon, "--json", "governance", "set", str(path)).stdout)
    p = govern(daemon, daemon.governance().GetProposal(pb.GetProposalRequest(proposal_id=p["id"])))
    assert p.state == "APPROVED", p
    pub = keygen(daemon, card, "toktre", "p256")["public_key"]
    r = ctl(daemon, "operator", "add", "toktre", "--role", "treasurer", "--pubkey", pub,
            ok=False)
    assert r.returncode == 1 and "requires a key held on a token for role treasurer" in r.stderr
    # an operator registered with a file key cannot be given the role either
    r = ctl(daemon, "operator", "roles", "inv2", "--role", "investigator", "treasurer",
            ok=False)
    assert r.returncode == 1 and "operator inv2: the governance policy requires a key held on " \
        "a token" in r.stderr, r.stderr
    register(daemon, card, "toktre", "treasurer", pub, "SoftHSM card, object toktre")
    shown = ctl(daemon, "--as", "admin1", "proposal", "list", "--state", "APPROVED").stdout
    assert "register operator toktre as treasurer (key held on a token)" in shown


def test_one_key_in_another_encoding_is_not_a_second_identity(daemon: Daemon, card: Card,
                                                              operators: dict,
                                                              tmp_path: Path) -> None:
    """tokcust's P-256 key with its point compressed, offered for a new admin: refused."""
    key = operator_keys.load_public_pem(Path(operators["tokcust"]["public_key"]).read_bytes())
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    inner = der[2:-68] + b"\x03\x22\x00" + key.public_bytes(Encoding.X962,
                                                            PublicFormat.CompressedPoint)
    pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(bytes([0x30, len(inner)]) + inner)
           + b"-----END PUBLIC KEY-----\n")
    path = tmp_path / "copy.pub"
    path.write_bytes(pem)
    r = ctl(daemon, "operator", "add", "admin9", "--role", "admin", "--pubkey", str(path),
            ok=False)
    assert r.returncode == 1 and "already registered to operator tokcust" in r.stderr, r.stderr


def test_the_public_key_of_a_key_already_on_the_card(daemon: Daemon, card: Card,
                                                     operators: dict) -> None:
    """As for a PIV or OpenPGP card whose key the card's own tool made: operator pubkey writes
    the registration file of a key on the token."""
    out = card.folder / "tokinv-again.pub"
    doc = json.loads(card_ctl(daemon, card, "--json", "operator", "pubkey", "--pkcs11",
                              card.uri("tokinv"), "--pkcs11-module", MODULE, "--out",
                              str(out)).stdout)
    assert (doc["fingerprint"], doc["key_type"]) == (operators["tokinv"]["fingerprint"],
                                                     "ed25519")
    assert out.read_bytes() == Path(operators["tokinv"]["public_key"]).read_bytes()
