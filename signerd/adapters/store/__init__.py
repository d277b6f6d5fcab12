"""The store edge: one interface over SQLite (embedded default) and PostgreSQL (replicas).

All writes happen in ``store.transaction()``; the audit event of a state change is appended in the
same transaction as the change, so either both are durable or neither is. SQLite runs in WAL mode
with ``synchronous=FULL`` and takes its write lock at ``BEGIN IMMEDIATE``; PostgreSQL (several
replicas on one database) runs READ COMMITTED and serialises conflicting writers with row locks
(``SELECT ... FOR UPDATE``, emitted by ``Tx.for_update``) on the transfer, the wallet, the nonce
locks, the audit head and the latest audit checkpoint, with primary keys as the last fence (see
``postgres.py``). Queries are
written once with ``?`` placeholders; the schema is shared (``migrations.py``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from signerd.core import audit, authority, canonical
from signerd.core.errors import (AlreadyExists, AuditChainViolation, AuthorityViolation, Conflict,
                                 InvalidArgument, NotFound, SignerError, StoreUnavailable)
from signerd.core.errors import echo
from signerd.core.events import Event
from signerd.core.model import (OperatorStatus, ProposalState, TransferState, check_transition,
                                 predecessors)
from signerd.core.records import (ApprovalRecord, KeyShareRecord, ProposalApprovalRecord,
                                  ProposalRecord, TransferRecord, WalletRecord)
from signerd.core.records import AttestationApprovalRecord, AttestationRecord
from . import migrations
from .codec import (approval_from_row, key_share_from_row, proposal_approval_from_row,
                    proposal_from_row, transfer_from_row, wallet_from_row)
from .codec import attestation_approval_from_row, attestation_from_row


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


@dataclass
class Row:
    """A plain mapping of column name to value."""

    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


class Tx:
    """One database transaction with the queries signerd needs. Dialect differences live in
    ``_sql`` (placeholders) and ``for_update`` (row locks)."""

    def __init__(self, cur: Any, dialect: str):
        self.cur = cur
        self.dialect = dialect
        self.appended: list[audit.AuditEvent] = []  # audit events this transaction appended
        self.authority_appended: list[authority.Entry] = []  # and ledger entries
        self.events: list[Event] = []  # facts for metrics and logs, reported once committed

    def emit(self, event: Event) -> None:
        """Record a fact of this write (``signerd.core.events``): the daemon counts and logs it
        after the commit, and never if the transaction rolls back."""
        self.events.append(event)

    # ---------------------------------------------------------------- plumbing
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cur.execute(self._sql(sql), tuple(params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.execute(sql, params)
        r = self.cur.fetchone()
        if r is None:
            return None
        cols = [d[0] for d in self.cur.description]
        return Row(dict(zip(cols, r)))

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.execute(sql, params)
        cols = [d[0] for d in self.cur.description]
        return [Row(dict(zip(cols, r))) for r in self.cur.fetchall()]

    def _page(self, table: str, after: str, limit: int, **equal: str) -> list[Row]:
        """Up to ``limit`` rows of ``table`` with an id after ``after``, in id order, whose
        columns equal the values given (an empty value filters nothing). ``table`` and the
        column names are signerd's own, never a caller's."""
        sql = f"SELECT * FROM {table} WHERE id > ?"
        params: list[Any] = [after]
        for column, value in equal.items():
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return self.all(sql, params)

    def _by_id(self, table: str, subject: str, row_id: str, *, lock: bool = False) -> Row:
        """The row of ``table`` with this id, locked when ``lock`` (NotFound naming the
        ``subject`` when there is none)."""
        r = self.one(f"SELECT * FROM {table} WHERE id = ?" + (self.for_update if lock else ""),
                     (row_id,))
        if r is None:
            raise NotFound(f"{subject} {echo(row_id, quote=False)} not found")
        return r

    def _insert_row(self, table: str, row: dict[str, Any]) -> None:
        """Insert ``row``, its keys being column names of ``table`` (signerd's own)."""
        cols = list(row)
        self.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES"
                     f" ({', '.join('?' for _ in cols)})", [row[c] for c in cols])

    def _insert_decision(self, table: str, subject: str, key: str, a: dict[str, Any]) -> None:
        """An operator's decision on the ``subject`` whose id is column ``key``; AlreadyExists
        when the operator has decided on it already."""
        if self.one(f"SELECT operator_id FROM {table} WHERE {key} = ? AND operator_id = ?",
                    (a[key], a["operator_id"])):
            raise AlreadyExists(f"operator {a['operator_id']} has already decided on {subject} "
                                f"{a[key]}")
        self._insert_row(table, a)

    def _decision_rows(self, table: str, key: str, value: str) -> list[Row]:
        return self.all(f"SELECT * FROM {table} WHERE {key} = ? ORDER BY created_at", (value,))

    @property
    def for_update(self) -> str:
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        r = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return r["value"] if r else None

    def set_meta(self, key: str, value: str) -> None:
        # One statement (SQLite 3.24+ and PostgreSQL): no window between the check and the write
        # in which another replica's insert of the same key could slip.
        self.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # ---------------------------------------------------------------- wallets and keys
    def insert_wallet(self, w: dict[str, Any]) -> None:
        if self.one("SELECT id FROM wallets WHERE address = ?", (w["address"],)):
            raise AlreadyExists(f"a wallet with address {w['address']} already exists")
        self.execute(
            "INSERT INTO wallets (id, chain, network, script_type, category, case_ref, legal_basis,"
            " status, address, descriptor, threshold, chain_ids, cosigners, freeze_order, origin,"
            " created_at, record, seal, proposal_id, safe_owners, safe_threshold, safe_setup)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (w["id"], w["chain"], w["network"], w["script_type"], w["category"], w["case_ref"],
             w["legal_basis"], w["status"], w["address"], w["descriptor"], w["threshold"],
             json.dumps(w["chain_ids"]), json.dumps(w["cosigners"]), "", w.get("origin", ""),
             w["created_at"], w.get("record", ""), w.get("seal", ""), w.get("proposal_id", ""),
             w.get("safe_owners", ""), int(w.get("safe_threshold", 0)), w.get("safe_setup", "")),
        )

    def wallets_by_address(self, addresses: Sequence[str]) -> dict[str, WalletRecord]:
        """The wallets at these addresses (exact spelling), in one query."""
        out: dict[str, WalletRecord] = {}
        items = sorted(set(addresses))
        for i in range(0, len(items), 500):
            chunk = items[i:i + 500]
            marks = ", ".join("?" for _ in chunk)
            for r in self.all(f"SELECT * FROM wallets WHERE address IN ({marks})", chunk):
                w = wallet_from_row(r)
                out[w.address] = w
        return out

    def insert_key(self, k: dict[str, Any]) -> None:
        if self.one("SELECT key_id FROM keys WHERE public_key = ?", (k["public_key"],)):
            raise AlreadyExists("this key already serves another wallet; a key never serves two")
        self.execute(
            "INSERT INTO keys (key_id, wallet_id, position, label, public_key, hsm_held, category,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (k["key_id"], k["wallet_id"], k["position"], k["label"], k["public_key"],
             1 if k["hsm_held"] else 0, k["category"], k["created_at"]),
        )

    def key_holder(self, public_key: str) -> str | None:
        """The wallet a key (compressed public key, hex) serves, if any."""
        r = self.one("SELECT wallet_id FROM keys WHERE public_key = ?", (public_key,))
        return None if r is None else str(r["wallet_id"])

    def delete_wallet_key(self, key_id: str, wallet_id: str) -> None:
        self.execute("DELETE FROM keys WHERE key_id = ? AND wallet_id = ?", (key_id, wallet_id))

    def get_wallet(self, wallet_id: str, *, lock: bool = False) -> WalletRecord:
        return wallet_from_row(self._by_id("wallets", "wallet", wallet_id, lock=lock))

    def list_wallets(self, *, category: str = "", case_ref: str = "", after: str = "",
                     limit: int = 100) -> list[WalletRecord]:
        return [wallet_from_row(r) for r in
                self._page("wallets", after, limit, category=category, case_ref=case_ref)]

    def count_wallets(self) -> dict[tuple[str, str], int]:
        """How many wallets the store holds, by (chain, category)."""
        return {(r["chain"], r["category"]): int(r["n"]) for r in self.all(
            "SELECT chain, category, COUNT(*) AS n FROM wallets GROUP BY chain, category")}

    def set_wallet_status(self, wallet_id: str, status: str, order: str) -> None:
        self.execute("UPDATE wallets SET status = ?, freeze_order = ? WHERE id = ?",
                     (status, order, wallet_id))

    def propose_wallet_again(self, wallet_id: str, record: dict[str, Any], record_text: str,
                             seal: str, status: str) -> None:
        """A RETIRED wallet proposed anew (a seized key imported again): its new sealed record
        and the copies of its columns that the record changes."""
        self.execute("UPDATE wallets SET case_ref = ?, legal_basis = ?, status = ?, origin = ?,"
                     " chain_ids = ?, created_at = ?, record = ?, seal = ?, proposal_id = ?"
                     " WHERE id = ?",
                     (record["case_ref"], record["legal_basis"], status, record["origin"],
                      json.dumps(record["chain_ids"]), float(record["created_at"]),
                      record_text, seal, record["proposal"], wallet_id))

    # ---------------------------------------------------------------- Safe owners' signatures
    def insert_safe_signature(self, transfer_id: str, owner: str, signature: str,
                              actor: str) -> bool:
        """Store an owner's signature of a Safe transfer (once per owner: False when that
        owner's signature is stored already)."""
        cur = self.execute("INSERT INTO safe_signatures (transfer_id, owner, signature, actor,"
                           " created_at) VALUES (?, ?, ?, ?, ?)"
                           " ON CONFLICT (transfer_id, owner) DO NOTHING",
                           (transfer_id, owner, signature, actor, time.time()))
        return bool(cur.rowcount == 1)

    def safe_signatures(self, transfer_id: str) -> list[tuple[str, str]]:
        """(owner, signature hex) stored for a Safe transfer, by owner."""
        return [(str(r["owner"]), str(r["signature"])) for r in self.all(
            "SELECT owner, signature FROM safe_signatures WHERE transfer_id = ? ORDER BY owner",
            (transfer_id,))]

    def insert_key_share(self, key_id: str, public_key: str, label: str, category: str,
                         case_ref: str, seal: str = "") -> None:
        self.execute("INSERT INTO key_shares (key_id, public_key, label, category, case_ref,"
                     " created_at, seal) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (key_id, public_key, label, category, case_ref, time.time(), seal))

    def key_share(self, key_id: str, *, lock: bool = False) -> KeyShareRecord:
        r = self.one("SELECT * FROM key_shares WHERE key_id = ?"
                     + (self.for_update if lock else ""), (key_id,))
        if r is None:
            raise NotFound(f"key share {echo(key_id, quote=False)} not found")
        return key_share_from_row(r)

    def key_shares(self) -> list[KeyShareRecord]:
        """Every key share, by key id (the key backup holds them all)."""
        return [key_share_from_row(r) for r in self.all(
            "SELECT * FROM key_shares ORDER BY key_id")]

    def take_key_share(self, key_id: str, wallet_id: str) -> KeyShareRecord:
        """Claim an unassigned key share for a wallet (a key never serves two wallets)."""
        share = self.key_share(key_id, lock=True)
        if share.wallet_id:
            raise AlreadyExists(f"key share {key_id} already serves wallet {share.wallet_id}")
        self.execute("UPDATE key_shares SET wallet_id = ? WHERE key_id = ?", (wallet_id, key_id))
        return share

    def wallet_key_shares(self, wallet_id: str) -> list[str]:
        """The key ids of the key shares a wallet took."""
        return [str(r["key_id"]) for r in self.all(
            "SELECT key_id FROM key_shares WHERE wallet_id = ? ORDER BY key_id", (wallet_id,))]

    def release_key_share(self, key_id: str, wallet_id: str) -> None:
        """A key share taken by a wallet that never came into force is free again."""
        self.execute("UPDATE key_shares SET wallet_id = '' WHERE key_id = ? AND wallet_id = ?",
                     (key_id, wallet_id))
        self.delete_wallet_key(key_id, wallet_id)

    # ---------------------------------------------------------------- operators
    def insert_operator(self, op_id: str, roles: list[str], pem: str) -> None:
        if self.one("SELECT id FROM operators WHERE id = ?", (op_id,)):
            raise AlreadyExists(f"operator {op_id} already exists")
        self.execute(
            "INSERT INTO operators (id, roles, public_key_pem, status, created_at)"
            " VALUES (?, ?, ?, ?, ?)", (op_id, json.dumps(sorted(roles)), pem,
                                        OperatorStatus.ACTIVE.value, time.time()))

    def operator_created_at(self, op_id: str) -> float:
        """When the store's copy of an operator was written (0 when it has none)."""
        r = self.one("SELECT created_at FROM operators WHERE id = ?", (op_id,))
        return float(r["created_at"]) if r else 0.0

    def revoke_operator(self, op_id: str) -> None:
        self.execute("UPDATE operators SET status = ?, revoked_at = ? WHERE id = ?",
                     (OperatorStatus.REVOKED.value, time.time(), op_id))

    def update_operator(self, op_id: str, *, roles: list[str] | None = None,
                        status: OperatorStatus | None = None) -> None:
        if roles is not None:
            self.execute("UPDATE operators SET roles = ? WHERE id = ?",
                         (json.dumps(sorted(roles)), op_id))
        if status is not None:
            self.execute("UPDATE operators SET status = ? WHERE id = ?",
                         (OperatorStatus(status).value, op_id))

    # ---------------------------------------------------------------- policies
    def insert_policy(self, wallet_id: str, document: str, actor: str, *,
                      version: int | None = None, proposal_id: str = "") -> int:
        """A policy version of a wallet (a copy for readers: the ledger and the wallet's sealed
        record are what signerd trusts)."""
        if version is None:
            if self.for_update:  # serialise version numbering per wallet across replicas
                self.one("SELECT id FROM wallets WHERE id = ?" + self.for_update, (wallet_id,))
            r = self.one("SELECT MAX(version) AS v FROM policies WHERE wallet_id = ?",
                         (wallet_id,))
            version = int(r["v"] or 0) + 1 if r else 1
        self.execute("INSERT INTO policies (wallet_id, version, document, actor, created_at,"
                     " proposal_id) VALUES (?, ?, ?, ?, ?, ?)",
                     (wallet_id, version, document, actor, time.time(), proposal_id))
        return version

    def replace_policy_text(self, wallet_id: str, version: int, document: str, actor: str,
                            created_at: float) -> None:
        self.execute("UPDATE policies SET document = ?, actor = ?, created_at = ?"
                     " WHERE wallet_id = ? AND version = ?",
                     (document, actor, created_at, wallet_id, version))

    def policy_times(self, wallet_id: str) -> dict[int, float]:
        """When each policy version of a wallet was written to the store's copy."""
        return {int(r["version"]): float(r["created_at"]) for r in self.all(
            "SELECT version, created_at FROM policies WHERE wallet_id = ?", (wallet_id,))}

    # ---------------------------------------------------------------- transfers
    def insert_transfer(self, t: dict[str, Any], lock_keys: list[str]) -> None:
        """Insert a transfer holding its nonce/outpoint locks. A key may already be held only
        by the transfer this one replaces (it stays held by that one). On PostgreSQL another
        replica can take a free key between the first check and the insert: the second check
        and the primary key of transfer_locks (unique violation -> Conflict) catch that."""
        check_transition(str(t["id"]), None, TransferState(t["state"]))
        replaces = t.get("replaces") or None
        for key in lock_keys:
            held = self.one("SELECT transfer_id FROM transfer_locks WHERE lock_key = ?"
                            + self.for_update, (key,))
            if held and held["transfer_id"] != replaces:
                raise self._held(key, held["transfer_id"])
        self._insert_row("transfers", t)
        for key in lock_keys:
            held = self.one("SELECT transfer_id FROM transfer_locks WHERE lock_key = ?"
                            + self.for_update, (key,))
            if held is None:
                self.execute("INSERT INTO transfer_locks (lock_key, transfer_id) VALUES (?, ?)",
                             (key, t["id"]))
            elif held["transfer_id"] != replaces:
                raise self._held(key, held["transfer_id"])
            # else: still held by the transfer this one replaces

    def _held(self, key: str, holder: str) -> Conflict:
        """The refusal of a nonce or outpoint ``holder`` holds, naming it and its state."""
        r = self.one("SELECT state FROM transfers WHERE id = ?", (holder,))
        state = str(r["state"]) if r else ""
        if state in (TransferState.PENDING_APPROVAL.value, TransferState.APPROVED.value):
            return Conflict(f"{key} is already held by live transfer {holder}")
        return Conflict(f"{key} is already held by transfer {holder}, which is "
                        f"{state or 'missing'}: another transaction for it must replace that "
                        f"transfer (replaces = {holder})")

    def lock_holder(self, lock_key: str) -> str:
        """The transfer holding ``lock_key``, or ''."""
        r = self.one("SELECT transfer_id FROM transfer_locks WHERE lock_key = ?", (lock_key,))
        return str(r["transfer_id"]) if r else ""

    def transfer_lock_keys(self, transfer_id: str) -> list[str]:
        return [r["lock_key"] for r in
                self.all("SELECT lock_key FROM transfer_locks WHERE transfer_id = ?", (transfer_id,))]

    def move_locks(self, from_id: str, to_id: str, keys: Sequence[str] | None = None) -> None:
        """Hand the locks ``from_id`` holds (only ``keys`` of them, when given) to ``to_id``."""
        if keys is None:
            self.execute("UPDATE transfer_locks SET transfer_id = ? WHERE transfer_id = ?",
                         (to_id, from_id))
            return
        for key in keys:
            self.execute("UPDATE transfer_locks SET transfer_id = ? WHERE transfer_id = ? AND"
                         " lock_key = ?", (to_id, from_id, key))

    def release_locks(self, transfer_id: str) -> None:
        self.execute("DELETE FROM transfer_locks WHERE transfer_id = ?", (transfer_id,))

    def get_transfer(self, transfer_id: str, *, lock: bool = False) -> TransferRecord:
        return transfer_from_row(self._by_id("transfers", "transfer", transfer_id, lock=lock))

    def lock_transfer_if_free(self, transfer_id: str) -> TransferRecord | None:
        """The transfer, locked, unless another transaction holds it (PostgreSQL: ``FOR UPDATE
        SKIP LOCKED``; SQLite has one writer, so it is always free); None when held or gone."""
        skip = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        r = self.one("SELECT * FROM transfers WHERE id = ?" + skip, (transfer_id,))
        return None if r is None else transfer_from_row(r)

    def find_idempotent(self, wallet_id: str, key: str) -> TransferRecord | None:
        r = self.one("SELECT * FROM transfers WHERE wallet_id = ? AND idempotency_key = ?",
                     (wallet_id, key))
        return None if r is None else transfer_from_row(r)

    def list_transfers(self, *, wallet_id: str = "", state: TransferState | str = "",
                       after: str = "", limit: int = 100) -> list[TransferRecord]:
        return [transfer_from_row(r) for r in self._page(
            "transfers", after, limit, wallet_id=wallet_id,
            state=state.value if isinstance(state, TransferState) else state)]

    def due_transfers(self, now: float) -> list[tuple[str, TransferState, float]]:
        """(id, state, expires_at) of the transfers the monitor must act on: pending past
        expiry, and approved (to sign)."""
        rows = self.all("SELECT id, state, expires_at FROM transfers WHERE (state = ? AND"
                        " expires_at <= ?) OR state = ? ORDER BY created_at",
                        (TransferState.PENDING_APPROVAL.value, now,
                         TransferState.APPROVED.value))
        return [(str(r["id"]), TransferState(r["state"]), float(r["expires_at"])) for r in rows]

    def count_past_expiry(self, now: float) -> int:
        r = self.one("SELECT COUNT(*) AS n FROM transfers WHERE state IN (?, ?) AND"
                     " expires_at <= ?", (TransferState.PENDING_APPROVAL.value,
                                          TransferState.APPROVED.value, now))
        return int(r["n"]) if r else 0

    def update_transfer(self, transfer_id: str, **fields: Any) -> None:
        """Change a transfer's columns. A new ``state`` is written only over a state the
        transitions table lets it follow (``model.TRANSFER_TRANSITIONS``; the caller holds the
        row's lock), in the UPDATE itself, so signerd never writes a transition the table does
        not list; when nothing was written, the stored state says why."""
        fields["updated_at"] = time.time()
        if "state" not in fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            self.execute(f"UPDATE transfers SET {sets} WHERE id = ?",
                         [*fields.values(), transfer_id])
            return
        new = TransferState(fields["state"])
        fields["state"] = new.value
        prior = [s.value for s in predecessors(new)]
        sets = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" for _ in prior)
        cur = self.execute(f"UPDATE transfers SET {sets} WHERE id = ? AND state IN ({marks})",
                           [*fields.values(), transfer_id, *prior])
        if cur.rowcount == 1:
            return
        r = self.one("SELECT state FROM transfers WHERE id = ?", (transfer_id,))
        if r is None:
            raise NotFound(f"transfer {echo(transfer_id, quote=False)} not found")
        try:
            old = TransferState(r["state"])
        except ValueError:
            raise AuthorityViolation(f"transfer {transfer_id}: its stored state "
                                     f"{echo(str(r['state']))} is no state",
                                     kind="transfer") from None
        check_transition(transfer_id, old, new)  # raises: old is not among ``prior``

    def count_transfers(self) -> dict[tuple[str, str], int]:
        """How many transfers the store holds, by (chain, state)."""
        return {(r["chain"], r["state"]): int(r["n"]) for r in self.all(
            "SELECT chain, state, COUNT(*) AS n FROM transfers GROUP BY chain, state")}

    # ---------------------------------------------------------------- approvals and signatures
    def insert_approval(self, a: dict[str, Any]) -> None:
        self._insert_decision("approvals", "transfer", "transfer_id", a)

    def approvals(self, transfer_id: str) -> list[ApprovalRecord]:
        return [approval_from_row(r) for r in
                self._decision_rows("approvals", "transfer_id", transfer_id)]

    def approvals_for(self, transfer_ids: Sequence[str]) -> dict[str, list[ApprovalRecord]]:
        """Approvals of several transfers in one query (a list page)."""
        return {tid: [approval_from_row(r) for r in rows] for tid, rows in
                self._grouped("approvals", "transfer_id", transfer_ids).items()}

    def _grouped(self, table: str, column: str, ids: Sequence[str]) -> dict[str, list[Row]]:
        """The rows of ``table`` whose ``column`` is one of ``ids``, by id, oldest first, in
        queries of at most 500 ids."""
        out: dict[str, list[Row]] = {i: [] for i in ids}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            marks = ", ".join("?" for _ in chunk)
            for r in self.all(f"SELECT * FROM {table} WHERE {column} IN ({marks})"
                              " ORDER BY created_at", chunk):
                out[r[column]].append(r)
        return out

    def insert_signature(self, transfer_id: str, digest: bytes, key_id: str, r: int, s: int) -> None:
        self.execute("INSERT INTO signatures (transfer_id, digest, key_id, r, s, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (transfer_id, digest.hex(), key_id, format(r, "064x"), format(s, "064x"),
                      time.time()))

    def signatures(self, transfer_id: str) -> dict[tuple[str, bytes], tuple[int, int]]:
        """The HSM signatures stored for a transfer: (key id, digest) -> (r, s)."""
        return {(r["key_id"], bytes.fromhex(r["digest"])): (int(r["r"], 16), int(r["s"], 16))
                for r in self.all("SELECT * FROM signatures WHERE transfer_id = ?"
                                  " ORDER BY digest, key_id", (transfer_id,))}

    # ---------------------------------------------------------------- authority ledger
    def authority_head(self, *, lock: bool = False, share: bool = False) -> tuple[int, bytes]:
        """The ledger head; ``lock`` for an append, ``share`` for a writer whose act must not
        cross an append (the sign step's commit against a freeze), on PostgreSQL."""
        suffix = (self.for_update if lock else
                  " FOR SHARE" if share and self.dialect == "postgresql" else "")
        r = self.one("SELECT seq, hash FROM authority_head WHERE id = 1" + suffix)
        if r is None:
            raise AuthorityViolation("the authority ledger's head row is missing: the store was "
                                     "not migrated or was tampered with", kind="ledger")
        return int(r["seq"]), bytes.fromhex(r["hash"])

    def authority_entries(self, after_seq: int = 0, limit: int = 1000) -> list[authority.Entry]:
        """Ledger entries after ``after_seq`` as stored; a row that does not even parse is a
        violation (signerd writes only canonical rows)."""
        out = []
        for r in self.all("SELECT * FROM authority_log WHERE seq > ? ORDER BY seq LIMIT ?",
                          (after_seq, limit)):
            where = f"authority ledger entry {r['seq']}"
            try:
                out.append(authority.Entry(
                    seq=int(r["seq"]), kind=str(r["kind"]),
                    body=canonical.loads(r["body"], where),
                    decisions=authority.decisions_from_json(
                        canonical.loads(r["approvals"], where), where),
                    prev_hash=bytes.fromhex(r["prev_hash"]), hash=bytes.fromhex(r["hash"]),
                    seal=str(r["seal"] or "")))
            except (InvalidArgument, ValueError) as e:
                raise AuthorityViolation(f"{where} is malformed: {e}", kind="ledger") from None
        return out

    def append_authority(self, entry: authority.Entry) -> None:
        """Append one ledger entry; the head is locked and must be the entry's predecessor
        (a concurrent append by another replica makes this one fail, not fork the ledger)."""
        seq, head = self.authority_head(lock=True)
        if entry.seq != seq + 1 or entry.prev_hash != head:
            raise StoreUnavailable("the authority ledger moved on meanwhile (another replica "
                                   "appended to it); retry")
        self.execute("INSERT INTO authority_log (seq, kind, body, approvals, prev_hash, hash,"
                     " created_at, seal) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (entry.seq, entry.kind, canonical.dumps(entry.body).decode(),
                      canonical.dumps(entry.approvals_json()).decode(), entry.prev_hash.hex(),
                      entry.hash.hex(), time.time(), entry.seal))
        self.execute("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
                     (entry.seq, entry.hash.hex()))
        self.authority_appended.append(entry)

    # ---------------------------------------------------------------- proposals
    def insert_proposal(self, p: dict[str, Any]) -> None:
        self._insert_row("proposals", p)

    def get_proposal(self, proposal_id: str, *, lock: bool = False) -> ProposalRecord:
        return proposal_from_row(self._by_id("proposals", "proposal", proposal_id, lock=lock))

    def list_proposals(self, *, state: ProposalState | str = "", after: str = "",
                       limit: int = 100) -> list[ProposalRecord]:
        return [proposal_from_row(r) for r in self._page(
            "proposals", after, limit,
            state=state.value if isinstance(state, ProposalState) else state)]

    def due_proposals(self, now: float) -> list[str]:
        """Ids of the pending proposals whose window (as the row says) passed."""
        return [str(r["id"]) for r in
                self.all("SELECT id FROM proposals WHERE state = ? AND expires_at <= ?"
                         " ORDER BY id", (ProposalState.PENDING_APPROVAL.value, now))]

    def update_proposal(self, proposal_id: str, **fields: Any) -> None:
        if "state" in fields:
            fields["state"] = ProposalState(fields["state"]).value
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.execute(f"UPDATE proposals SET {sets} WHERE id = ?", [*fields.values(), proposal_id])

    def insert_proposal_approval(self, a: dict[str, Any]) -> None:
        self._insert_decision("proposal_approvals", "proposal", "proposal_id", a)

    def proposal_approvals(self, proposal_id: str) -> list[ProposalApprovalRecord]:
        return [proposal_approval_from_row(r) for r in
                self._decision_rows("proposal_approvals", "proposal_id", proposal_id)]

    def proposal_approvals_for(self, ids: Sequence[str]
                               ) -> dict[str, list[ProposalApprovalRecord]]:
        return {pid: [proposal_approval_from_row(r) for r in rows] for pid, rows in
                self._grouped("proposal_approvals", "proposal_id", ids).items()}

    # ---------------------------------------------------------------- attestations
    def insert_attestation(self, a: dict[str, Any]) -> None:
        self._insert_row("attestations", a)

    def get_attestation(self, attestation_id: str, *, lock: bool = False) -> AttestationRecord:
        return attestation_from_row(self._by_id("attestations", "attestation", attestation_id,
                                                lock=lock))

    def list_attestations(self, *, state: str = "", after: str = "", limit: int = 100
                          ) -> list[AttestationRecord]:
        return [attestation_from_row(r) for r in self._page("attestations", after, limit,
                                                             state=state)]

    def update_attestation(self, attestation_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.execute(f"UPDATE attestations SET {sets} WHERE id = ?",
                     [*fields.values(), attestation_id])

    def insert_attestation_approval(self, a: dict[str, Any]) -> None:
        self._insert_decision("attestation_approvals", "attestation", "attestation_id", a)

    def attestation_approvals(self, attestation_id: str) -> list[AttestationApprovalRecord]:
        return [attestation_approval_from_row(r) for r in
                self._decision_rows("attestation_approvals", "attestation_id", attestation_id)]

    # ---------------------------------------------------------------- audit
    def append_audit(self, actor: str, action: str, obj: str,
                     details: dict[str, Any]) -> audit.AuditEvent:
        """Append one event to the chain. The head row (created by migration 3 at seq 0) is
        locked first and always updated, so concurrent appenders on any number of replicas
        queue on it and each links to the event committed before it."""
        head = self.one("SELECT seq, hash FROM audit_head WHERE id = 1" + self.for_update)
        if head is None:
            raise SignerError("the audit head row is missing: the store was not migrated or "
                              "was tampered with; refusing to start a second chain",
                              reason="AUDIT_HEAD_MISSING")
        seq, prev_hash = int(head["seq"]), audit.GENESIS
        if seq > 0:
            last = self.one("SELECT hash FROM audit_events WHERE seq = ?", (seq,))
            if last is None or last["hash"] != head["hash"]:
                raise SignerError(f"audit event seq {seq} (the head) is missing from the store "
                                  "or differs from the head: the chain was tampered with",
                                  reason="AUDIT_HEAD_MISSING")
            prev_hash = bytes.fromhex(last["hash"])
        now = int(time.time() * 1_000_000)
        ev = audit.AuditEvent(seq + 1, now, actor, action, obj, dict(details), prev_hash,
                              audit.chain_hash(prev_hash, seq + 1, now, actor, action, obj,
                                               dict(details)))
        self.execute(
            "INSERT INTO audit_events (seq, time_micros, actor, action, object, details, prev_hash,"
            " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ev.seq, ev.time, ev.actor, ev.action, ev.object,
             json.dumps(ev.details, sort_keys=True, separators=(",", ":")), ev.prev_hash.hex(),
             ev.hash.hex()))
        self.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                     (ev.seq, ev.hash.hex()))
        self.appended.append(ev)
        return ev

    def audit_events(self, after_seq: int = 0, limit: int = 100) -> list[audit.AuditEvent]:
        rows = self.all("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after_seq, limit))
        return [row_to_event(r) for r in rows]

    def audit_events_of(self, actions: Sequence[str]) -> list[audit.AuditEvent]:
        """Every event with one of these actions, ascending."""
        marks = ", ".join("?" for _ in actions)
        return [row_to_event(r) for r in self.all(
            f"SELECT * FROM audit_events WHERE action IN ({marks}) ORDER BY seq", list(actions))]

    def audit_head(self) -> tuple[int, bytes]:
        r = self.one("SELECT seq, hash FROM audit_head WHERE id = 1")
        return (0, audit.GENESIS) if r is None else (int(r["seq"]), bytes.fromhex(r["hash"]))

    def audit_events_at(self, seqs: Sequence[int]) -> list[audit.AuditEvent]:
        """The events at these seqs (those that exist), ascending."""
        out: list[audit.AuditEvent] = []
        items = sorted(set(seqs))
        for i in range(0, len(items), 500):
            chunk = items[i:i + 500]
            marks = ", ".join("?" for _ in chunk)
            out += [row_to_event(r) for r in
                    self.all(f"SELECT * FROM audit_events WHERE seq IN ({marks}) ORDER BY seq",
                             chunk)]
        return out

    # ---------------------------------------------------------------- audit checkpoints
    def latest_audit_checkpoint(self, *, lock: bool = False) -> audit.Checkpoint | None:
        """The checkpoint with the highest seq; ``lock`` for an append (PostgreSQL)."""
        r = self.one("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
                     + (self.for_update if lock else ""))
        return None if r is None else row_to_checkpoint(r)

    def audit_checkpoints(self, after_seq: int = 0, upto_seq: int = audit.MAX_SEQ
                          ) -> list[audit.Checkpoint]:
        """Checkpoints with ``after_seq < seq <= upto_seq`` in seq order, as stored."""
        return [row_to_checkpoint(r) for r in
                self.all("SELECT * FROM audit_checkpoints WHERE seq > ? AND seq <= ?"
                         " ORDER BY seq", (after_seq, upto_seq))]

    def audit_checkpoint(self, seq: int) -> audit.Checkpoint | None:
        r = self.one("SELECT * FROM audit_checkpoints WHERE seq = ?", (seq,))
        return None if r is None else row_to_checkpoint(r)

    def append_audit_checkpoint(self, cp: audit.Checkpoint) -> None:
        """Store the checkpoint that follows the latest one. The latest row is locked and must be
        ``cp``'s predecessor; if another replica stored a checkpoint meanwhile this raises
        StoreUnavailable (or the primary key does, as AlreadyExists), never forks the list."""
        latest = self.latest_audit_checkpoint(lock=True)
        expected = latest.seq + 1 if latest is not None else 1
        if cp.seq != expected:
            raise StoreUnavailable(f"audit checkpoint {cp.seq} cannot follow checkpoint "
                                   f"{expected - 1}: another replica checkpointed meanwhile; "
                                   "retry")
        self.execute("INSERT INTO audit_checkpoints (seq, head_seq, head_hash, prev, time_micros,"
                     " endings, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (cp.seq, cp.head_seq, cp.head_hash.hex(), cp.prev.hex(), cp.time,
                      cp.endings.hex(), cp.signature.hex()))

    def ending_events(self, after_seq: int, upto_seq: int, limit: int = 10_000
                      ) -> list[tuple[int, str, str]]:
        """(seq, action, object) of the events that ended a transfer, a proposal or an
        attestation, with ``after_seq < seq <= upto_seq``, in seq order (read through their
        partial index)."""
        marks = ", ".join("?" for _ in migrations.ENDING_ACTIONS_16)
        rows = self.all(f"SELECT seq, action, object FROM audit_events WHERE action IN ({marks})"
                        " AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                        (*migrations.ENDING_ACTIONS_16, after_seq, upto_seq, limit))
        return [(int(r["seq"]), str(r["action"]), str(r["object"])) for r in rows]


def row_to_event(r: Row) -> audit.AuditEvent:
    return audit.AuditEvent(
        seq=int(r["seq"]), time=int(r["time_micros"]), actor=r["actor"], action=r["action"],
        object=r["object"], details=json.loads(r["details"]),
        prev_hash=bytes.fromhex(r["prev_hash"]), hash=bytes.fromhex(r["hash"]))


def row_to_checkpoint(r: Row) -> audit.Checkpoint:
    """A stored checkpoint row; one that does not even parse is tampering (signerd writes only
    well-formed rows), reported as an AuditChainViolation."""
    try:
        return audit.Checkpoint(
            seq=int(r["seq"]), head_seq=int(r["head_seq"]),
            head_hash=bytes.fromhex(r["head_hash"]), prev=bytes.fromhex(r["prev"]),
            time=int(r["time_micros"]), endings=bytes.fromhex(r["endings"]),
            signature=bytes.fromhex(r["signature"]))
    except (InvalidArgument, ValueError, TypeError) as e:
        raise AuditChainViolation(f"audit checkpoint {r.get('seq')} is malformed in the store: "
                                  f"{e}", kind="checkpoint") from None


class Store(Protocol):
    dialect: str
    # Told, after each committed write that appended audit events, ledger entries or facts, of
    # that transaction (its ``appended``, ``authority_appended`` and ``events``): the daemon
    # reports the facts (signerd.adapters.observe), notes the transfers and proposals that
    # ended at once (see App.ended) and anchors a new ledger head in the HSM (see
    # signerd.core.anchor).
    on_commit: Callable[["Tx"], None] | None

    def transaction(self) -> Any: ...
    def read(self) -> Any: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...

