"""Governance attacks: one insider (or the platform plus one insider) tries to get a signature or
to loosen a rule alone. Real daemons, real SoftHSM, real gRPC over mTLS, SQLite store.

Each attack ends with NO signature: the signatures table has no row for the transfer and it has
no raw_tx. Where the store was written behind signerd's back, the transfer also ends FAILED
with an "authority violation: ..." reason, an ``authority.violation`` audit event (read through
Audit/ListEvents as the auditor) and ``signerd_authority_violations_total{kind}`` counted. Every
legitimate counterpart is shown to succeed, its signed output checked by an independent
library (eth-account for Ethereum, python-bitcointx for Bitcoin).

1. A store writer alone (direct SQL on the daemon's database; no HSM, no operator key):
   a. two approval rows (inv1, cust1) with all-zero signatures, transfer set to APPROVED;
   b. two ``operators`` rows with every role and the writer's own keys, plus approvals
      correctly signed by those keys over the real statement, transfer set to APPROVED;
   c. a wallet's ``policies`` row rewritten to a one-approver policy;
   d. a wallet frozen by FreezeWallet (a ledger entry), then ``UPDATE wallets SET status =
      'ACTIVE'``;
   e. a wallet row without a seal at a transfer's destination, to make it ``own_wallet``;
   f. a forged ``authority_log`` entry (a proposal registering the writer as an operator with
      fake admin approvals, the head row moved to it);
   g. the genesis row replaced by a genesis the writer made and signed with keys of their own;
   h. (not in the issue) a judge's veto erased: the REJECT row deleted, the state set back to
      PENDING_APPROVAL, before an honest custody officer approves; also with the rejection's
      audit events deleted, across a restart (with an ending event altered), and for a
      rejected governance proposal.
   Each is an ``attack_...(daemon, store_writer)`` function; every one of them is repeated on
   PostgreSQL in test_governance_postgres.py (f, g and h across a restart on a daemon and a
   database of their own, since they stop and restart it).
2. One admin alone: (a) registers an operator with every role; (b) sets a policy naming an
   operator nobody registered; (c) unfreezes by an order of their own; (d) registers another
   operator's public key under a new id; (e) approves the proposal they submitted themselves.
3. The platform plus one custody officer: (a) a "seized" 1-of-2 multisig whose outside key alone
   can spend, as the destination of a one-officer sweep; (b) wallets with policy text of their
   own, with an unknown template, and with every template, sending out with one approval.
4. Bad proposals: malformed (unknown role, bad operator id), one that would loosen a pending
   transfer, one approved by its own submitter; each refused with its status and message, and
   nothing changed.
5. kill -9 right after (and during) the decision that completes a proposal's quorum: the effect
   is in the decision's store transaction, so after the restart it happened exactly once (or,
   killed before the commit, not at all).
"""
from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import coincurve
import grpc
import pytest
from eth_account import Account

from signerd.core import authority as AU
from signerd.core import canonical
from signerd.core import engine as E
from signerd.core.approval import (SignedDecision, build_statement, genesis_statement,
                                   proposal_statement, sign_statement, statement_digest)
from signerd.core.bitcoin.address import address_to_script
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private
from signerd.adapters.store.codec import transfer_from_row
from signerd.core.operator_keys import generate, public_pem
from signerd.services.transfers import movement_from_json
from tests.helpers import (Daemon, decide, decide_proposal, edit_config, govern, init_state, pb,
                           register_operator, rpc_error, set_policy, signerd_cmd)
from tests.integration.test_bitcoin_e2e import build_psbt, verify_with_bitcointx
from tests.integration.test_ethereum_e2e import submit, tx_fields

PROBE = 0.5  # [hsm] probe_seconds: the monitor picks up APPROVED transfers this often
EXTERNAL_ETH = "0x000000000000000000000000000000000000dEaD"
ALL_ROLES = ["admin", "auditor", "custody_officer", "investigator", "judge", "prosecutor"]
ONE_APPROVER = 'name = "one"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 1\n'


# ---------------------------------------------------------------- the store, as a writer has it

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


# ---------------------------------------------------------------- what the daemon shows

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


# ---------------------------------------------------------------- making things

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
                           movement_from_json(row["movement"]),
                           decision)


def insert_approval(db: StoreWriter, transfer_id: str, operator_id: str, signature: bytes,
                    statement: bytes) -> tuple[str, tuple[Any, ...]]:
    return ("INSERT INTO approvals (transfer_id, operator_id, decision, signature,"
            " statement_sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (transfer_id, operator_id, "APPROVE", signature.hex(),
             statement_digest(statement).hex(), "", time.time()))


def operator_cert(d: Daemon, name: str) -> None:
    """A client certificate for ``name`` from the dev CA (as test_revoked_operator does)."""
    from signerd.adapters import pki
    from tests.helpers import dev_ca

    key, cert = pki.issue_client(*dev_ca(d.state), name)
    pki.write_pem_key(d.state / "pki" / "clients" / f"{name}.key", key)
    pki.write_pem_cert(d.state / "pki" / "clients" / f"{name}.pem", cert)


def authority_snapshot(d: Daemon) -> tuple[Any, ...]:
    """Everything a governance act could change, as the daemon proves it, plus the store's
    proposal count."""
    a = d.governance().GetAuthority(pb.GetAuthorityRequest())
    proposals = d.governance().ListProposals(pb.ListProposalsRequest(
        page=pb.Page(page_size=1000))).proposals
    return (a.seq, a.head, a.governance_toml,
            tuple((t.name, t.sha256) for t in a.templates),
            tuple((o.id, tuple(o.roles), o.status, o.fingerprint) for o in a.operators),
            tuple((f.wallet_id, f.order_ref) for f in a.frozen),
            len(proposals))


def refused_start(cfg: Path) -> subprocess.CompletedProcess[str]:
    """`signerd run` on a store it must refuse: exits at once."""
    return subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True,
                          text=True, timeout=60)


def fresh_daemon(path: Path) -> Daemon:
    cfg = init_state(path)
    edit_config(cfg, "hsm", probe_seconds=PROBE)
    return Daemon(cfg).start()


# ---------------------------------------------------------------- attacks shared with PostgreSQL
# Each takes the daemon and the store writer for its database.

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
    statement = d.approval(name).GetStatement(pb.GetStatementRequest(
        transfer_id=ok.id, decision=pb.APPROVE)).statement
    assert_eth_signed(d.approval(name).SubmitApproval(pb.SubmitApprovalRequest(
        transfer_id=ok.id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, statement),
        statement_sha256=statement_digest(statement))), w)


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
    # The legitimate counterpart: the real (sealed) wallet is own_wallet; one officer signs.
    ok = eth_transfer(d, w, to=real.address)
    assert ok.movement.outputs[0].destination_class == "own_wallet"
    assert ok.requirement.startswith("1 approver"), ok.requirement
    assert_eth_signed(decide(d, ok.id, "cust1"), w)


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
    instance = d.governance().GetAuthority(pb.GetAuthorityRequest()).instance_id
    mallory = generate()
    now = int(time.time())
    doc = {"id": "p_" + secrets.token_hex(10), "instance_id": instance,
           "kind": "operator.register", "submitter": "admin", "created_at": now,
           "expires_at": now + 3600,
           "change": {"operator_id": "mallory", "roles": ALL_ROLES,
                      "public_key_pem": public_pem(mallory).decode()}}
    fakes = [SignedDecision(op, Decision.APPROVE,
                            sign_statement(mallory, proposal_statement(doc, Decision.APPROVE)))
             for op in ("admin1", "admin2")]
    entry = AU.make_entry(int(head["seq"]), bytes.fromhex(head["hash"]), AU.PROPOSAL, doc,
                          fakes)
    before = violation_metric(d, "ledger")
    db.run(("INSERT INTO authority_log (seq, kind, body, approvals, prev_hash, hash,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.kind, canon(doc),
             canon(entry.approvals_json()),
             entry.prev_hash.hex(), entry.hash.hex(), time.time())),
           ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
            (entry.seq, entry.hash.hex())),
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


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = fresh_daemon(tmp_path_factory.mktemp("govattack") / "state")
    yield d
    d.stop()


@pytest.fixture
def db(daemon: Daemon) -> SqliteWriter:
    return sqlite_writer(daemon)


# ---------------------------------------------------------------- 1. a store writer alone

def test_store_writer_zero_signature_approvals(daemon: Daemon, db: SqliteWriter) -> None:
    attack_zero_signature_approvals(daemon, db)


def test_store_writer_forged_operators_with_every_role(daemon: Daemon, db: SqliteWriter
                                                        ) -> None:
    attack_forged_operators(daemon, db)


def test_store_writer_one_approver_policy_row(daemon: Daemon, db: SqliteWriter) -> None:
    attack_one_approver_policy_row(daemon, db)


def test_store_writer_unfreezes_by_sql(daemon: Daemon, db: SqliteWriter) -> None:
    attack_thawed_frozen_wallet(daemon, db)


def test_store_writer_fake_wallet_at_the_destination(daemon: Daemon, db: SqliteWriter) -> None:
    attack_fake_wallet_at_the_destination(daemon, db)


def test_store_writer_erases_a_veto(daemon: Daemon, db: SqliteWriter) -> None:
    """Not in the issue's list (found while writing these): see attack_erased_veto."""
    attack_erased_veto(daemon, db)


def test_store_writer_erases_a_veto_from_the_audit_chain_too(daemon: Daemon,
                                                           db: SqliteWriter) -> None:
    attack_erased_veto_and_its_audit_events(daemon, db)


def test_store_writer_erases_a_veto_then_the_daemon_restarts(tmp_path: Path) -> None:
    d = fresh_daemon(tmp_path / "state")
    try:
        attack_erased_veto_across_a_restart(d, sqlite_writer(d))
    finally:
        d.stop()


def test_store_writer_erases_a_proposal_rejection(daemon: Daemon, db: SqliteWriter) -> None:
    attack_erased_proposal_rejection(daemon, db)


def test_store_writer_forged_authority_ledger_entry(tmp_path: Path) -> None:
    d = fresh_daemon(tmp_path / "state")
    try:
        attack_forged_authority_ledger_entry(d, sqlite_writer(d))
    finally:
        d.stop()


def test_store_writer_replaced_genesis(tmp_path: Path) -> None:
    d = fresh_daemon(tmp_path / "state")
    try:
        attack_replaced_genesis(d, sqlite_writer(d))
    finally:
        d.stop()


# ---------------------------------------------------------------- 2. one admin alone

def test_one_admin_registers_an_operator_with_every_role(daemon: Daemon, db: SqliteWriter
                                                         ) -> None:
    name = f"rogue{secrets.token_hex(3)}"
    key = generate()
    operator_cert(daemon, name)
    p = daemon.admin().RegisterOperator(pb.RegisterOperatorRequest(
        id=name, roles=ALL_ROLES, public_key_pem=public_pem(key)))
    assert p.kind == "operator.register" and p.state == "PENDING_APPROVAL"
    assert "admin x2" in p.remaining, p.remaining
    ids = {o.id for o in daemon.admin().ListOperators(pb.ListOperatorsRequest()).operators}
    assert name not in ids
    # The would-be operator, with a valid client certificate, can approve nothing.
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    decide(daemon, t.id, "inv1")
    statement = daemon.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    e = rpc_error(daemon.approval(name).SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t.id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, statement), statement_sha256=statement_digest(statement)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == f"principal {name} is not known to this signerd"
    e = rpc_error(daemon.approval(name).GetStatement, pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    # ... not even the proposal that would register them.
    doc = json.loads(p.body_json)
    e = rpc_error(daemon.governance(name).DecideProposal, pb.DecideProposalRequest(
        proposal_id=p.id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, proposal_statement(doc, Decision.APPROVE))))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert daemon.governance().GetProposal(pb.GetProposalRequest(
        proposal_id=p.id)).state == "PENDING_APPROVAL"
    assert_no_signature(daemon, db, t.id)
    assert db.one("SELECT COUNT(*) AS n FROM operators WHERE id = ?", (name,))["n"] == 0
    # The legitimate counterpart: the governance quorum approves; then their approval counts.
    assert govern(daemon, p).state == "APPROVED"
    statement = daemon.approval(name).GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    assert_eth_signed(daemon.approval(name).SubmitApproval(pb.SubmitApprovalRequest(
        transfer_id=t.id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, statement),
        statement_sha256=statement_digest(statement))), w)
    revoke = daemon.admin().RevokeOperator(pb.RevokeOperatorRequest(id=name, reason="test"))
    assert govern(daemon, revoke).state == "APPROVED"  # leave the shared daemon as it was


def test_one_admin_policy_naming_an_unregistered_operator(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    before = authority_snapshot(daemon)
    policy = ('name = "grouped"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 2\n'
              'roles = { investigator = 1, custody_officer = 1 }\n'
              'group = ["inv1", "cust1", "ghost"]\n')
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id, toml=policy))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == ("document: names operator 'ghost', who is not a registered "
                           "operator"), e.details()
    assert authority_snapshot(daemon) == before
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 1
    # The legitimate counterpart: a group of registered operators, through the quorum.
    set_policy(daemon, w.id, policy.replace(', "ghost"', ""))
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 2
    t = eth_transfer(daemon, w)
    decide(daemon, t.id, "inv1")
    assert_eth_signed(decide(daemon, t.id, "cust1"), w)


def test_one_admin_unfreezes_by_an_order_of_their_own(daemon: Daemon, db: SqliteWriter
                                                      ) -> None:
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-7"))
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref="anything"))
    assert p.kind == "wallet.unfreeze" and p.state == "PENDING_APPROVAL"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
    frozen = daemon.governance().GetAuthority(pb.GetAuthorityRequest()).frozen
    assert (w.id, "ORDER-7") in {(f.wallet_id, f.order_ref) for f in frozen}
    decide(daemon, t.id, "inv1")
    assert decide(daemon, t.id, "cust1").state == pb.APPROVED
    monitor_ticks()
    assert assert_no_signature(daemon, db, t.id).state == pb.APPROVED
    # The legitimate counterpart: the governance quorum approves the unfreeze; it signs.
    assert govern(daemon, p).state == "APPROVED"
    assert_eth_signed(wait_state(daemon, t.id, pb.SIGNED), w)


def test_one_admin_registers_another_operators_key(daemon: Daemon) -> None:
    before = authority_snapshot(daemon)
    pem = (daemon.state / "operators" / "cust1.pub").read_bytes()
    e = rpc_error(daemon.admin().RegisterOperator, pb.RegisterOperatorRequest(
        id="cust1b", roles=["custody_officer", "investigator"], public_key_pem=pem))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already registered to operator cust1" in e.details(), e.details()
    assert authority_snapshot(daemon) == before


def test_one_admin_approves_their_own_proposal(tmp_path: Path) -> None:
    """With the demo governance (two of the two admins), a proposal by one of them could never
    pass (the submitter never counts): refused at once, naming why. With a third admin, one
    admin's proposal is made, its submitter's own decision is refused, and the other two pass
    it."""
    from signerd.adapters.key_files import write_keypair

    d = fresh_daemon(tmp_path / "state")
    try:
        before = authority_snapshot(d)
        request = pb.RegisterOperatorRequest(id=f"friend{secrets.token_hex(3)}", roles=ALL_ROLES,
                                             public_key_pem=public_pem(generate()))
        e = rpc_error(d.admin("admin1").RegisterOperator, request)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert e.details() == (
            "operator.register proposals need 2 approvers (admin x2), and the submitter never "
            "counts: the active operators other than admin1 cannot meet it, so this proposal "
            "could never pass; let another operator propose it"), e.details()
        assert authority_snapshot(d) == before
        key = generate()
        write_keypair(key, d.state / "operators" / "admin3.key",
                      d.state / "operators" / "admin3.pub")
        operator_cert(d, "admin3")
        register_operator(d, "admin3", ["admin"], public_pem(key))
        p = d.admin("admin1").RegisterOperator(request)
        assert p.submitter == "admin1" and p.state == "PENDING_APPROVAL"
        e = rpc_error(decide_proposal, d, p.id, "admin1")
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.details() == f"operator admin1 submitted proposal {p.id} and cannot decide on it"
        assert not d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id)).approvals
        assert decide_proposal(d, p.id, "admin2").state == "PENDING_APPROVAL"
        assert decide_proposal(d, p.id, "admin3").state == "APPROVED"
    finally:
        d.stop()


# ---------------------------------------------------------------- 3. the platform + one officer

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


def test_platform_and_one_officer_sweep_into_a_one_of_two_multisig(daemon: Daemon,
                                                                   db: SqliteWriter) -> None:
    seized = seized_btc_wallet(daemon)
    trap = multisig(daemon, threshold=1)  # its outside key alone can spend
    t, _ = sweep(daemon, seized, trap, 5 * 10**8)
    assert t.movement.outputs[0].destination_class == "external"  # while awaiting approval
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="x"))
    # Even approved by the governance, it is not one of signerd's own wallets.
    p = daemon.governance().GetProposal(pb.GetProposalRequest(proposal_id=trap.proposal_id))
    assert p.kind == "wallet.create" and govern(daemon, p).state == "APPROVED"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(
        wallet_id=trap.id)).status == pb.ACTIVE
    t, _ = sweep(daemon, seized, trap, 5 * 10**8)
    (out,) = t.movement.outputs
    assert out.destination_class == "external" and out.wallet_id == trap.id, out
    assert t.requirement.startswith("3 approvers") and "prosecutor x1" in t.requirement
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.PENDING_APPROVAL and "investigator x1" in t.remaining
    assert_no_signature(daemon, db, t.id)
    # The legitimate counterpart: a 2-of-2 with one outside key, approved by the governance,
    # cannot be spent without signerd's key: own_wallet, and one officer's sweep is signed.
    safe = multisig(daemon, threshold=2)
    assert govern(daemon, daemon.governance().GetProposal(pb.GetProposalRequest(
        proposal_id=safe.proposal_id))).state == "APPROVED"
    ok, prev = sweep(daemon, seized, safe, 5 * 10**8)
    assert ok.movement.outputs[0].destination_class == "own_wallet"
    assert ok.requirement.startswith("1 approver"), ok.requirement
    ok = decide(daemon, ok.id, "cust1")
    assert ok.state == pb.SIGNED and verify_with_bitcointx(ok.raw_tx, prev) == 1


def test_platform_policy_text_unknown_template_and_the_floor(daemon: Daemon, db: SqliteWriter
                                                             ) -> None:
    keys_before = daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count
    req: dict[str, Any] = dict(chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED,
                               case_ref="CASE-PLAT")
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        **req, policy_toml=ONE_APPROVER))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("policy_toml: the platform names a governance-approved "
                                  "template"), e.details()
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(**req, template="free"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("template: 'free' is not a policy template"), e.details()
    assert daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count == keys_before
    # A template of one approver, legitimately added by the governance quorum: the floor in
    # code still holds for an outside destination.
    p = daemon.admin().SetTemplate(pb.SetTemplateRequest(name="single", toml=ONE_APPROVER))
    assert govern(daemon, p).state == "APPROVED"
    templates = [t.name for t in daemon.admin("platform").ListTemplates(
        pb.ListTemplatesRequest()).templates]
    assert {"two-key", "tiered", "seized-sweep", "category-movement", "single"} <= set(templates)
    for name in templates:
        w = eth_wallet(daemon, template=name)
        assert w.template == name
        t = eth_transfer(daemon, w)
        assert t.movement.outputs[0].destination_class == "external"
        approvers = int(t.requirement.split()[0])
        assert approvers >= 2, (name, t.requirement)
        t = decide(daemon, t.id, "cust1")
        assert t.state == pb.PENDING_APPROVAL, (name, t.state)
        assert_no_signature(daemon, db, t.id)
        if name == "single":
            assert "2 different roles" in t.requirement, t.requirement
            # The legitimate counterpart: two people of two roles sign it.
            assert_eth_signed(decide(daemon, t.id, "inv1"), w)


# ---------------------------------------------------------------- 4. bad proposals

@pytest.mark.parametrize("request_, needle", [
    (dict(id="newop", roles=["overlord"]),
     "roles: 'overlord' is not a role of the governance policy"),
    (dict(id="Bad Id!", roles=["investigator"]),
     "operator_id: 'Bad Id!' is not an operator id"),
    (dict(id="newop", roles=[]), "roles: at least one role is required"),
])
def test_malformed_proposal_is_refused_and_changes_nothing(daemon: Daemon, request_: dict,
                                                           needle: str) -> None:
    before = authority_snapshot(daemon)
    e = rpc_error(daemon.admin().RegisterOperator, pb.RegisterOperatorRequest(
        public_key_pem=public_pem(generate()), **request_))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.details(), e.details()
    e = rpc_error(daemon.admin().SetOperatorRoles, pb.SetOperatorRolesRequest(
        id="inv1", roles=["overlord"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "overlord" in e.details()
    assert authority_snapshot(daemon) == before


def test_proposal_that_would_loosen_a_pending_transfer(daemon: Daemon, db: SqliteWriter
                                                       ) -> None:
    w, own = eth_wallet(daemon), eth_wallet(daemon)
    t = eth_transfer(daemon, w, to=own.address)
    before = authority_snapshot(daemon)
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id,
                                                                 toml=ONE_APPROVER))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == (f"document: the new policy would loosen live transfer(s) {t.id} of "
                           f"wallet {w.id}; let them finish or cancel them first"), e.details()
    assert authority_snapshot(daemon) == before
    assert transfer(daemon, t.id).requirement.startswith("2 approvers")
    assert decide(daemon, t.id, "cust1").state == pb.PENDING_APPROVAL
    assert_no_signature(daemon, db, t.id)


def test_proposal_approved_by_its_own_submitter(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    before = authority_snapshot(daemon)
    # An operator may put a proposal forward through the Admin service.
    p = daemon.admin("inv1").SetPolicy(pb.SetPolicyRequest(wallet_id=w.id, template="tiered"))
    assert p.submitter == "inv1" and p.state == "PENDING_APPROVAL"
    e = rpc_error(decide_proposal, daemon, p.id, "inv1")
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == f"operator inv1 submitted proposal {p.id} and cannot decide on it"
    got = daemon.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
    assert got.state == "PENDING_APPROVAL" and not got.approvals
    after = authority_snapshot(daemon)
    assert after[:-1] == before[:-1] and after[-1] == before[-1] + 1
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 1
    daemon.governance("inv1").CancelProposal(pb.CancelProposalRequest(proposal_id=p.id,
                                                                      reason="x"))


# ---------------------------------------------------------------- 5. crash at the quorum

def ledger_entries_for(db: StoreWriter, proposal_id: str) -> int:
    return sum(1 for r in db.rows("SELECT kind, body FROM authority_log")
               if r["kind"] == "proposal" and json.loads(r["body"])["id"] == proposal_id)


def effect_count(d: Daemon, db: StoreWriter, op_id: str, proposal_id: str) -> dict[str, int]:
    """Every trace of an operator.register proposal's effect, counted."""
    listed = [o.id for o in d.admin().ListOperators(pb.ListOperatorsRequest()).operators]
    return {
        "listed": listed.count(op_id),
        "operators_rows": db.one("SELECT COUNT(*) AS n FROM operators WHERE id = ?",
                                 (op_id,))["n"],
        "ledger_entries": ledger_entries_for(db, proposal_id),
        "applied_events": len(audit_events(d, action="proposal.applied", obj=proposal_id)),
    }


def test_kill_right_after_the_quorum_making_decision(tmp_path: Path) -> None:
    d = fresh_daemon(tmp_path / "state")
    db = sqlite_writer(d)
    try:
        p = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
            id="crash1", roles=["investigator"], public_key_pem=public_pem(generate())))
        assert decide_proposal(d, p.id, "admin1").state == "PENDING_APPROVAL"
        done = decide_proposal(d, p.id, "admin2")
        d.kill()  # SIGKILL the moment the quorum-making decision returned
        assert done.state == "APPROVED" and done.applied_seq > 0
        d.start()
        got = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
        assert got.state == "APPROVED" and got.applied_seq == done.applied_seq
        assert effect_count(d, db, "crash1", p.id) == {
            "listed": 1, "operators_rows": 1, "ledger_entries": 1, "applied_events": 1}
        listed = d.governance().ListProposals(pb.ListProposalsRequest(state="APPROVED"))
        assert [x.id for x in listed.proposals].count(p.id) == 1
        e = rpc_error(decide_proposal, d, p.id, "admin2")
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "APPROVED" in e.details()
        assert effect_count(d, db, "crash1", p.id)["ledger_entries"] == 1
    finally:
        d.stop()


def test_kill_during_the_quorum_making_decision_is_all_or_nothing(tmp_path: Path) -> None:
    """SIGKILL at a few points while the quorum-making DecideProposal is in flight (no fault
    point inside signerd: the kill lands wherever it lands). After each restart the proposal
    is either APPROVED with its effect exactly once, or still pending with no effect and no
    trace of the killed decision."""
    d = fresh_daemon(tmp_path / "state")
    db = sqlite_writer(d)
    outcomes = []
    try:
        for i, delay in enumerate((0.0, 0.001, 0.002, 0.003, 0.005, 0.008)):
            op_id = f"crash{i}"
            p = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
                id=op_id, roles=["investigator"], public_key_pem=public_pem(generate())))
            decide_proposal(d, p.id, "admin1")
            st = d.governance("admin2").GetProposalStatement(pb.GetProposalStatementRequest(
                proposal_id=p.id, decision=pb.APPROVE)).statement
            key = load_private(d.state / "operators" / "admin2.key")
            req = pb.DecideProposalRequest(
                proposal_id=p.id, operator_id="admin2", decision=pb.APPROVE,
                signature=sign_statement(key, st), statement_sha256=statement_digest(st))
            killer = threading.Timer(delay, d.proc.kill)  # type: ignore[union-attr]
            killer.start()
            future = d.governance("admin2").DecideProposal.future(req, timeout=30)
            killer.join()
            try:
                future.result()
            except grpc.RpcError:
                pass
            assert d.stop() == -9
            d.start()
            got = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
            counts = effect_count(d, db, op_id, p.id)
            deciders = sorted(a.operator_id for a in got.approvals)
            if got.state == "APPROVED":
                assert counts == {"listed": 1, "operators_rows": 1, "ledger_entries": 1,
                                  "applied_events": 1}, counts
                assert deciders == ["admin1", "admin2"]
            else:
                assert got.state == "PENDING_APPROVAL", got.state
                assert counts == {"listed": 0, "operators_rows": 0, "ledger_entries": 0,
                                  "applied_events": 0}, counts
                assert deciders == ["admin1"]
                assert [json.loads(e.details_json)["operator_id"] for e in audit_events(
                    d, action="proposal.approve", obj=p.id)] == ["admin1"]
                # ... and the decision can simply be made again: then exactly once.
                assert decide_proposal(d, p.id, "admin2").state == "APPROVED"
                assert effect_count(d, db, op_id, p.id) == {
                    "listed": 1, "operators_rows": 1, "ledger_entries": 1, "applied_events": 1}
            outcomes.append(got.state)
        print(f"\n[kill during DecideProposal] outcomes after restart: {outcomes}")
    finally:
        d.stop()
