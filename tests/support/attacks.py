"""The store-writer attacks: an insider with write access to the store (SQLite or PostgreSQL)
rewrites rows behind signerd's back, and each attack ends with no signature. Each
``attack_*`` takes the daemon and the store writer for its database, so the SQLite tests
(test_governance_attacks, test_transfer_seal, test_governance_seals) and the PostgreSQL ones
(test_governance_postgres) run the same attack; and the helpers they share: store writers,
wallets, transfers, waits, audit events, violation metrics."""
from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import coincurve
import grpc
from eth_account import Account

from signerd.adapters.store.codec import transfer_from_row
from signerd.adapters.key_files import load_private
from signerd.core import authority as AU
from signerd.core import canonical
from signerd.core import engine as E
from signerd.core.approval import (SignedDecision, build_statement, genesis_statement,
                                   proposal_statement, sign_statement, statement_digest)
from signerd.core.bitcoin.address import address_to_script
from signerd.core.model import Decision
from signerd.core.operator_keys import generate, public_pem
from signerd.services.transfers import movement_from_json

from tests.support.bitcoin import build_psbt
from tests.support.daemon import Daemon, edit_config, init_state, signerd_cmd
from tests.support.ethereum import submit, tx_fields
from tests.support.governance import decide, decide_proposal, govern, register_operator, set_policy
from tests.support.rpc import pb, rpc_error

PROBE = 0.5  # [hsm] probe_seconds: the monitor picks up APPROVED transfers this often
EXTERNAL_ETH = "0x000000000000000000000000000000000000dEaD"
ALL_ROLES = ["admin", "auditor", "custody_officer", "investigator", "judge", "prosecutor"]
ONE_APPROVER = 'name = "one"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 1\n'


def canon(value: Any) -> str:
    return canonical.dumps(value).decode()


class StoreWriter:
    """Direct SQL on a daemon's database with nothing else: no HSM, no operator key, no RPC.
    Queries use ``?`` placeholders; rows come back as dicts."""

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def run(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run the statements in one transaction."""
        raise NotImplementedError

    def one(self, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
        (row,) = self.rows(query, params)
        return row

    def insert(self, table: str, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The statement that inserts ``row`` (every column named) into ``table``, for
        :meth:`run`."""
        cols = list(row)
        return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES"
                f" ({', '.join('?' for _ in cols)})", tuple(row[c] for c in cols))


class SqliteWriter(StoreWriter):
    def __init__(self, path: Path):
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30)
        c.row_factory = sqlite3.Row
        return c

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        c = self._connect()
        try:
            return [dict(r) for r in c.execute(query, params).fetchall()]
        finally:
            c.close()

    def run(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        c = self._connect()
        try:
            with c:
                for query, params in statements:
                    c.execute(query, params)
        finally:
            c.close()


def sqlite_writer(d: Daemon) -> SqliteWriter:
    return SqliteWriter(d.state / "signerd.db")


def transfer(d: Daemon, transfer_id: str) -> pb.Transfer:
    return d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id))


def assert_no_signature(d: Daemon, db: StoreWriter, transfer_id: str) -> pb.Transfer:
    """No signature in the store for the transfer, no signed transaction, not SIGNED."""
    t = transfer(d, transfer_id)
    assert t.state != pb.SIGNED and not t.raw_tx and not t.psbt, t
    assert db.one("SELECT COUNT(*) AS n FROM signatures WHERE transfer_id = ?",
                  (transfer_id,))["n"] == 0
    row = db.one("SELECT state, raw_tx, psbt FROM transfers WHERE id = ?", (transfer_id,))
    assert row["state"] != "SIGNED" and row["raw_tx"] == "" and row["psbt"] == "", row
    return t


def wait_for(predicate: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        time.sleep(0.05)


def wait_state(d: Daemon, transfer_id: str, state: int, timeout: float = 15) -> pb.Transfer:
    return wait_for(lambda: (lambda t: t if t.state == state else None)(transfer(d, transfer_id)),
                    timeout, f"transfer {transfer_id} {pb.TransferState.Name(state)}")


def monitor_ticks(n: int = 3) -> None:
    """Give the monitor ``n`` probes to act on an APPROVED transfer (for "nothing happens")."""
    time.sleep(n * PROBE)


def violation_metric(d: Daemon, kind: str) -> float:
    m = re.search(r'^signerd_authority_violations_total\{kind="%s"\} (\S+)$' % kind,
                  d.metrics(), re.M)
    assert m, f"no signerd_authority_violations_total series for kind {kind}"
    return float(m.group(1))


def audit_events(d: Daemon, *, action: str = "", obj: str = "") -> list[pb.AuditEvent]:
    """Audit events through Audit/ListEvents as the auditor, filtered."""
    out: list[pb.AuditEvent] = []
    after = 0
    while True:
        page = d.audit("auditor").ListEvents(pb.ListEventsRequest(after_seq=after, limit=1000))
        out += [e for e in page.events if (not action or e.action == action)
                and (not obj or e.object == obj)]
        if len(page.events) < 1000:
            return out
        after = page.events[-1].seq


def assert_violation(d: Daemon, db: StoreWriter, transfer_id: str, kind: str, needle: str,
                     metric_before: float, timeout: float = 15) -> pb.Transfer:
    """The transfer ended FAILED as an authority violation: reason, audit event, metric; and
    nothing was signed."""
    t = wait_state(d, transfer_id, pb.FAILED, timeout)
    assert t.failure.startswith("authority violation: ") and needle in t.failure, t.failure
    (event,) = audit_events(d, action="authority.violation", obj=transfer_id)
    details = json.loads(event.details_json)
    assert details["kind"] == kind and needle in details["reason"], details
    assert event.actor == "signerd"
    assert violation_metric(d, kind) >= metric_before + 1
    assert_no_signature(d, db, transfer_id)
    return t


_nonce = iter(range(1, 10**6))
_case = iter(range(1, 10**6))


def eth_wallet(d: Daemon, template: str = "", category: Any = pb.SEIZED) -> pb.Wallet:
    from tests.unit.eth_oracle import CHAIN_ID

    return d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], category=category,
        case_ref=f"CASE-GOV-{next(_case)}", template=template))


def eth_transfer(d: Daemon, w: pb.Wallet, to: str = EXTERNAL_ETH) -> pb.Transfer:
    return submit(d, w.id, tx_fields(nonce=next(_nonce), to=to))


def assert_eth_signed(t: pb.Transfer, w: pb.Wallet) -> None:
    assert t.state == pb.SIGNED and t.raw_tx, t
    assert Account.recover_transaction(bytes.fromhex(t.raw_tx)) == w.address


def store_statement(db: StoreWriter, instance_id: str, transfer_id: str,
                    decision: Decision = Decision.APPROVE) -> bytes:
    """The transfer's approval statement, rebuilt by signerd's own code from the store's row
    alone (what a store writer can do without any RPC)."""
    row = db.one("SELECT * FROM transfers WHERE id = ?", (transfer_id,))
    return build_statement(E.context(instance_id, transfer_from_row(row)),
                           movement_from_json(row["movement"]), decision)


def insert_approval(db: StoreWriter, transfer_id: str, operator_id: str, signature: bytes,
                    statement: bytes) -> tuple[str, tuple[Any, ...]]:
    return ("INSERT INTO approvals (transfer_id, operator_id, decision, signature,"
            " statement_sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (transfer_id, operator_id, "APPROVE", signature.hex(),
             statement_digest(statement).hex(), "", time.time()))


def operator_cert(d: Daemon, name: str) -> None:
    """A client certificate for ``name`` from the dev CA (as test_revoked_operator does)."""
    from signerd.adapters import pki
    from tests.support.daemon import dev_ca

    key, cert = pki.issue_client(*dev_ca(d.state), name)
    pki.write_pem_key(d.state / "pki" / "clients" / f"{name}.key", key)
    pki.write_pem_cert(d.state / "pki" / "clients" / f"{name}.pem", cert)


def refused_start(cfg: Path) -> subprocess.CompletedProcess[str]:
    """`signerd run` on a store it must refuse: exits at once."""
    return subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True,
                          text=True, timeout=60)


# The config of a daemon these tests start: the monitor signs APPROVED transfers every PROBE s.
FRESH: dict[str, dict[str, Any]] = {"hsm": {"probe_seconds": PROBE}}


def fresh_daemon(path: Path) -> Daemon:
    cfg = init_state(path)
    for section, values in FRESH.items():
        edit_config(cfg, section, **values)
    return Daemon(cfg).start()


def run_on_a_fresh_daemon(path: Path, attack: Callable[[Daemon, StoreWriter], None]) -> None:
    """``attack`` on a daemon of its own (fresh_daemon at ``path``) and its SQLite writer; the
    daemon is stopped afterwards."""
    d = fresh_daemon(path)
    try:
        attack(d, sqlite_writer(d))
    finally:
        d.stop()


def daemon_and_writer_fixtures(name: str) -> tuple[Any, Any]:
    """A test module's ``daemon`` (module scope: one FRESH daemon, state folder named ``name``)
    and ``db`` (its SQLite writer) fixtures, as ``daemon, db = daemon_and_writer_fixtures(...)``
    at the module's top level."""
    import pytest

    @pytest.fixture(scope="module")
    def daemon(daemon_factory: Any) -> Iterator[Daemon]:
        yield from daemon_factory.run(name, **FRESH)

    @pytest.fixture
    def db(daemon: Daemon) -> SqliteWriter:
        return sqlite_writer(daemon)

    return daemon, db


def approve_with_key(d: Daemon, transfer_id: str, name: str,
                     key: Any) -> pb.Transfer:
    """Operator ``name`` approves ``transfer_id`` with their own ``key``: the statement fetched,
    signed and submitted."""
    statement = d.approval(name).GetStatement(pb.GetStatementRequest(
        transfer_id=transfer_id, decision=pb.APPROVE)).statement
    return d.approval(name).SubmitApproval(pb.SubmitApprovalRequest(
        transfer_id=transfer_id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, statement),
        statement_sha256=statement_digest(statement)))


def attack_zero_signature_approvals(d: Daemon, db: StoreWriter) -> None:
    """1a: two approval rows with all-zero signatures, state set to APPROVED."""
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    before = violation_metric(d, "approval")
    statement = store_statement(db, t.instance_id, t.id)
    db.run(insert_approval(db, t.id, "inv1", bytes(64), statement),
           insert_approval(db, t.id, "cust1", bytes(64), statement),
           ("UPDATE transfers SET state = ? WHERE id = ?", ("APPROVED", t.id)))
    written = time.monotonic()
    t = assert_violation(d, db, t.id, "approval", "does not verify over this act's statement",
                         before)
    assert time.monotonic() - written < 10 * PROBE  # the monitor's next probes found it
    assert "inv1" in t.failure and "cust1" in t.failure
    # The legitimate counterpart: the same two operators, their own signatures.
    ok = eth_transfer(d, w)
    decide(d, ok.id, "inv1")
    assert_eth_signed(decide(d, ok.id, "cust1"), w)


def attack_forged_operators(d: Daemon, db: StoreWriter) -> None:
    """1b: operators rows with every role and the writer's own keys; approvals correctly
    signed by those keys over the real statement; state set to APPROVED."""
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    before = violation_metric(d, "approval")
    statement = store_statement(db, t.instance_id, t.id)
    # It is the statement the operators are shown (GetStatement as a real operator).
    assert statement == d.approval("inv2").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    writes = []
    for name in (f"mallory{secrets.token_hex(3)}", f"mallory{secrets.token_hex(3)}"):
        key = generate()
        writes += [("INSERT INTO operators (id, roles, public_key_pem, status, created_at)"
                    " VALUES (?, ?, ?, 'active', ?)",
                    (name, json.dumps(ALL_ROLES), public_pem(key).decode(), time.time())),
                   insert_approval(db, t.id, name, sign_statement(key, statement), statement)]
    db.run(*writes, ("UPDATE transfers SET state = ? WHERE id = ?", ("APPROVED", t.id)))
    assert_violation(d, db, t.id, "approval", "is not an operator in the chain of authority",
                     before)
    names = {o.id for o in d.admin().ListOperators(pb.ListOperatorsRequest()).operators}
    assert not any(n.startswith("mallory") for n in names)
    # The legitimate counterpart: an operator registered through the governance quorum, with
    # their own key, counts.
    name = f"cust{secrets.token_hex(3)}"
    key = generate()
    operator_cert(d, name)
    register_operator(d, name, ["custody_officer"], public_pem(key))
    ok = eth_transfer(d, w)
    decide(d, ok.id, "inv1")
    assert_eth_signed(approve_with_key(d, ok.id, name, key), w)


def attack_thawed_frozen_wallet(d: Daemon, db: StoreWriter) -> None:
    """1d: FreezeWallet (a ledger entry), then the wallet row set ACTIVE again by SQL."""
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    d.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-FRZ-1"))
    db.run(("UPDATE wallets SET status = 'ACTIVE', freeze_order = '' WHERE id = ?", (w.id,)))
    assert d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
    e = rpc_error(eth_transfer, d, w)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "frozen by court order" in e.details(), e.details()
    decide(d, t.id, "inv1")
    got = decide(d, t.id, "cust1")
    assert got.state == pb.APPROVED and not got.raw_tx  # quorum recorded, nothing signed
    monitor_ticks()
    assert assert_no_signature(d, db, t.id).state == pb.APPROVED
    # Only a governed unfreeze lets it go: then it is signed.
    p = d.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                        order_ref="ORDER-UNFRZ-1"))
    assert p.state == "PENDING_APPROVAL"
    assert govern(d, p).state == "APPROVED"
    assert_eth_signed(wait_state(d, t.id, pb.SIGNED), w)


def attack_one_approver_policy_row(d: Daemon, db: StoreWriter) -> None:
    """1c: the wallet's ``policies`` row rewritten to a one-approver policy."""
    w, own = eth_wallet(d), eth_wallet(d)  # `own`: same category, all keys ours
    genuine = d.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id))
    db.run(("UPDATE policies SET document = ? WHERE wallet_id = ?", (ONE_APPROVER, w.id)))
    # signerd reads the policy from the authority ledger, not from the row.
    assert d.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).toml == genuine.toml
    t = eth_transfer(d, w, to=own.address)
    assert t.movement.outputs[0].destination_class == "own_wallet"
    assert t.requirement.startswith("2 approvers"), t.requirement
    t = decide(d, t.id, "cust1")
    assert t.state == pb.PENDING_APPROVAL and "investigator x1" in t.remaining
    monitor_ticks(1)
    assert assert_no_signature(d, db, t.id).state == pb.PENDING_APPROVAL
    # The legitimate counterpart: the governance quorum sets that same text; then one
    # approval signs an own-wallet move (after the pending transfer is cancelled, since the
    # new policy would loosen it).
    e = rpc_error(d.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id, toml=ONE_APPROVER))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and t.id in e.details()
    d.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="x"))
    set_policy(d, w.id, ONE_APPROVER)
    ok = eth_transfer(d, w, to=own.address)
    assert ok.requirement.startswith("1 approver"), ok.requirement
    assert_eth_signed(decide(d, ok.id, "cust1"), w)


def attack_fake_wallet_at_the_destination(d: Daemon, db: StoreWriter) -> None:
    """1e: a wallet row without a seal at a transfer's destination, to make it
    ``own_wallet``."""
    # seized-sweep: one custody officer may sweep into own wallets; anything else needs three.
    w = eth_wallet(d, template="seized-sweep")
    real = eth_wallet(d)  # copied for the fake row's columns
    fake_address = Account.create().address
    plain = eth_transfer(d, w, to=fake_address)  # before the fake row: external
    assert plain.movement.outputs[0].destination_class == "external"
    row = db.one("SELECT * FROM wallets WHERE id = ?", (real.id,))
    row.update(id="w_" + secrets.token_hex(8), address=fake_address, record="", seal="",
               proposal_id="")
    db.run(db.insert("wallets", row))
    t = eth_transfer(d, w, to=fake_address)
    (out,) = t.movement.outputs
    assert out.destination_class == "external" and not out.wallet_id, out
    assert t.requirement == plain.requirement  # unchanged by the row
    assert t.requirement.startswith("3 approvers") and "prosecutor x1" in t.requirement
    t = decide(d, t.id, "cust1")
    assert t.state == pb.PENDING_APPROVAL and "investigator x1" in t.remaining
    assert assert_no_signature(d, db, t.id).state == pb.PENDING_APPROVAL
    statement = d.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert fake_address not in statement.own_addresses and not statement.destinations
    # Nor is it a holding of the state's in the auditors' report: left out, and named.
    report = json.loads(d.audit().Report(pb.ReportRequest()).json)
    listed = {w["address"] for c in report["categories"].values()
              for case in c["cases"].values() for w in case["wallets"]}
    assert fake_address not in listed and real.address in listed
    left_out = {x["id"]: x["reason"] for x in report["left_out"]}
    assert "no sealed record" in left_out[row["id"]], report["left_out"]
    # The legitimate counterpart: the real (sealed) wallet is own_wallet; one officer signs.
    ok = eth_transfer(d, w, to=real.address)
    assert ok.movement.outputs[0].destination_class == "own_wallet"
    assert ok.requirement.startswith("1 approver"), ok.requirement
    assert_eth_signed(decide(d, ok.id, "cust1"), w)


def forged_proposal_doc(d: Daemon, proposal_id: str, kind: str,
                        change: dict[str, Any]) -> dict[str, Any]:
    """A proposal body of ``kind`` for ``d``'s instance, submitted by admin now, for an hour."""
    instance = d.governance().GetAuthority(pb.GetAuthorityRequest()).instance_id
    now = int(time.time())
    return {"id": proposal_id, "instance_id": instance, "kind": kind, "submitter": "admin",
            "created_at": now, "expires_at": now + 3600, "change": change}


def append_forged_entry(db: StoreWriter, doc: dict[str, Any], forger: Any,
                        *also: tuple[str, tuple[Any, ...]]) -> AU.Entry:
    """A ledger entry of the proposal ``doc`` "approved" by admin1 and admin2 with signatures
    of the forger's key, hashed and linked after the head exactly as signerd would, written to
    authority_log with the head row moved to it (and the statements ``also``, in the same
    transaction). Returns the entry."""
    head = db.one("SELECT seq, hash FROM authority_head WHERE id = 1")
    fakes = [SignedDecision(op, Decision.APPROVE,
                            sign_statement(forger, proposal_statement(doc, Decision.APPROVE)))
             for op in ("admin1", "admin2")]
    entry = AU.make_entry(int(head["seq"]), bytes.fromhex(head["hash"]), AU.PROPOSAL, doc,
                          fakes)
    db.run(("INSERT INTO authority_log (seq, kind, body, approvals, prev_hash, hash,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.kind, canon(doc), canon(entry.approvals_json()),
             entry.prev_hash.hex(), entry.hash.hex(), time.time())),
           ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
            (entry.seq, entry.hash.hex())),
           *also)
    return entry


def attack_forged_authority_ledger_entry(d: Daemon, db: StoreWriter) -> None:
    """1f: a forged ``authority_log`` entry (a proposal registering the writer as an operator
    with fake admin approvals, the head row moved to it). Stops and restarts ``d``: a daemon
    of its own."""
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    decide(d, t.id, "inv1")
    cust1 = d.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    # The forger: a proposal registering mallory with every role, "approved" by admin1 and
    # admin2 with signatures of the forger's key, hashed and linked exactly as signerd
    # would, the head row moved to it, and the operators row to match.
    head = db.one("SELECT seq, hash FROM authority_head WHERE id = 1")
    mallory = generate()
    doc = forged_proposal_doc(d, "p_" + secrets.token_hex(10), "operator.register",
                              {"operator_id": "mallory", "roles": ALL_ROLES,
                               "public_key_pem": public_pem(mallory).decode()})
    before = violation_metric(d, "ledger")
    entry = append_forged_entry(
        db, doc, mallory,
        ("INSERT INTO operators (id, roles, public_key_pem, status, created_at)"
         " VALUES ('mallory', ?, ?, 'active', ?)",
         (json.dumps(ALL_ROLES), public_pem(mallory).decode(), time.time())))
    # The running daemon refuses: the quorum-making approval is not recorded, nothing signs.
    key = load_private(d.state / "operators" / "cust1.key")
    e = rpc_error(d.approval("cust1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t.id, operator_id="cust1", decision=pb.APPROVE,
        signature=sign_statement(key, cust1), statement_sha256=statement_digest(cust1)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert f"authority ledger entry {entry.seq}" in e.details()
    assert "does not verify" in e.details()
    monitor_ticks()
    assert db.one("SELECT COUNT(*) AS n FROM signatures WHERE transfer_id = ?",
                  (t.id,))["n"] == 0
    row = db.one("SELECT state, raw_tx FROM transfers WHERE id = ?", (t.id,))
    assert row == {"state": "PENDING_APPROVAL", "raw_tx": ""}
    assert violation_metric(d, "ledger") >= before + 1
    assert "authority ledger does not verify" in d.log_path.read_text()  # type: ignore
    # A restarted daemon refuses to start, with one line naming the entry.
    assert d.stop() == 0
    r = refused_start(d.config)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("signerd: refusing to serve this store: authority ledger "
                               f"entry {entry.seq} (proposal {doc['id']})"), lines[0]
    # The legitimate counterpart: the ledger as signerd wrote it serves and signs.
    db.run(("DELETE FROM authority_log WHERE seq = ?", (entry.seq,)),
           ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
            (head["seq"], head["hash"])),
           ("DELETE FROM operators WHERE id = 'mallory'", ()))
    d.start()
    assert_eth_signed(decide(d, t.id, "cust1"), w)


def attack_replaced_genesis(d: Daemon, db: StoreWriter) -> None:
    """1g: the genesis row replaced by a genesis the writer made and signed with keys of their
    own. ``d`` has made nothing but its genesis yet; it is stopped and restarted."""
    w = eth_wallet(d)
    genesis = db.one("SELECT * FROM authority_log WHERE seq = 1")
    head = db.one("SELECT seq, hash FROM authority_head WHERE id = 1")
    assert head["seq"] == 1  # nothing after the genesis yet
    # The writer's own genesis: the same document with every operator's key replaced by
    # one of theirs, signed by all of them, hashed as signerd would.
    doc = json.loads(genesis["body"])
    keys = {o["id"]: generate() for o in doc["operators"]}
    for o in doc["operators"]:
        o["public_key_pem"] = public_pem(keys[o["id"]]).decode()
    statement = genesis_statement(doc)
    entry = AU.genesis_entry(doc, [SignedDecision(op, Decision.APPROVE,
                                                  sign_statement(k, statement))
                                   for op, k in keys.items()])
    pinned = d.governance().GetAuthority(pb.GetAuthorityRequest()).genesis
    db.run(("UPDATE authority_log SET body = ?, approvals = ?, hash = ? WHERE seq = 1",
            (canon(doc),
             canon(entry.approvals_json()),
             entry.hash.hex())),
           ("UPDATE authority_head SET hash = ? WHERE id = 1", (entry.hash.hex(),)))
    # The running daemon notices the rewrite before anything else.
    before = violation_metric(d, "ledger")
    e = rpc_error(eth_transfer, d, w)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "rewound or rewritten" in e.details(), e.details()
    assert violation_metric(d, "ledger") >= before + 1
    assert d.stop() == 0
    r = refused_start(d.config)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0] == (f"signerd: refusing to serve this store: the store's genesis "
                        f"{AU.genesis_digest(doc).hex()} differs from the pinned genesis "
                        f"{pinned.hex()}"), lines[0]
    # The legitimate counterpart: the genesis signerd wrote serves and signs.
    db.run(("UPDATE authority_log SET body = ?, approvals = ?, hash = ? WHERE seq = 1",
            (genesis["body"], genesis["approvals"], genesis["hash"])),
           ("UPDATE authority_head SET hash = ? WHERE id = 1", (head["hash"],)))
    d.start()
    t = eth_transfer(d, w)
    decide(d, t.id, "inv1")
    assert_eth_signed(decide(d, t.id, "cust1"), w)


def vetoed(d: Daemon) -> pb.Transfer:
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    decide(d, t.id, "inv1")
    t = decide(d, t.id, "judge1", pb.REJECT, reason="court order pending")
    assert t.state == pb.REJECTED and "veto of judge1" in t.failure
    return t


def resurrect(db: StoreWriter, transfer_id: str) -> None:
    """The writer deletes the judge's veto and sets the transfer back to waiting."""
    db.run(("DELETE FROM approvals WHERE transfer_id = ? AND operator_id = 'judge1'",
            (transfer_id,)),
           ("UPDATE transfers SET state = 'PENDING_APPROVAL', failure = '' WHERE id = ?",
            (transfer_id,)))


def assert_refused_as_ended(d: Daemon, db: StoreWriter, transfer_id: str) -> None:
    before = violation_metric(d, "ended")
    e = rpc_error(decide, d, transfer_id, "cust1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert "ended before" in e.details() and transfer_id in e.details()
    assert_violation(d, db, transfer_id, "ended", "ended before", before)
    monitor_ticks(1)
    assert_no_signature(d, db, transfer_id)


def attack_erased_veto(d: Daemon, db: StoreWriter) -> None:
    """1h: the judge's veto is a row in ``approvals`` and the state REJECTED; the writer
    deletes the row and sets the state back to PENDING_APPROVAL. The audit chain the daemon
    verified records the rejection, so the next honest approval is refused and the transfer
    ends FAILED, unsigned."""
    t = vetoed(d)
    resurrect(db, t.id)
    assert transfer(d, t.id).state == pb.PENDING_APPROVAL  # what cust1 is shown
    assert_refused_as_ended(d, db, t.id)


def attack_erased_veto_and_its_audit_events(d: Daemon, db: StoreWriter) -> None:
    """1h, and the rejection's audit events deleted too: the chain no longer verifies, and the
    daemon refuses every decision and signs nothing until it is restored (restored here, for
    the other attacks on the same daemon)."""
    t = vetoed(d)
    rows = db.rows("SELECT * FROM audit_events WHERE object = ? AND action IN"
                   " ('transfer.reject', 'transfer.rejected')", (t.id,))
    assert len(rows) == 2
    resurrect(db, t.id)
    db.run(*[("DELETE FROM audit_events WHERE seq = ?", (r["seq"],)) for r in rows])
    try:
        e = rpc_error(decide, d, t.id, "cust1")
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert "audit" in e.details() and "does not verify" in e.details(), e.details()
        monitor_ticks(1)
        assert_no_signature(d, db, t.id)
    finally:  # restore the chain for the other attacks on this daemon
        for r in rows:
            db.run(db.insert("audit_events", r))
    # Restored, the rejection stands: the transfer is refused as ended.
    assert_refused_as_ended(d, db, t.id)


def attack_erased_veto_across_a_restart(d: Daemon, db: StoreWriter) -> None:
    """1h across a restart of ``d`` (a daemon of its own): the daemon knows the ended transfers
    again, read through their index and checked against the latest HSM-signed audit
    checkpoint, which commits to them; an ending event altered to hide it no longer matches
    that checkpoint."""
    t = vetoed(d)
    t2 = vetoed(d)
    eth_wallet(d)  # so that neither veto is the checkpoint's head event
    d.audit("auditor").GetHead(pb.GetHeadRequest())  # a checkpoint covering both vetoes
    d.stop()
    resurrect(db, t.id)
    d.start()
    assert_refused_as_ended(d, db, t.id)
    d.stop()
    resurrect(db, t2.id)
    db.run(("UPDATE audit_events SET action = 'transfer.revived' WHERE object = ? AND"
            " action = 'transfer.rejected'", (t2.id,)))
    d.start()
    e = rpc_error(decide, d, t2.id, "cust1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert "ended transfers and proposals" in e.details() and "not those it signed" in \
        e.details(), e.details()
    monitor_ticks(1)
    assert_no_signature(d, db, t2.id)


def attack_erased_proposal_rejection(d: Daemon, db: StoreWriter) -> None:
    """1h for a governance proposal: a rejected registration set back to pending by SQL is
    refused as ended, and the operator is not registered."""
    p = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
        id=f"late{next(_case)}", roles=["investigator"], public_key_pem=public_pem(generate())))
    p = decide_proposal(d, p.id, "admin1", pb.REJECT, reason="not vetted")
    assert p.state == "REJECTED"
    db.run(("DELETE FROM proposal_approvals WHERE proposal_id = ?", (p.id,)),
           ("UPDATE proposals SET state = 'PENDING_APPROVAL', failure = '' WHERE id = ?",
            (p.id,)))
    before = violation_metric(d, "ended")
    e = rpc_error(decide_proposal, d, p.id, "admin1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "ended before" in e.details()
    assert violation_metric(d, "ended") == before + 1
    got = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
    assert got.state == "FAILED" and "ended before" in got.failure
    ops = d.admin().ListOperators(pb.ListOperatorsRequest()).operators
    assert json.loads(p.body_json)["change"]["operator_id"] not in [o.id for o in ops]


def seized_btc_wallet(d: Daemon) -> pb.Wallet:
    """A seized key (hex) imported into the HSM and approved by the governance quorum (template
    seized-sweep: one custody officer may sweep into own wallets)."""
    secret = coincurve.PrivateKey(secrets.token_bytes(32)).secret.hex()
    p = d.admin().ImportKey(pb.ImportKeyRequest(
        hex=secret, chain=pb.BITCOIN, network="regtest", case_ref=f"CASE-SZ-{next(_case)}",
        seizure_record=f"SR-{next(_case)}"))
    assert p.kind == "wallet.import" and p.state == "PENDING_APPROVAL"
    assert govern(d, p).state == "APPROVED"
    w = d.custody().GetWallet(pb.GetWalletRequest(
        wallet_id=json.loads(p.body_json)["change"]["wallet"]["id"]))
    assert w.status == pb.ACTIVE and w.template == "seized-sweep"
    return w


def multisig(d: Daemon, threshold: int) -> pb.Wallet:
    """A seized P2WSH sortedmulti with one HSM key and one outside cosigner key."""
    outside = coincurve.PrivateKey(secrets.token_bytes(32)).public_key.format()
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.BITCOIN, network="regtest", category=pb.SEIZED, case_ref="CASE-MS",
        script_type=pb.P2WSH_SORTEDMULTI, threshold=threshold, hsm_keys=1,
        cosigners=[outside.hex()]))
    assert w.status == pb.AWAITING_APPROVAL and w.proposal_id
    return w


def sweep(d: Daemon, source: pb.Wallet, dest: pb.Wallet, sats: int
          ) -> tuple[pb.Transfer, Any]:
    psbt, prev = build_psbt(source, [sats + 1_000],
                            [(address_to_script(dest.address, "regtest"), sats)])
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=source.id, psbt=psbt.to_base64().encode())), prev


# ---------------------------------------------------------------- from test_transfer_seal.py

SEAL = "does not carry signerd's seal"


def attack_reclassified_destination(d: Daemon, db: StoreWriter) -> None:
    """A seized-sweep wallet: one custody officer may sweep into signerd's own wallets, an
    outside address needs three approvers with a prosecutor. The writer rewrites the pending
    transfer's stored movement so the outside address reads as own_wallet, and its
    requirement to one officer."""
    w = eth_wallet(d, template="seized-sweep")
    own = eth_wallet(d)
    t = eth_transfer(d, w)
    assert t.movement.outputs[0].destination_class == "external"
    assert t.requirement.startswith("3 approvers"), t.requirement
    genuine = d.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    row = db.one("SELECT movement, requirement FROM transfers WHERE id = ?", (t.id,))
    sweep_row = eth_transfer(d, w, to=own.address)  # a genuine one-officer requirement
    one_officer = db.one("SELECT requirement FROM transfers WHERE id = ?",
                         (sweep_row.id,))["requirement"]
    movement = json.loads(row["movement"])
    movement["outputs"][0].update(destination_class="own_wallet", wallet_id=own.id,
                                  category="seized")
    db.run(("UPDATE transfers SET movement = ?, requirement = ? WHERE id = ?",
            (json.dumps(movement, sort_keys=True), one_officer, t.id)))
    # No operator is shown the rewritten statement.
    e = rpc_error(d.approval("cust1").GetStatement, pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    # An officer's approval (over the statement they were shown before) is refused, and the
    # transfer ends FAILED as an authority violation.
    before = violation_metric(d, "transfer")
    e = rpc_error(decide, d, t.id, "cust1", statement=genuine)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    assert_violation(d, db, t.id, "transfer", SEAL, before)
    # The legitimate counterpart: the genuine sweep into the own wallet, one officer.
    assert sweep_row.requirement.startswith("1 approver"), sweep_row.requirement
    assert_eth_signed(decide(d, sweep_row.id, "cust1"), w)


def attack_inserted_transfer_row(d: Daemon, db: StoreWriter) -> None:
    """The writer copies a genuine pending transfer into a new row of their own, with another
    destination in its payload and movement: nobody is shown it, nothing is signed."""
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    row = db.one("SELECT * FROM transfers WHERE id = ?", (t.id,))
    fake_id = "t_" + secrets.token_hex(10)
    mine = "0x" + "ab" * 20
    payload = json.loads(bytes(row["payload"]))
    payload.update(to=mine, nonce=payload["nonce"] + 10_000)
    movement = json.loads(row["movement"])
    movement["outputs"][0]["address"] = mine
    row.update(id=fake_id, payload=json.dumps(payload).encode(),
               movement=json.dumps(movement, sort_keys=True), idempotency_key=fake_id)
    cols = list(row)
    db.run((f"INSERT INTO transfers ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            tuple(row[c] for c in cols)))
    e = rpc_error(d.approval("inv1").GetStatement, pb.GetStatementRequest(
        transfer_id=fake_id, decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    before = violation_metric(d, "transfer")
    genuine = d.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    e = rpc_error(decide, d, fake_id, "inv1", statement=genuine)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    assert_violation(d, db, fake_id, "transfer", SEAL, before)
    # The genuine transfer is untouched by it and is signed by its quorum.
    decide(d, t.id, "inv1")
    assert_eth_signed(decide(d, t.id, "cust1"), w)


# A policy that covers only tiny amounts: a waiting transfer of 0.001 ETH is no longer allowed.
TINY_ONLY = """\
name = "tiny-only"
expiry = "24h"

[[rule]]
name = "tiny"
asset = "*"
max_amount = "1000"
category_change = ["none"]
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""


# ---------------------------------------------------------------- from test_governance_seals.py

def suspend(d: Daemon, op_id: str, reason: str) -> None:
    d.admin().SuspendOperator(pb.RevokeOperatorRequest(id=op_id, reason=reason))


def reinstate(d: Daemon, op_id: str) -> pb.Proposal:
    return d.admin().ReinstateOperator(pb.RevokeOperatorRequest(id=op_id, reason="cleared"))


def proposal(d: Daemon, proposal_id: str) -> pb.Proposal:
    return d.governance().GetProposal(pb.GetProposalRequest(proposal_id=proposal_id))


def stored_decisions(db: StoreWriter, proposal_id: str) -> list[SignedDecision]:
    return [SignedDecision(r["operator_id"], Decision(r["decision"]),
                           bytes.fromhex(r["signature"]))
            for r in db.rows("SELECT * FROM proposal_approvals WHERE proposal_id = ?",
                             (proposal_id,))]


def operator_ids(d: Daemon) -> set[str]:
    return {o.id for o in d.admin().ListOperators(pb.ListOperatorsRequest()).operators}


def signature_rows(db: StoreWriter, transfer_id: str) -> int:
    return int(db.one("SELECT COUNT(*) AS n FROM signatures WHERE transfer_id = ?",
                      (transfer_id,))["n"])


def attack_failed_proposal_appended(d: Daemon, db: StoreWriter, op_id: str = "cust2", *,
                                    restart: bool = False) -> None:
    """1: a FAILED reinstatement, with its genuine quorum, appended to the ledger after the
    operator was suspended again."""
    w = eth_wallet(d)
    suspend(d, op_id, "inquiry")
    stale, fresh = reinstate(d, op_id), reinstate(d, op_id)
    assert govern(d, fresh).state == "APPROVED"
    failed = govern(d, stale)
    assert failed.state == "FAILED" and "not suspended" in failed.failure, failed.failure
    assert len(stored_decisions(db, stale.id)) == 2  # its quorum, signed, is in the store
    suspend(d, op_id, "key compromised")
    t = eth_transfer(d, w)
    decide(d, t.id, "inv1")
    before = violation_metric(d, "ledger")
    # The writer: the reinstatement as the store holds it, its approvals, hashed and linked
    # exactly as signerd would, carrying the seal of the genuine entry before it; the head row
    # moved to it and the copies in the tables made to match.
    head = db.one("SELECT seq, hash FROM authority_head WHERE id = 1")
    last = db.one("SELECT seal FROM authority_log WHERE seq = ?", (head["seq"],))
    assert last["seal"]  # signerd sealed the suspension
    doc = json.loads(db.one("SELECT body FROM proposals WHERE id = ?", (stale.id,))["body"])
    entry = AU.make_entry(int(head["seq"]), bytes.fromhex(head["hash"]), AU.PROPOSAL, doc,
                          stored_decisions(db, stale.id))
    db.run(("INSERT INTO authority_log (seq, kind, body, approvals, prev_hash, hash,"
            " created_at, seal) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.kind, canon(doc), canon(entry.approvals_json()),
             entry.prev_hash.hex(), entry.hash.hex(), time.time(), last["seal"])),
           ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
            (entry.seq, entry.hash.hex())),
           ("UPDATE operators SET status = 'active' WHERE id = ?", (op_id,)),
           ("UPDATE proposals SET state = 'APPROVED', failure = '', applied_seq = ?"
            " WHERE id = ?", (entry.seq, stale.id)))
    needle = (f"authority ledger entry {entry.seq} (proposal {stale.id}): signerd's seal does "
              "not verify for this entry at this place")
    stopped = False
    try:
        # The reinstated-by-SQL operator's approval is refused, and so is every act reading the
        # ledger; nothing is signed.
        e = rpc_error(decide, d, t.id, op_id)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert needle in e.details(), e.details()
        e = rpc_error(d.governance().GetAuthority, pb.GetAuthorityRequest())
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and needle in e.details()
        monitor_ticks()
        assert signature_rows(db, t.id) == 0
        assert db.one("SELECT state, raw_tx FROM transfers WHERE id = ?", (t.id,)) == {
            "state": "PENDING_APPROVAL", "raw_tx": ""}
        assert violation_metric(d, "ledger") >= before + 1
        if restart:
            stopped = True
            assert d.stop() == 0
            r = refused_start(d.config)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1, r.stderr
            assert lines[0].startswith("signerd: refusing to serve this store: " + needle), lines
    finally:  # the writer's rows gone, the ledger is the one signerd wrote
        db.run(("DELETE FROM authority_log WHERE seq = ?", (entry.seq,)),
               ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
                (head["seq"], head["hash"])),
               ("UPDATE operators SET status = 'suspended' WHERE id = ?", (op_id,)),
               ("UPDATE proposals SET state = 'FAILED', failure = ?, applied_seq = 0"
                " WHERE id = ?", (failed.failure, stale.id)))
        if stopped:
            d.start()
    assert_no_signature(d, db, t.id)
    assert {o.id: o.status for o in d.admin().ListOperators(
        pb.ListOperatorsRequest()).operators}[op_id] == "suspended"
    # The legitimate counterpart: a reinstatement the quorum approves now; then it counts.
    assert govern(d, reinstate(d, op_id)).state == "APPROVED"
    assert_eth_signed(decide(d, t.id, op_id), w)


def attack_forged_proposal_row(d: Daemon, db: StoreWriter) -> None:
    """2a: a pending proposal row inserted by the writer, "submitted by admin1", registering an
    operator with every role."""
    instance = d.governance().GetAuthority(pb.GetAuthorityRequest()).instance_id
    name = f"mallory{secrets.token_hex(3)}"
    now = int(time.time())
    doc = {"id": "p_" + secrets.token_hex(10), "instance_id": instance,
           "kind": "operator.register", "submitter": "admin1", "created_at": now,
           "expires_at": now + 3600,
           "change": {"operator_id": name, "roles": ALL_ROLES,
                      "public_key_pem": public_pem(generate()).decode()}}
    before = violation_metric(d, "proposal")
    db.run(("INSERT INTO proposals (id, kind, body, state, submitter, subject, expires_at,"
            " created_at, updated_at) VALUES (?, ?, ?, 'PENDING_APPROVAL', 'admin1', ?, ?, ?, ?)",
            (doc["id"], doc["kind"], canon(doc), name, float(now + 3600), float(now),
             float(now))),)
    # Shown as what it is from the first read on (pending until the monitor's next probe).
    shown = proposal(d, doc["id"])
    assert "does not carry signerd's seal" in shown.failure, shown
    assert shown.summary.startswith("NOT SIGNERD'S PROPOSAL"), shown.summary
    assert not shown.requirement and not any(a.counted for a in shown.approvals)
    # The health monitor ends it FAILED as an authority violation.
    got = wait_for(lambda: (lambda p: p if p.state == "FAILED" else None)(
        proposal(d, doc["id"])), what=f"proposal {doc['id']} FAILED")
    assert "does not carry signerd's seal" in got.failure
    (event,) = audit_events(d, action="authority.violation", obj=doc["id"])
    details = json.loads(event.details_json)
    assert details["kind"] == "proposal" and "seal" in details["reason"] and \
        event.actor == "signerd"
    assert violation_metric(d, "proposal") >= before + 1
    # Never decided: its statement is refused, a decision on it too.
    e = rpc_error(d.governance("admin2").GetProposalStatement, pb.GetProposalStatementRequest(
        proposal_id=doc["id"], decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    key = load_private(d.state / "operators" / "admin2.key")
    e = rpc_error(d.governance("admin2").DecideProposal, pb.DecideProposalRequest(
        proposal_id=doc["id"], operator_id="admin2", decision=pb.APPROVE,
        signature=sign_statement(key, proposal_statement(doc, Decision.APPROVE))))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert not db.rows("SELECT * FROM proposal_approvals WHERE proposal_id = ?", (doc["id"],))
    assert name not in operator_ids(d)
    # The legitimate counterpart: the same registration made through signerd, approved by the
    # governance quorum.
    p = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
        id=name, roles=["investigator"], public_key_pem=public_pem(generate())))
    assert "seal" not in p.failure and not p.summary.startswith("NOT")
    assert govern(d, p).state == "APPROVED" and name in operator_ids(d)
    assert govern(d, d.admin().RevokeOperator(pb.RevokeOperatorRequest(
        id=name, reason="test"))).state == "APPROVED"


# ---------------------------------------------------------------- attestations (proofs of control)
#
# An attestation signs only after its quorum; a store writer tries to make one sign without it:
# a row signerd did not seal, a row changed after sealing, an ended attestation set back, and
# decision rows inserted directly. Each ends with no proof of control signed.

def attest_stub(d: Daemon, principal: str = "auditor") -> Any:
    from tests.support.rpc import rpc

    return rpc.AttestationStub(d.channel(principal))


def attestation(d: Daemon, attestation_id: str) -> dict[str, Any]:
    return json.loads(attest_stub(d).GetAttestation(pb.GetAttestationRequest(
        attestation_id=attestation_id)).json)


def new_attestation(d: Daemon, case_ref: str = "") -> dict[str, Any]:
    """An attestation of one fresh Ethereum wallet's case, asked by the auditor."""
    if not case_ref:
        case_ref = eth_wallet(d, category=pb.STRATEGIC).case_ref
    return json.loads(attest_stub(d).CreateAttestation(pb.CreateAttestationRequest(
        case_ref=case_ref, challenge=f"auditor-nonce-{secrets.token_hex(4)}")).json)


def attestation_statement(doc: dict[str, Any], decision: Decision = Decision.APPROVE) -> bytes:
    from signerd.core import attest as T

    return T.statement(doc, decision)


def decide_attestation(d: Daemon, attestation_id: str, name: str, decision: int = pb.APPROVE,
                       reason: str = "", statement: bytes | None = None) -> dict[str, Any]:
    """Operator ``name`` decides with their own key: the statement signerd hands out (or the
    one given, as an operator's tool would compute it), signed and submitted."""
    stub = attest_stub(d, name)
    if statement is None:
        statement = stub.GetAttestationStatement(pb.GetAttestationStatementRequest(
            attestation_id=attestation_id, decision=decision)).statement
    key = load_private(d.state / "operators" / f"{name}.key")
    return json.loads(stub.DecideAttestation(pb.DecideAttestationRequest(
        attestation_id=attestation_id, operator_id=name, decision=decision,
        signature=sign_statement(key, statement), reason=reason,
        statement_sha256=statement_digest(statement))).json)


def assert_attestation_unsigned(d: Daemon, db: StoreWriter, attestation_id: str) -> None:
    """No proof of control for the attestation: not SIGNED, no statement stored, none
    exported, no ``attestation.signed`` event."""
    row = db.one("SELECT state, result FROM attestations WHERE id = ?", (attestation_id,))
    assert row["state"] != "SIGNED" and row["result"] == "", row
    e = rpc_error(attest_stub(d).ExportAttestation,
                  pb.GetAttestationRequest(attestation_id=attestation_id))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert not audit_events(d, action="attestation.signed", obj=attestation_id)


def assert_attestation_violation(d: Daemon, db: StoreWriter, attestation_id: str, kind: str,
                                 needle: str, metric_before: float) -> None:
    """The attestation ended FAILED as an authority violation (reason, audit event, metric),
    and nothing was signed."""
    shown = attestation(d, attestation_id)
    assert shown["state"] == "FAILED", shown
    assert shown["failure"].startswith("authority violation: ") and needle in shown["failure"]
    (event,) = audit_events(d, action="authority.violation", obj=attestation_id)
    details = json.loads(event.details_json)
    assert details["kind"] == kind and needle in details["reason"] and event.actor == "signerd"
    assert violation_metric(d, kind) >= metric_before + 1
    assert_attestation_unsigned(d, db, attestation_id)


def attestation_refused(d: Daemon, call: Callable[[], Any], needle: str) -> None:
    e = rpc_error(call)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert needle in e.details(), e.details()


def attack_forged_attestation_row(d: Daemon, db: StoreWriter) -> None:
    """2a: attestation rows signerd never sealed: one waiting for approvals (a copy of a real
    document under a new id, its texts rewritten to name it), one inserted APPROVED with
    decision rows. Neither is decided on or signed; each ends FAILED as an authority
    violation; set back to waiting after that, it is refused as ended."""
    real = new_attestation(d)
    forged_id = "a_" + secrets.token_hex(10)
    doc = json.loads(json.dumps(real["document"]).replace(real["id"], forged_id))
    row = db.one("SELECT * FROM attestations WHERE id = ?", (real["id"],))
    db.run(db.insert("attestations", {**row, "id": forged_id, "document": canon(doc)}))
    shown = attestation(d, forged_id)
    assert shown["document"] is None and "not signerd's" in shown["not_signerds"], shown
    attestation_refused(d, lambda: attest_stub(d, "inv1").GetAttestationStatement(
        pb.GetAttestationStatementRequest(attestation_id=forged_id, decision=pb.APPROVE)),
        "not signerd's")
    # An operator who signs the forged document's statement anyway is refused.
    before = violation_metric(d, "attestation")
    attestation_refused(d, lambda: decide_attestation(
        d, forged_id, "inv1", statement=attestation_statement(doc)), "not signerd's")
    assert_attestation_violation(d, db, forged_id, "attestation", "seal", before)
    assert not db.rows("SELECT * FROM attestation_approvals WHERE attestation_id = ?",
                       (forged_id,))
    # Ended, and set back to waiting by the writer: refused as ended.
    db.run(("UPDATE attestations SET state = 'PENDING_APPROVAL', failure = '' WHERE id = ?",
            (forged_id,)),)
    before = violation_metric(d, "ended")
    attestation_refused(d, lambda: decide_attestation(
        d, forged_id, "inv1", statement=attestation_statement(doc)), "ended before")
    assert violation_metric(d, "ended") == before + 1
    assert_attestation_unsigned(d, db, forged_id)

    # Inserted APPROVED, with decision rows: the export signs nothing.
    approved_id = "a_" + secrets.token_hex(10)
    doc2 = json.loads(json.dumps(real["document"]).replace(real["id"], approved_id))
    db.run(db.insert("attestations", {**row, "id": approved_id, "document": canon(doc2),
                                      "state": "APPROVED"}),
           *[db.insert("attestation_approvals", {
               "attestation_id": approved_id, "operator_id": op, "decision": "APPROVE",
               "signature": "00" * 64, "statement_sha256": "00" * 32, "reason": "",
               "created_at": time.time()}) for op in ("inv1", "cust1")])
    before = violation_metric(d, "attestation")
    attestation_refused(d, lambda: attest_stub(d).ExportAttestation(
        pb.GetAttestationRequest(attestation_id=approved_id)), "not signerd's")
    assert_attestation_violation(d, db, approved_id, "attestation", "seal", before)


# What a store writer changes in a sealed attestation row: each column signerd reads.
ROW_CHANGES: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "document": lambda row, other: row["document"].replace("auditor-nonce-", "auditor-nonce-X"),
    "seal": lambda row, other: other["seal"],
    "submitter": lambda row, other: "cust2",
    "expires_at": lambda row, other: row["expires_at"] + 86400,
    "created_at": lambda row, other: row["created_at"] - 3600,
    "category": lambda row, other: "strategic",
    "case_ref": lambda row, other: other["case_ref"],
}


def attack_changed_attestation_row(d: Daemon, db: StoreWriter, column: str) -> None:
    """2b: after the first approval, the writer changes one column of the sealed row (for the
    document: the challenge in the text to be signed). The decision that would have made the
    quorum is refused, the attestation ends FAILED as an authority violation, nothing is
    signed."""
    a = new_attestation(d)
    other = db.one("SELECT * FROM attestations WHERE id = ?", (new_attestation(d)["id"],))
    decide_attestation(d, a["id"], "inv1")
    row = db.one("SELECT * FROM attestations WHERE id = ?", (a["id"],))
    changed = ROW_CHANGES[column](row, other)
    assert changed != row[column]
    db.run((f"UPDATE attestations SET {column} = ? WHERE id = ?", (changed, a["id"])),)
    before = violation_metric(d, "attestation")
    attestation_refused(d, lambda: decide_attestation(
        d, a["id"], "cust1", statement=attestation_statement(a["document"])), "not signerd's")
    assert_attestation_violation(d, db, a["id"], "attestation", "not signerd's", before)


def attack_changed_holdings_statement(d: Daemon, db: StoreWriter) -> None:
    """2b for what signerd stored once signed: a holdings statement changed in the store (a
    proof replaced by another attestation's) is refused, not served."""
    stored = []
    for _ in range(2):
        a = new_attestation(d)
        decide_attestation(d, a["id"], "inv1")
        assert decide_attestation(d, a["id"], "cust1")["state"] == "SIGNED"
        stored.append(json.loads(db.one("SELECT result FROM attestations WHERE id = ?",
                                        (a["id"],))["result"]))
    first, second = stored
    first["proofs"] = second["proofs"]
    a_id = first["attestation"]["id"]
    db.run(("UPDATE attestations SET result = ? WHERE id = ?", (json.dumps(first), a_id)),)
    attestation_refused(d, lambda: attest_stub(d).ExportAttestation(
        pb.GetAttestationRequest(attestation_id=a_id)), "not the one signerd sealed")


def rejected_attestation(d: Daemon) -> dict[str, Any]:
    """Approved by an investigator, then vetoed by the judge: REJECTED."""
    a = new_attestation(d)
    decide_attestation(d, a["id"], "inv1")
    got = decide_attestation(d, a["id"], "judge1", pb.REJECT, reason="not now")
    assert got["state"] == "REJECTED", got
    return a


def resurrect_attestation(db: StoreWriter, attestation_id: str, state: str) -> None:
    """The writer deletes the judge's rejection and sets the attestation back to ``state``."""
    db.run(("DELETE FROM attestation_approvals WHERE attestation_id = ? AND"
            " operator_id = 'judge1'", (attestation_id,)),
           ("UPDATE attestations SET state = ?, failure = '' WHERE id = ?",
            (state, attestation_id)))


def attack_resurrected_attestation(d: Daemon, db: StoreWriter) -> None:
    """2c: a rejected attestation set back by SQL: to PENDING_APPROVAL (so that the custody
    officer's approval would complete the quorum with the investigator's), and to APPROVED.
    The verified audit chain records the rejection: each is refused as ended, ends FAILED,
    and nothing is signed."""
    a = rejected_attestation(d)
    resurrect_attestation(db, a["id"], "PENDING_APPROVAL")
    assert attestation(d, a["id"])["state"] == "PENDING_APPROVAL"  # what cust1 is shown
    before = violation_metric(d, "ended")
    attestation_refused(d, lambda: decide_attestation(d, a["id"], "cust1"), "ended before")
    assert_attestation_violation(d, db, a["id"], "ended", "ended before", before)

    b = rejected_attestation(d)
    resurrect_attestation(db, b["id"], "APPROVED")
    before = violation_metric(d, "ended")
    attestation_refused(d, lambda: attest_stub(d).ExportAttestation(
        pb.GetAttestationRequest(attestation_id=b["id"])), "ended before")
    assert_attestation_violation(d, db, b["id"], "ended", "ended before", before)


def attack_resurrected_attestation_across_a_restart(d: Daemon, db: StoreWriter) -> None:
    """2c across a restart of ``d`` (a daemon of its own): the ended attestations are read
    again through the endings index and checked against the latest HSM-signed checkpoint."""
    a = rejected_attestation(d)
    eth_wallet(d)  # so that the rejection is not the checkpoint's head event
    d.audit("auditor").GetHead(pb.GetHeadRequest())  # a checkpoint covering the rejection
    d.stop()
    resurrect_attestation(db, a["id"], "PENDING_APPROVAL")
    d.start()
    before = violation_metric(d, "ended")
    attestation_refused(d, lambda: decide_attestation(d, a["id"], "cust1"), "ended before")
    assert_attestation_violation(d, db, a["id"], "ended", "ended before", before)


def attack_inserted_attestation_decisions(d: Daemon, db: StoreWriter) -> None:
    """2d: decision rows inserted directly count for nothing: the investigator's and the
    custody officer's real signatures from another attestation, replayed onto this one with
    its state set to APPROVED, sign nothing; the attestation ends FAILED (kind approval)."""
    signed = new_attestation(d)
    decide_attestation(d, signed["id"], "inv1")
    assert decide_attestation(d, signed["id"], "cust1")["state"] == "SIGNED"
    a = new_attestation(d)
    rows = db.rows("SELECT * FROM attestation_approvals WHERE attestation_id = ?",
                   (signed["id"],))
    assert len(rows) == 2
    db.run(*[db.insert("attestation_approvals", {**r, "attestation_id": a["id"]})
             for r in rows],
           ("UPDATE attestations SET state = 'APPROVED' WHERE id = ?", (a["id"],)))
    shown = attestation(d, a["id"])
    assert shown["remaining"], shown  # no quorum counted
    before = violation_metric(d, "approval")
    attestation_refused(d, lambda: attest_stub(d).ExportAttestation(
        pb.GetAttestationRequest(attestation_id=a["id"])), "does not verify")
    assert_attestation_violation(d, db, a["id"], "approval", "does not verify", before)
    # Left waiting instead, the rows make the next honest decision end it, unsigned.
    c = new_attestation(d)
    (cust1,) = [r for r in rows if r["operator_id"] == "cust1"]
    db.run(db.insert("attestation_approvals", {**cust1, "attestation_id": c["id"]}),)
    before = violation_metric(d, "approval")
    attestation_refused(d, lambda: decide_attestation(d, c["id"], "inv1"), "does not verify")
    assert_attestation_violation(d, db, c["id"], "approval", "does not verify", before)


def attack_changed_cosigning_record(d: Daemon, db: StoreWriter) -> None:
    """2b for a multisig with outside cosigners (2-of-3, one key in the HSM): signerd's sealed
    record of an attestation waiting for cosigners, copied by the writer onto an attestation
    without its quorum (set AWAITING_COSIGNERS), takes no cosigner's signature; the record
    edited (a cosigner's PSBT put in place of signerd's) ends the attestation FAILED as an
    authority violation. Nothing is signed either way."""
    from tests.support.bip322 import cosigner_signs
    from tests.support.bitcoin import wallet

    outside = [secrets.token_bytes(32) for _ in range(2)]
    w = wallet(d, pb.P2WSH_SORTEDMULTI, threshold=2, hsm_keys=1,
               cosigners=[coincurve.PrivateKey(k).public_key.format().hex() for k in outside])
    a = new_attestation(d, w.case_ref)
    decide_attestation(d, a["id"], "inv1")
    assert decide_attestation(d, a["id"], "cust1")["state"] == "AWAITING_COSIGNERS"
    (waiting,) = attestation(d, a["id"])["cosigning"]
    signed = cosigner_signs(waiting["psbt"], outside[0]).encode()
    record = db.one("SELECT result FROM attestations WHERE id = ?", (a["id"],))["result"]

    b = new_attestation(d, w.case_ref)
    decide_attestation(d, b["id"], "inv1")  # one approval: no quorum
    db.run(("UPDATE attestations SET state = 'AWAITING_COSIGNERS', result = ? WHERE id = ?",
            (record, b["id"])),)
    attestation_refused(d, lambda: attest_stub(d).CombineAttestation(
        pb.CombineAttestationRequest(attestation_id=b["id"], psbt=signed)), "quorum")
    row = db.one("SELECT state, result FROM attestations WHERE id = ?", (b["id"],))
    assert row == {"state": "AWAITING_COSIGNERS", "result": record}, row
    assert not audit_events(d, action="attestation.signed", obj=b["id"])

    edited = json.loads(record)
    edited["waiting"][0]["psbt"] = signed.decode()
    db.run(("UPDATE attestations SET result = ? WHERE id = ?", (json.dumps(edited), a["id"])),)
    before = violation_metric(d, "attestation")
    attestation_refused(d, lambda: attest_stub(d).CombineAttestation(
        pb.CombineAttestationRequest(attestation_id=a["id"], psbt=signed)),
        "record of cosigning is not signerd's")
    shown = attestation(d, a["id"])
    assert shown["state"] == "FAILED" and "record of cosigning" in shown["failure"], shown
    assert violation_metric(d, "attestation") == before + 1
    assert not audit_events(d, action="attestation.signed", obj=a["id"])


# ---------------------------------------------------------------- Safe wallets

def safe_wallet(d: Daemon) -> pb.Wallet:
    """A 2-of-2 Safe wallet (this daemon's owner key and an outside owner), approved by the
    demo governance quorum. No chain is needed: its address is the setup's CREATE2 address,
    of Safe v1.4.1's canonical factory, singleton and fallback handler."""
    from eth_utils import keccak, to_checksum_address

    from signerd.core.ethereum.safe import SafeSetup, predicted_address
    from tests.support.safe import (CANONICAL_FACTORY, CANONICAL_FALLBACK_HANDLER,
                                    CANONICAL_SINGLETON)

    case = f"CASE-SAFE-{next(_case)}"
    share = d.custody().CreateKeyShare(pb.CreateKeyShareRequest(category=pb.SEIZED,
                                                                case_ref=case))
    point = coincurve.PublicKey(bytes(share.public_key)).format(compressed=False)[1:]
    owner = to_checksum_address(keccak(point)[12:])
    doc = {"owners": [owner, Account.create().address], "threshold": 2,
           "fallbackHandler": CANONICAL_FALLBACK_HANDLER, "singleton": CANONICAL_SINGLETON,
           "factory": CANONICAL_FACTORY, "saltNonce": next(_nonce)}
    address = to_checksum_address(predicted_address(SafeSetup.from_json(doc)))
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[31337], script_type=pb.SAFE, category=pb.SEIZED,
        case_ref=case, hsm_key_ids=[share.key_id], safe_address=address,
        safe_setup=json.dumps(doc)))
    p = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=w.proposal_id))
    assert govern(d, p).state == "APPROVED"
    return d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))


def attack_safe_owners_and_threshold(d: Daemon, db: StoreWriter) -> None:
    """A Safe wallet's threshold lowered and an owner swapped in the store's copies, then in
    its record: the wallet no longer verifies, and the quorum-making approval of a SafeTx
    ends it FAILED, unsigned."""
    from tests.support.safe import safe_tx

    w = safe_wallet(d)
    t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, safe_tx=json.dumps(safe_tx(EXTERNAL_ETH, value=1, nonce=0))))
    decide(d, t.id, "inv1")
    shown = d.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    row = db.one("SELECT safe_owners, safe_threshold, record FROM wallets WHERE id = ?", (w.id,))
    forged = json.dumps([w.safe_owners[0], Account.create().address])
    for statement in (("UPDATE wallets SET safe_threshold = 1 WHERE id = ?", (w.id,)),
                      ("UPDATE wallets SET safe_owners = ? WHERE id = ?", (forged, w.id)),
                      ("UPDATE wallets SET record = ? WHERE id = ?",
                       (row["record"].replace('"threshold":2', '"threshold":1'), w.id))):
        db.run(statement)
        e = rpc_error(d.custody().GetWallet, pb.GetWalletRequest(wallet_id=w.id))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert f"wallet {w.id}" in e.details(), e.details()
        db.run(("UPDATE wallets SET safe_owners = ?, safe_threshold = ?, record = ? "
                "WHERE id = ?", (row["safe_owners"], row["safe_threshold"], row["record"],
                                 w.id)))
    db.run(("UPDATE wallets SET safe_threshold = 1, safe_owners = ? WHERE id = ?",
            (forged, w.id)))
    e = rpc_error(decide, d, t.id, "cust1", statement=shown)
    assert "Safe owners, threshold or setup in the store differ" in e.details(), e.details()
    got = assert_no_signature(d, db, t.id)
    assert got.state == pb.FAILED and "authority violation" in got.failure, got
