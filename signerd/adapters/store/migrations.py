"""Versioned schema migrations, shared by SQLite and PostgreSQL (portable SQL only).

Each entry is applied once, in order, inside a transaction, and recorded in ``schema_version``.
Never edit a published migration: add a new one. :func:`migrate` is the one runner both backends
use; PostgreSQL first takes a transaction-scoped advisory lock so replicas starting together
apply each migration once.
"""
from __future__ import annotations

import time
from typing import Any, Protocol, Sequence

from signerd.core.errors import FailedPrecondition


class Tx(Protocol):
    """What :func:`migrate` needs of a transaction (signerd.adapters.store.Tx has it): the
    package imports this module, so this module does not import the package."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def one(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

GENESIS_HEX = "00" * 32  # audit.GENESIS, the prev_hash of seq 1
# audit.ENDING_ACTIONS as the migration wrote it (a migration never changes once published)
ENDING_ACTIONS = ("proposal.applied", "proposal.cancelled", "proposal.expired", "proposal.failed",
                  "proposal.rejected", "transfer.cancelled", "transfer.expired",
                  "transfer.failed", "transfer.rejected", "transfer.signed")
# ... and as migration 12 rewrote it, with the record of a veto (audit.VETO_ACTION)
ENDING_ACTIONS_12 = tuple(sorted((*ENDING_ACTIONS, "transfer.vetoed")))
# ... and as migration 16 rewrote it, with the endings of attestations
ENDING_ACTIONS_16 = tuple(sorted((*ENDING_ACTIONS_12, "attestation.expired", "attestation.failed",
                                  "attestation.rejected", "attestation.signed")))
MIGRATION_LOCK = 0x5369676E657264  # pg_advisory_xact_lock key ("Signerd")

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "initial schema", [
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL)""",
        """CREATE TABLE wallets (
            id TEXT PRIMARY KEY,
            chain TEXT NOT NULL,
            network TEXT NOT NULL,
            script_type TEXT NOT NULL,
            category TEXT NOT NULL,
            case_ref TEXT NOT NULL,
            legal_basis TEXT NOT NULL,
            status TEXT NOT NULL,
            address TEXT NOT NULL,
            descriptor TEXT NOT NULL,
            threshold INTEGER NOT NULL,
            chain_ids TEXT NOT NULL,
            cosigners TEXT NOT NULL,
            freeze_order TEXT NOT NULL DEFAULT '',
            origin TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX wallets_category ON wallets (category, case_ref)",
        "CREATE UNIQUE INDEX wallets_address ON wallets (address)",
        """CREATE TABLE keys (
            key_id TEXT PRIMARY KEY,
            wallet_id TEXT NOT NULL REFERENCES wallets (id),
            position INTEGER NOT NULL,
            label TEXT NOT NULL,
            public_key TEXT NOT NULL,
            hsm_held INTEGER NOT NULL,
            category TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE UNIQUE INDEX keys_public_key ON keys (public_key)",
        """CREATE TABLE operators (
            id TEXT PRIMARY KEY,
            roles TEXT NOT NULL,
            public_key_pem TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION)""",
        """CREATE TABLE policies (
            wallet_id TEXT NOT NULL REFERENCES wallets (id),
            version INTEGER NOT NULL,
            document TEXT NOT NULL,
            actor TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (wallet_id, version))""",
        """CREATE TABLE transfers (
            id TEXT PRIMARY KEY,
            wallet_id TEXT NOT NULL REFERENCES wallets (id),
            chain TEXT NOT NULL,
            state TEXT NOT NULL,
            payload BYTEA NOT NULL,
            movement TEXT NOT NULL,
            submitter TEXT NOT NULL,
            policy_version INTEGER NOT NULL,
            requirement TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            replaces TEXT NOT NULL DEFAULT '',
            legal_basis TEXT NOT NULL DEFAULT '',
            category_change TEXT NOT NULL DEFAULT 'none',
            raw_tx TEXT NOT NULL DEFAULT '',
            psbt TEXT NOT NULL DEFAULT '',
            tx_hash TEXT NOT NULL DEFAULT '',
            failure TEXT NOT NULL DEFAULT '',
            idempotency_key TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX transfers_state ON transfers (state, created_at)",
        "CREATE INDEX transfers_wallet ON transfers (wallet_id, created_at)",
        """CREATE TABLE transfer_locks (
            lock_key TEXT PRIMARY KEY,
            transfer_id TEXT NOT NULL REFERENCES transfers (id))""",
        """CREATE TABLE approvals (
            transfer_id TEXT NOT NULL REFERENCES transfers (id),
            operator_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            signature TEXT NOT NULL,
            statement_sha256 TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (transfer_id, operator_id))""",
        """CREATE TABLE signatures (
            transfer_id TEXT NOT NULL REFERENCES transfers (id),
            digest TEXT NOT NULL,
            key_id TEXT NOT NULL,
            r TEXT NOT NULL,
            s TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (transfer_id, digest, key_id))""",
        """CREATE TABLE audit_events (
            seq BIGINT PRIMARY KEY,
            time_micros BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            object TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL)""",
        """CREATE TABLE audit_head (
            id INTEGER PRIMARY KEY,
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL)""",
    ]),
    (2, "key shares generated ahead of a multisig wallet", [
        """CREATE TABLE key_shares (
            key_id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,
            label TEXT NOT NULL,
            category TEXT NOT NULL,
            case_ref TEXT NOT NULL,
            wallet_id TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL)""",
    ]),
    (3, "audit head row exists from the start (seq 0, GENESIS)", [
        # The audit append locks this row (SELECT ... FOR UPDATE) and always UPDATEs it, so two
        # writers can never both find it missing and both start the chain at seq 1.
        "INSERT INTO audit_head (id, seq, hash) SELECT 1, 0, '" + GENESIS_HEX + "'"
        " WHERE NOT EXISTS (SELECT 1 FROM audit_head WHERE id = 1)",
    ]),
    (4, "one transfer per wallet and idempotency key, also under concurrent submissions", [
        "CREATE UNIQUE INDEX transfers_idempotency ON transfers (wallet_id, idempotency_key)"
        " WHERE idempotency_key <> ''",
    ]),
    (5, "the health monitor finds due transfers without reading every live one", [
        "CREATE INDEX transfers_state_expiry ON transfers (state, expires_at)",
    ]),
    (6, "list pages walk transfers in id order within a state or a wallet", [
        # ListTransfers / ListPending: WHERE state = ? AND id > ? ORDER BY id LIMIT n reads n
        # rows in index order instead of every transfer in that state plus a sort.
        "CREATE INDEX transfers_state_id ON transfers (state, id)",
        "CREATE INDEX transfers_wallet_id ON transfers (wallet_id, id)",
    ]),
    (7, "the gauges count transfers per chain and state from an index", [
        # App.refresh_gauges (every probe_seconds): GROUP BY chain, state becomes a covering
        # index scan instead of a scan of the whole table, payloads included.
        "CREATE INDEX transfers_chain_state ON transfers (chain, state)",
    ]),
    (8, "governance: the authority ledger, proposals and their approvals, sealed records", [
        # The authority ledger (signerd.core.authority): genesis, then approved proposals and
        # immediate tightening acts, hash-chained; the head row is locked by every append.
        """CREATE TABLE authority_log (
            seq BIGINT PRIMARY KEY,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            approvals TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE authority_head (
            id INTEGER PRIMARY KEY,
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL)""",
        "INSERT INTO authority_head (id, seq, hash) SELECT 1, 0, '" + GENESIS_HEX + "'"
        " WHERE NOT EXISTS (SELECT 1 FROM authority_head WHERE id = 1)",
        """CREATE TABLE proposals (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            submitter TEXT NOT NULL,
            subject TEXT NOT NULL DEFAULT '',
            expires_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            applied_seq BIGINT NOT NULL DEFAULT 0,
            failure TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX proposals_state_id ON proposals (state, id)",
        "CREATE INDEX proposals_state_expiry ON proposals (state, expires_at)",
        """CREATE TABLE proposal_approvals (
            proposal_id TEXT NOT NULL REFERENCES proposals (id),
            operator_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            signature TEXT NOT NULL,
            statement_sha256 TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (proposal_id, operator_id))""",
        # A wallet's sealed record (canonical JSON) and its seal; status stays a column, and
        # freezes are proven by the ledger.
        "ALTER TABLE wallets ADD COLUMN record TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE wallets ADD COLUMN seal TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE wallets ADD COLUMN proposal_id TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE key_shares ADD COLUMN seal TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE policies ADD COLUMN proposal_id TEXT NOT NULL DEFAULT ''",
    ]),
    (9, "HSM-signed checkpoints of the audit chain head", [
        # One row per checkpoint (signerd.core.audit.Checkpoint): the audit key's signature over the
        # chain head, linked to the checkpoint before it. Appends lock the latest row and the
        # primary key fences two replicas that both checkpoint at once.
        """CREATE TABLE audit_checkpoints (
            seq BIGINT PRIMARY KEY,
            head_seq BIGINT NOT NULL,
            head_hash TEXT NOT NULL,
            prev TEXT NOT NULL,
            time_micros BIGINT NOT NULL,
            signature TEXT NOT NULL)""",
    ]),
    (10, "checkpoints commit to the events that ended transfers and proposals", [
        "ALTER TABLE audit_checkpoints ADD COLUMN endings TEXT NOT NULL DEFAULT '"
        + GENESIS_HEX + "'",
        # The daemon reads the ending events alone, in seq order, to check them against the
        # latest checkpoint at start (audit.ENDING_ACTIONS; keep the two lists alike).
        "CREATE INDEX audit_events_endings ON audit_events (seq) WHERE action IN ("
        + ", ".join(f"'{a}'" for a in ENDING_ACTIONS) + ")",
    ]),
    (11, "a replacement records what it replaces: that transfer's state and the fee change", [
        # Bound in the approval statement (approval.StatementContext), so the statement is
        # rebuilt from the row alone. The fee delta is a signed decimal: wei exceed 64 bits.
        "ALTER TABLE transfers ADD COLUMN replaces_state TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE transfers ADD COLUMN replaces_fee_delta TEXT NOT NULL DEFAULT '0'",
    ]),
    (12, "a transaction vetoed before needs the vetoing role: the record, and the index over it", [
        # [[role, transfer], ...] of the vetoes of the same transaction in the same wallet,
        # taken at submission from the verified audit chain and bound in the statement.
        "ALTER TABLE transfers ADD COLUMN vetoed TEXT NOT NULL DEFAULT '[]'",
        # The record of a veto is an ending event (audit.ENDING_ACTIONS), read through the index
        # at start like the others.
        "DROP INDEX audit_events_endings",
        "CREATE INDEX audit_events_endings ON audit_events (seq) WHERE action IN ("
        + ", ".join(f"'{a}'" for a in ENDING_ACTIONS_12) + ")",
    ]),
    (13, "signerd seals each transfer it writes: what was submitted, as decoded then", [
        # The audit key's seal over engine.transfer_record (seal.py): a row a store writer
        # inserts or changes is never decided on, shown for signing or signed. Rows written
        # before have none and are refused like forged ones.
        "ALTER TABLE transfers ADD COLUMN seal TEXT NOT NULL DEFAULT ''",
    ]),
    (14, "signerd's seals: on every authority ledger entry after the genesis, on every proposal", [
        # The HSM audit key's seal over an entry's place (seq, the hash it follows, its hash):
        # a quorum alone no longer makes an entry (authority.advance). Entries before this
        # migration have none, and a ledger with such an entry after the genesis is refused.
        "ALTER TABLE authority_log ADD COLUMN seal TEXT NOT NULL DEFAULT ''",
        # The seal over the proposal document signerd recorded (id, kind, change, submitter,
        # window): a row without it is shown as not signerd's and never decided or applied.
        "ALTER TABLE proposals ADD COLUMN seal TEXT NOT NULL DEFAULT ''",
    ]),
    (15, "attestations: proofs of control under quorum and the holdings statements they make", [
        # The document (every text a custody key will sign) is sealed by the audit key at
        # creation; result is the holdings statement, sealed, once signed.
        """CREATE TABLE attestations (
            id TEXT PRIMARY KEY,
            category TEXT NOT NULL,
            case_ref TEXT NOT NULL,
            document TEXT NOT NULL,
            seal TEXT NOT NULL,
            state TEXT NOT NULL,
            submitter TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            result TEXT NOT NULL DEFAULT '',
            failure TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE attestation_approvals (
            attestation_id TEXT NOT NULL REFERENCES attestations (id),
            operator_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            signature TEXT NOT NULL,
            statement_sha256 TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (attestation_id, operator_id))""",
    ]),
    (16, "an attestation that ended is an ending event: the index over them covers it", [
        # audit.ENDING_ACTIONS: the daemon reads these through the index at start and checks
        # them against the latest checkpoint, so an ended attestation set back by SQL is seen.
        "DROP INDEX audit_events_endings",
        "CREATE INDEX audit_events_endings ON audit_events (seq) WHERE action IN ("
        + ", ".join(f"'{a}'" for a in ENDING_ACTIONS_16) + ")",
    ]),
    (17, "Safe wallets: the Safe's owners, threshold and setup, and owners' signatures", [
        # Copies for readers of what a Safe wallet's sealed record holds (the record and its
        # seal are signerd's word: ledger.verified_wallet refuses a row whose copies differ).
        "ALTER TABLE wallets ADD COLUMN safe_owners TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE wallets ADD COLUMN safe_threshold INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE wallets ADD COLUMN safe_setup TEXT NOT NULL DEFAULT ''",
        # Owner signatures of a signed Safe transfer's SafeTx hash brought by combine (other
        # owners: other signerds, outside keys). Each is verified again (recovered against the
        # SafeTx hash signerd computes, and the sealed owner list) whenever it is used.
        """CREATE TABLE safe_signatures (
            transfer_id TEXT NOT NULL REFERENCES transfers (id),
            owner TEXT NOT NULL,
            signature TEXT NOT NULL,
            actor TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (transfer_id, owner))""",
    ]),
]


def migrate(tx: Tx) -> int:
    """Bring the schema to the newest version inside ``tx``; returns that version."""
    if tx.dialect == "postgresql":
        tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
    tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
               " description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
    r = tx.one("SELECT MAX(version) AS v FROM schema_version")
    current = int(r["v"] or 0) if r else 0
    newest = MIGRATIONS[-1][0]
    if current > newest:
        raise FailedPrecondition(
            f"the store's schema is version {current}, newer than this signerd knows ({newest}): "
            "a newer signerd migrated it; run that version, or restore the store's backup taken "
            "before the upgrade")
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        for sql in statements:
            tx.execute(sql)
        tx.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                   (version, description, time.time()))
        current = version
    return current
