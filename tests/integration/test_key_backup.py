"""The key backup end to end, on real SoftHSM tokens and a real daemon: a 3-of-5 ceremony, the
backup key approved by the governance quorum, a backup under an approved proposal, the bundle,
and the drill: the token lost, a new token restored from three custodians' shares, and the
daemon signing for the restored Ethereum and Bitcoin wallets (checked by eth-account and
python-bitcointx). Then every way a restore must restore nothing, and the attacks of the
security officer (a trusted key of their own) and of a store writer (a backup nobody
approved)."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from cryptography.hazmat.primitives.serialization import load_der_private_key
from eth_account import Account

from signerd.adapters.key_files import load_private
from signerd.core import authority as AU
from signerd.core import backup as BK
from signerd.core import canonical
from signerd.core.operator_keys import generate

from tests.support import bitcoin as B
from tests.support.attacks import append_forged_entry, audit_events, sqlite_writer
from tests.support.daemon import Daemon, init_state, signerctl_cmd
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.governance import decide, govern
from tests.support.rpc import pb, rpc_error
from tests.unit.eth_oracle import mine_raw_tx

pytestmark = pytest.mark.integration

CUSTODIANS = ("inv1", "inv2", "cust1", "cust2", "pros1")
THRESHOLD = 3


def signerctl(cfg: Path, *args: str, ok: bool = True, port: int = 0
              ) -> subprocess.CompletedProcess[str]:
    server = ("--server", f"127.0.0.1:{port}") if port else ()
    r = subprocess.run(signerctl_cmd("--config", str(cfg), *server, *args), capture_output=True,
                       text=True, timeout=300, cwd=cfg.parent.parent)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def proposal(d: Daemon, out: str) -> pb.Proposal:
    doc = json.loads(out)
    return d.governance().GetProposal(pb.GetProposalRequest(proposal_id=doc["id"]))


@dataclass
class Drill:
    daemon: Daemon
    state: Path
    ceremony: dict
    shares: dict[str, Path]  # custodian -> share file
    backup_proposal: str
    bundle: Path
    eth: pb.Wallet
    btc: pb.Wallet
    other_shares: dict[str, Path]  # a second ceremony's shares, never approved


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("backup")
    cfg = init_state(base / "state")
    state = cfg.parent
    d = Daemon(cfg).start()
    try:
        eth = eth_wallet(d)
        btc = B.wallet(d)
        r = signerctl(cfg, "--json", "backup", "ceremony", "--so-pin-file",
                      str(state / "hsm" / "so-pin"), "--threshold", str(THRESHOLD),
                      *[a for c in CUSTODIANS for a in ("--custodian", c)],
                      "--out", str(base / "ceremony"))
        made = json.loads(r.stdout)
        shares = {c: base / "ceremony" / f"share-{i}-{c}.json"
                  for i, c in enumerate(CUSTODIANS, 1)}
        p = proposal(d, signerctl(cfg, "--json", "backup", "register", made["ceremony_file"],
                                  port=d.port).stdout)
        assert p.kind == "backup.key" and p.state == "PENDING_APPROVAL"
        assert govern(d, p).state == "APPROVED"
        p = proposal(d, signerctl(cfg, "--json", "backup", "create", port=d.port).stdout)
        assert p.kind == "backup.create"
        assert govern(d, p).state == "APPROVED"
        bundle = base / "bundle.json"
        r = signerctl(cfg, "--json", "backup", "bundle", p.id, "--out", str(bundle), port=d.port)
        assert json.loads(r.stdout)["not_backed_up"] == []
        # A second ceremony on the same token, never proposed: its shares are of another key.
        signerctl(cfg, "backup", "ceremony", "--so-pin-file", str(state / "hsm" / "so-pin"),
                  "--threshold", "2", "--custodian", "inv1", "--custodian", "inv2",
                  "--out", str(base / "other"))
        other = {c: base / "other" / f"share-{i}-{c}.json" for i, c in enumerate(("inv1", "inv2"), 1)}
        yield Drill(d, state, made["ceremony"], shares, p.id, bundle, eth, btc, other)
    finally:
        d.stop()


# ---------------------------------------------------------------- helpers

def rebuild_key(drill: Drill, custodians: tuple[str, ...]) -> bytearray:
    """The backup key rebuilt in this test from custodians' shares (to check the bundle with an
    independent RFC 5649 implementation)."""
    parts = []
    for c in custodians:
        doc = BK.parse_share(drill.shares[c].read_bytes(), c)
        parts.append(BK.open_share(doc, load_private(drill.state / "operators" / f"{c}.key"), c))
    return BK.combine(parts, THRESHOLD)


def copy_state(drill: Drill, dest: Path) -> Path:
    """The state folder as a new machine gets it after the token was lost: the config, PKI,
    operators and the store (copied with SQLite's backup API, as a DBA restores it), and a new,
    empty token with new PINs."""
    shutil.copytree(drill.state, dest, ignore=shutil.ignore_patterns(
        "tokens", "signerd.db*", "signerd.lock", "daemon-*.log"))
    src = sqlite3.connect(drill.state / "signerd.db")
    dst = sqlite3.connect(dest / "signerd.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    fresh_token(dest)
    return dest / "signerd.toml"


def fresh_token(state: Path) -> None:
    hsm = state / "hsm"
    if (hsm / "tokens").exists():
        shutil.rmtree(hsm / "tokens")
    (hsm / "tokens").mkdir(mode=0o700)
    conf = hsm / "softhsm2.conf"
    lines = [f"directories.tokendir = {hsm / 'tokens'}" if line.startswith("directories.tokendir")
             else line for line in conf.read_text().splitlines()]
    conf.write_text("\n".join(lines) + "\n")
    pin, so_pin = os.urandom(8).hex(), os.urandom(8).hex()
    for name, value in (("pin", pin), ("so-pin", so_pin)):
        (hsm / name).unlink(missing_ok=True)
        fd = os.open(hsm / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "signerd",
                    "--so-pin", so_pin, "--pin", pin], check=True, capture_output=True,
                   env=dict(os.environ, SOFTHSM2_CONF=str(conf)))


TOKEN_OBJECTS = """
import os, sys, pkcs11
from pkcs11 import Attribute as A, ObjectClass as OC
state = sys.argv[1]
lib = pkcs11.lib(sys.argv[2])
tok = lib.get_token(token_label="signerd")
pin = open(os.path.join(state, "hsm", "pin")).read().strip()
with tok.open(user_pin=pin) as s:
    out = {"private": len(list(s.get_objects({A.CLASS: OC.PRIVATE_KEY}))),
           "public": len(list(s.get_objects({A.CLASS: OC.PUBLIC_KEY}))),
           "data": len(list(s.get_objects({A.CLASS: OC.DATA}))),
           "secret": len(list(s.get_objects({A.CLASS: OC.SECRET_KEY})))}
print(out)
"""


def token_objects(state: Path) -> dict[str, int]:
    """What a token holds, counted by another process (its own PKCS#11 session)."""
    from signerd.daemon import find_softhsm_module

    r = subprocess.run([sys.executable, "-c", TOKEN_OBJECTS, str(state), find_softhsm_module()],
                       capture_output=True, text=True, timeout=60, check=True,
                       env=dict(os.environ, SOFTHSM2_CONF=str(state / "hsm" / "softhsm2.conf")))
    return dict(eval(r.stdout))  # noqa: S307 (our own subprocess's dict literal)


def restore(cfg: Path, bundle: Path, shares: list[Path], keys: list[Path], *, ok: bool = True
            ) -> subprocess.CompletedProcess[str]:
    state = cfg.parent
    args = [a for s, k in zip(shares, keys) for a in ("--share", str(s), "--key", str(k))]
    return signerctl(cfg, "backup", "restore", str(bundle), *args, "--so-pin-file",
                     str(state / "hsm" / "so-pin"), ok=ok)


def custodian_args(drill: Drill, custodians: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    return ([drill.shares[c] for c in custodians],
            [drill.state / "operators" / f"{c}.key" for c in custodians])


def refused(r: subprocess.CompletedProcess[str], needle: str, state: Path) -> None:
    """The restore failed with one line naming why, and the token holds no key at all."""
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert token_objects(state)["private"] == 0


# ---------------------------------------------------------------- the ceremony and the backup

def test_ceremony_splits_the_key_3_of_5_each_share_sealed_to_its_custodian(drill: Drill) -> None:
    c = drill.ceremony
    assert c["threshold"] == 3 and [x["operator_id"] for x in c["custodians"]] == list(CUSTODIANS)
    for i, name in enumerate(CUSTODIANS, 1):
        doc = BK.parse_share(drill.shares[name].read_bytes(), name)
        assert (doc["index"], doc["custodian"], doc["threshold"], doc["shares"]) == (
            i, name, 3, 5)
        assert oct(drill.shares[name].stat().st_mode & 0o777) == "0o600"
        other = CUSTODIANS[i % 5]  # another custodian's key does not open it
        with pytest.raises(BK.BackupRefused, match="sealed to custodian"):
            BK.open_share(doc, load_private(drill.state / "operators" / f"{other}.key"), name)
    # Any three shares rebuild the same key; its check value is the one the HSM computed.
    from itertools import combinations
    keys = {bytes(rebuild_key(drill, trio)) for trio in combinations(CUSTODIANS, 3)}
    assert len(keys) == 1
    (key,) = keys
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
    assert aes_key_wrap_with_padding(key, BK.CHECK_KEY).hex() == c["check_value"]
    # Two shares do not: with the threshold check bypassed, they rebuild some other key.
    parts = [BK.open_share(BK.parse_share(drill.shares[n].read_bytes(), n),
                           load_private(drill.state / "operators" / f"{n}.key"), n)
             for n in ("inv1", "pros1")]
    with pytest.raises(BK.BackupRefused, match="needs 3"):
        BK.combine(parts, THRESHOLD)
    assert bytes(BK.combine(parts, 2)) != key


def test_bundle_holds_every_key_wrapped_under_the_approved_key_and_is_audited(drill: Drill
                                                                              ) -> None:
    data = drill.bundle.read_bytes()
    pinned = bytes.fromhex(AU.genesis_digest(json.loads(data)["body"]["genesis_document"]).hex())
    b = BK.parse_bundle(data, pinned_genesis=pinned)
    uses = sorted(k.use for k in b.keys)
    assert uses == ["audit", "wallet", "wallet"]
    by_wallet = {w: k for k in b.keys for w in k.wallets}
    assert set(by_wallet) == {drill.eth.id, drill.btc.id}
    wallets = {w["id"]: w for w in b.body["wallets"]}
    assert wallets[drill.eth.id]["address"] == drill.eth.address
    assert wallets[drill.btc.id]["address"] == drill.btc.address
    # An independent RFC 5649 implementation (cryptography) opens each wrapped key with the key
    # three custodians rebuild: a PKCS#8 secp256k1 key whose public key is the bundle's.
    key = bytes(rebuild_key(drill, ("inv2", "cust2", "pros1")))
    for k in b.keys:
        priv = load_der_private_key(aes_key_unwrap_with_padding(key, k.wrapped), None)
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        pub = priv.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        assert pub == k.public_key
    # The act is audited with the bundle's digest.
    made = audit_events(drill.daemon, action="backup.created")
    assert made and json.loads(made[0].details_json)["digest"] == b.digest


def test_signerctl_verify_checks_a_bundle_offline(drill: Drill) -> None:
    r = signerctl(drill.daemon.config, "--json", "backup", "verify", str(drill.bundle))
    doc = json.loads(r.stdout)
    assert doc["keys"] == 3 and doc["threshold"] == 3 and doc["not_backed_up"] == []


# ---------------------------------------------------------------- the drill

def test_restore_drill_a_new_token_from_three_shares_signs_for_the_restored_wallets(
        drill: Drill, tmp_path: Path) -> None:
    cfg = copy_state(drill, tmp_path / "restored")
    state = cfg.parent
    assert token_objects(state)["private"] == 0
    shares, keys = custodian_args(drill, ("inv2", "cust2", "pros1"))
    r = restore(cfg, drill.bundle, shares, keys)
    assert "Restored 3 keys" in r.stdout, r.stdout
    held = token_objects(state)
    assert held["private"] == 3 and held["public"] == 3 and held["secret"] == 1
    d = Daemon(cfg).start()
    try:
        # Ethereum: two-key approval, signed by the restored key, recovered by eth-account.
        t = submit(d, drill.eth.id, tx_fields(nonce=0))
        decide(d, t.id, "inv1")
        t = decide(d, t.id, "cust1")
        assert t.state == pb.SIGNED
        raw = bytes.fromhex(t.raw_tx)
        assert Account.recover_transaction(raw) == drill.eth.address
        assert mine_raw_tx(raw, drill.eth.address, 10**18)["status"] == 1
        # Bitcoin: a PSBT from the restored P2WPKH wallet, checked by python-bitcointx.
        psbt, prev = B.build_psbt(drill.btc, [100_000], [(B.EXTERNAL, 60_000)])
        t = B.approve_both(d, B.submit(d, drill.btc, psbt))
        assert t.state == pb.SIGNED and t.raw_tx
        assert B.verify_with_bitcointx(t.raw_tx, prev) == 1
        # The restored token backs up again, under the same approved key.
        status = json.loads(d.admin().BackupStatus(pb.BackupStatusRequest()).document)
        assert [k["in_token"] for k in status["backup_keys"]] == [True]
        assert all(k["backup_capable"] for k in status["keys"])
    finally:
        d.stop()


# ---------------------------------------------------------------- restores that restore nothing

@pytest.mark.parametrize("custodians", [("cust1",), ("inv1", "pros1")], ids=["one", "two"])
def test_fewer_than_three_shares_restore_nothing(drill: Drill, tmp_path: Path,
                                                  custodians: tuple[str, ...]) -> None:
    cfg = copy_state(drill, tmp_path / "s")
    shares, keys = custodian_args(drill, custodians)
    r = restore(cfg, drill.bundle, shares, keys, ok=False)
    refused(r, f"{len(custodians)} share(s) given; ceremony {drill.ceremony['ceremony_id']} "
               "needs 3", cfg.parent)


def test_a_share_of_another_ceremony_restores_nothing(drill: Drill, tmp_path: Path) -> None:
    cfg = copy_state(drill, tmp_path / "s")
    shares, keys = custodian_args(drill, ("inv2", "cust1"))
    r = restore(cfg, drill.bundle, [drill.other_shares["inv1"], *shares],
                [drill.state / "operators" / "inv1.key", *keys], ok=False)
    refused(r, "this share is from ceremony", cfg.parent)
    # Its envelope edited to name this bundle's ceremony: the sealed part says otherwise.
    forged = tmp_path / "forged.json"
    doc = json.loads(drill.other_shares["inv1"].read_text())
    doc.update(ceremony_id=drill.ceremony["ceremony_id"], shares=5,
               check_value=drill.ceremony["check_value"],
               fingerprint=drill.ceremony["custodians"][0]["fingerprint"])
    forged.write_bytes(canonical.dumps(doc))
    r = restore(cfg, drill.bundle, [forged, *shares],
                [drill.state / "operators" / "inv1.key", *keys], ok=False)
    refused(r, "the envelope was edited); nothing was restored", cfg.parent)


def test_a_share_opened_with_another_custodians_key_restores_nothing(drill: Drill,
                                                                     tmp_path: Path) -> None:
    cfg = copy_state(drill, tmp_path / "s")
    shares, keys = custodian_args(drill, ("inv1", "inv2", "cust1"))
    keys[2] = drill.state / "operators" / "cust2.key"
    r = restore(cfg, drill.bundle, shares, keys, ok=False)
    refused(r, "not to the key given with it", cfg.parent)


@pytest.mark.parametrize("where,needle", [
    ("wrapped", "its digest does not match its content"),
    ("wallet", "its digest does not match its content"),
    ("ledger", "its digest does not match its content"),
    ("digest", "its digest does not match its content"),
    ("seal", "its seal does not verify under the audit key of its genesis"),
    ("whitespace", "not a signerd backup bundle"),
])
def test_a_bundle_with_one_changed_byte_restores_nothing(drill: Drill, tmp_path: Path,
                                                         where: str, needle: str) -> None:
    cfg = copy_state(drill, tmp_path / "s")
    data = bytearray(drill.bundle.read_bytes())
    doc = json.loads(data)
    if where == "wrapped":
        at = data.index(doc["body"]["keys"][1]["wrapped"].encode()) + 10
    elif where == "wallet":
        at = data.index(drill.eth.address[2:].encode()) + 5
    elif where == "seal":
        at = data.index(doc["seal"].encode()) + 7
    elif where == "digest":
        at = data.index(doc["digest"].encode()) + 3
    elif where == "ledger":
        at = data.index(b'"seq":') + 6
    else:
        at = data.index(b",") + 1
    data[at:at + 1] = b" " if where == "whitespace" else (
        b"0" if data[at:at + 1] != b"0" else b"1")
    bad = tmp_path / "bad.json"
    bad.write_bytes(bytes(data))
    assert bytes(data) != drill.bundle.read_bytes()
    shares, keys = custodian_args(drill, ("inv1", "cust1", "pros1"))
    r = restore(cfg, bad, shares, keys, ok=False)
    refused(r, f"bundle: {needle}", cfg.parent)
    assert "nothing was restored" in r.stderr


# ---------------------------------------------------------------- attacks on the backup

def test_security_officers_own_trusted_key_is_never_wrapped_under(drill: Drill,
                                                                  tmp_path: Path) -> None:
    """Whoever holds the SO-PIN installs a trusted key of their own with the approved key's
    id and label: signerd still wraps under the approved key only (its check value), and a
    ceremony key the governance never approved cannot be named for a backup."""
    from signerd.adapters.hsm_backup import BACKUP_KEY_LABEL

    d = drill.daemon
    script = f"""
import sys
sys.path.insert(0, {str(Path.cwd())!r})
from signerd.adapters.hsm_backup import BackupToken
from signerd.core.backup import new_backup_key
t = BackupToken({'/usr/lib/softhsm/libsofthsm2.so'!r}, token_label="signerd",
                pin_file={str(drill.state / 'hsm' / 'pin')!r},
                env={{"SOFTHSM2_CONF": {str(drill.state / 'hsm' / 'softhsm2.conf')!r}}})
so = open({str(drill.state / 'hsm' / 'so-pin')!r}).read().strip()
print(t.install_backup_key(so, new_backup_key(), bytes.fromhex({drill.ceremony['key_id']!r}),
                           {BACKUP_KEY_LABEL!r}))
"""
    from signerd.daemon import find_softhsm_module
    script = script.replace("/usr/lib/softhsm/libsofthsm2.so", find_softhsm_module())
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    evil_check = r.stdout.strip()
    assert evil_check != drill.ceremony["check_value"]
    made = d.admin().GetBackupBundle(pb.GetBackupBundleRequest(proposal_id=drill.backup_proposal))
    body = json.loads(made.bundle)["body"]
    key = bytes(rebuild_key(drill, ("inv1", "inv2", "cust1")))
    for k in body["keys"]:
        aes_key_unwrap_with_padding(key, bytes.fromhex(k["wrapped"]))  # the approved key's
    # A backup under a key the governance did not approve is refused at once.
    e = rpc_error(d.admin().ProposeBackup, pb.ProposeBackupRequest(ceremony_id="c_" + "0" * 16))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "not approved" in e.details()


def test_store_writer_cannot_start_a_backup(drill: Drill) -> None:
    """A DBA inserts a backup proposal row marked APPROVED, and then a ledger entry for it
    with forged approvals: no bundle is made for either."""
    d = drill.daemon
    db = sqlite_writer(d)
    row = db.one("SELECT * FROM proposals WHERE id = ?", (drill.backup_proposal,))
    forged_id = "p_" + os.urandom(10).hex()
    doc = json.loads(row["body"])
    doc["id"] = forged_id
    db.run(db.insert("proposals", {**row, "id": forged_id, "body": canonical.dumps(doc).decode()}))
    e = rpc_error(d.admin().GetBackupBundle, pb.GetBackupBundleRequest(proposal_id=forged_id))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not a backup that the governance approved" in e.details()
    # A ledger entry for it, "approved" by admin1 and admin2 with a key of the writer's.
    head = db.one("SELECT seq, hash FROM authority_head WHERE id = 1")
    entry = append_forged_entry(db, doc, generate())
    try:
        e = rpc_error(d.admin().GetBackupBundle, pb.GetBackupBundleRequest(proposal_id=forged_id))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"authority ledger entry {entry.seq}" in e.details()
    finally:
        db.run(("DELETE FROM authority_log WHERE seq = ?", (entry.seq,)),
               ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
                (head["seq"], head["hash"])),
               ("DELETE FROM proposals WHERE id = ?", (forged_id,)))
    # The approved backup's row rewritten to name the other ceremony's key: the bundle is made
    # under the key the ledger approved, whatever the row says.
    other = json.loads(drill.other_shares["inv1"].read_text())
    body = json.loads(row["body"])
    body["change"] = {"ceremony_id": other["ceremony_id"], "check_value": other["check_value"]}
    db.run(("UPDATE proposals SET body = ? WHERE id = ?",
            (canonical.dumps(body).decode(), drill.backup_proposal)))
    try:
        made = d.admin().GetBackupBundle(pb.GetBackupBundleRequest(
            proposal_id=drill.backup_proposal))
    finally:
        db.run(("UPDATE proposals SET body = ? WHERE id = ?", (row["body"], drill.backup_proposal)))
    assert made.keys == 3
    assert json.loads(made.bundle)["body"]["ceremony"]["ceremony_id"] == \
        drill.ceremony["ceremony_id"]


CLEAR_EXTRACTABLE = """
import os, sys, pkcs11
from pkcs11 import Attribute as A, ObjectClass as OC
state, module, key_id = sys.argv[1:4]
tok = pkcs11.lib(module).get_token(token_label="signerd")
pin = open(os.path.join(state, "hsm", "pin")).read().strip()
with tok.open(rw=True, user_pin=pin) as s:
    s.get_key(object_class=OC.PRIVATE_KEY, id=bytes.fromhex(key_id))[A.EXTRACTABLE] = False
"""


def test_a_key_made_before_is_listed_as_not_backed_up_with_what_to_do(
        daemon_factory: Any, tmp_path: Path) -> None:
    """A wallet key the token cannot export (as every key made before keys were
    backup-capable: CKA_EXTRACTABLE false) is left out of the bundle and named, with the way to
    move its funds; the other keys are backed up."""
    from signerd.daemon import find_softhsm_module

    d = daemon_factory.start("backup-old")
    state = d.state
    old, new = eth_wallet(d), eth_wallet(d)
    (old_key,) = d.custody().GetWallet(pb.GetWalletRequest(wallet_id=old.id)).keys
    subprocess.run([sys.executable, "-c", CLEAR_EXTRACTABLE, str(state), find_softhsm_module(),
                    old_key.key_id], check=True, capture_output=True, timeout=60,
                   env=dict(os.environ, SOFTHSM2_CONF=str(state / "hsm" / "softhsm2.conf")))
    made = json.loads(signerctl(d.config, "--json", "backup", "ceremony", "--so-pin-file",
                                str(state / "hsm" / "so-pin"), "--threshold", "2",
                                "--custodian", "inv1", "--custodian", "cust1",
                                "--out", str(tmp_path / "c")).stdout)
    assert govern(d, proposal(d, signerctl(d.config, "--json", "backup", "register",
                                           made["ceremony_file"], port=d.port).stdout)
                  ).state == "APPROVED"
    p = proposal(d, signerctl(d.config, "--json", "backup", "create", port=d.port).stdout)
    assert govern(d, p).state == "APPROVED"
    r = signerctl(d.config, "--json", "backup", "bundle", p.id, "--out", str(tmp_path / "b.json"),
                  port=d.port)
    assert json.loads(r.stdout)["not_backed_up"] == [old_key.key_id]
    body = json.loads((tmp_path / "b.json").read_bytes())["body"]
    assert {k["key_id"] for k in body["keys"]} == {
        body["genesis_document"]["audit_key"]["key_id"],
        d.custody().GetWallet(pb.GetWalletRequest(wallet_id=new.id)).keys[0].key_id}
    (listed,) = body["not_backed_up"]
    assert listed["wallets"] == [old.id] and "ordinary transfer" in listed["reason"]
    status = signerctl(d.config, "backup", "status", port=d.port).stdout
    assert f"{old_key.key_id}: made before keys were backup-capable" in status
    assert "NOT BACKED UP" in status
