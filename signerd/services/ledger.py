"""The authority ledger as this process has verified it, and what it proves about stored rows.

:class:`Ledger` keeps the :class:`~signerd.core.authority.AuthorityState` that the store's ledger
proves, in memory. Each reader brings it up to date inside its own store transaction: the
ledger's head row is read, and entries after the head this process has already verified are
read and verified (signatures, quorums, links, signerd's seal of each entry) by
:func:`signerd.core.authority.fold` before they count. The cache lives only in this process, keyed
by the verified head, so a store writer can neither poison it nor rewind it unseen: a ledger
whose head is behind, or whose entry at the verified head differs, is an
:class:`AuthorityViolation`.

Stored rows that no quorum signs are verified against the state: a wallet is trusted only
through its sealed record (and, when it holds an outside key or an imported one, the proposal
that approved exactly that record); a wallet's policy text only as a template or a proposal of
the ledger. Operators, their keys and roles, freezes and policies are read from the state,
never from the store's tables, which are kept for people and reports.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from signerd.adapters.store import Tx
from signerd.core import authority as AU
from signerd.core import canonical, seal
from signerd.core import safe_wallet as SW
from signerd.core.authority import AuthorityState
from signerd.core.errors import AuthorityViolation, InvalidArgument, NotFound
from signerd.core.errors import echo
from signerd.core.model import Category, Chain, KeyRef, ScriptType, Wallet, WalletStatus
from signerd.core.records import KeyShareRecord, WalletRecord

log = logging.getLogger("signerd.ledger")

PAGE = 1000


@dataclass(frozen=True)
class Destination:
    """A verified wallet of this signerd at an output's address."""

    wallet_id: str
    category: str
    own: bool  # same category as the source, and no outside keys can spend without ours


class Ledger:
    def __init__(self, pinned: bytes,
                 on_violation: Callable[[AuthorityViolation], None] | None = None):
        self.pinned = pinned
        self._state: AuthorityState | None = None
        self._lock = threading.Lock()
        # Told of every AuthorityViolation :meth:`state` raises (the app counts it in
        # signerd_authority_violations_total): a ledger that does not verify refuses every act
        # that reads it, in a running daemon as at start.
        self.on_violation = on_violation

    @property
    def cached(self) -> AuthorityState | None:
        return self._state

    def state(self, tx: Tx) -> AuthorityState:
        """The verified state at the store's current ledger head (read in ``tx``). A ledger
        that does not verify raises AuthorityViolation: kind ``genesis`` for its first entry,
        ``ledger`` for anything after it (a forged entry, whatever in it fails to verify)."""
        try:
            return self._verified(tx)
        except AuthorityViolation as e:
            if self.on_violation is not None:
                self.on_violation(e)
            raise

    def _verified(self, tx: Tx) -> AuthorityState:
        # What this process verified is read before the head: another thread may move it on
        # meanwhile, never back, so a head read afterwards is never behind it unless rewound.
        known = self._state
        seq, head = tx.authority_head()
        if known is not None and known.seq == seq and known.head == head:
            return known
        if known is not None and (seq < known.seq or (seq == known.seq and head != known.head)):
            raise AuthorityViolation(
                f"the authority ledger was rewound or rewritten: this process verified entry "
                f"{known.seq} ({known.head.hex()[:16]}...), the store's head is entry {seq} "
                f"({head.hex()[:16]}...)", kind="ledger")
        state = known
        after = known.seq if known is not None else 0
        while after < seq:  # entries up to the head read (PostgreSQL reads each statement anew)
            entries = [e for e in tx.authority_entries(after, PAGE) if e.seq <= seq]
            if not entries:
                break
            try:
                state = AU.fold(state, entries, pinned=self.pinned)
            except AuthorityViolation as e:
                if e.kind in ("genesis", "ledger"):
                    raise
                raise AuthorityViolation(e.message, kind="ledger") from None
            after = entries[-1].seq
        if state is None:
            raise AuthorityViolation("the store has no genesis: it was not made by `signerd "
                                     "init`, or its authority ledger was deleted", kind="genesis")
        if state.seq != seq or state.head != head:
            raise AuthorityViolation(f"the authority ledger's head row (entry {seq}) does not "
                                     f"match its entries (entry {state.seq})", kind="ledger")
        with self._lock:
            if self._state is None or state.seq > self._state.seq:
                self._state = state
        return state

    def locked(self, tx: Tx) -> AuthorityState:
        """The verified state with the ledger's head locked for an append (replicas append one
        after another; take other row locks, such as transfers, before this one)."""
        tx.authority_head(lock=True)
        return self.state(tx)

    def append(self, tx: Tx, state: AuthorityState, kind: str, body: Mapping[str, Any],
               decisions: Iterable[AU.SignedDecision] = (), *,
               seal: Callable[[str, dict[str, Any]], str]) -> AuthorityState:
        """Append an entry in ``tx`` and return the state it leads to. The entry is checked as
        every reader will check it (a change that no longer applies raises InvalidArgument or
        FailedPrecondition, and nothing is sealed or written), then sealed at its place with
        ``seal`` (``App.seal``: the HSM's audit key; an HSM that is down raises HsmUnavailable
        and nothing is written), and checked again with its seal."""
        entry = AU.next_entry(state, kind, body, decisions)
        AU.check_entry(state, entry)
        entry = AU.seal_entry(entry, seal)
        new = AU.advance(state, entry)
        tx.append_authority(entry)
        return new


# --------------------------------------------------------------------------- wallets


def wallet_record(row: WalletRecord) -> dict[str, Any]:
    """The canonical record stored with a wallet (raises AuthorityViolation if unreadable)."""
    if not row.record:
        raise AuthorityViolation(f"wallet {row.id} has no sealed record: signerd did not "
                                 "make it", kind="wallet")
    try:
        record = canonical.loads(row.record, f"wallet {row.id} record")
    except InvalidArgument as e:
        raise AuthorityViolation(str(e), kind="wallet") from None
    if (not isinstance(record, dict) or not AU.WALLET_KEYS <= set(record)
            or set(record) - AU.WALLET_KEYS - AU.WALLET_OPTIONAL_KEYS):
        raise AuthorityViolation(f"wallet {row.id}: its record is malformed", kind="wallet")
    return record


def wallet_from_record(record: Mapping[str, Any], status: WalletStatus) -> Wallet:
    return Wallet(
        id=record["id"], chain=Chain(record["chain"]), network=record["network"],
        script_type=ScriptType(record["script_type"]), category=Category(record["category"]),
        case_ref=record["case_ref"], legal_basis=record["legal_basis"], status=status,
        address=record["address"],
        keys=tuple(KeyRef(k["key_id"], k["label"], bytes.fromhex(k["public_key"]))
                   for k in sorted(record["keys"], key=lambda k: k["position"])),
        chain_ids=tuple(record["chain_ids"]), descriptor=record["descriptor"],
        threshold=int(record["threshold"]), cosigners=tuple(record["cosigners"]),
        created_at=float(record["created_at"]), template=record["template"],
        policy_sha256=record["policy_sha256"], proposal=record["proposal"],
        origin=record["origin"], **safe_of(record))


def safe_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """A Safe wallet's owners and setup from its sealed record (none for other wallets)."""
    safe = record.get("safe")
    if safe is None:
        return {}
    return {"safe_owners": tuple(safe["owners"]),
            "safe_setup": SW.setup_text(safe)}


def safe_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """The copies a Safe wallet's row keeps of its sealed record (ledger.verified_wallet
    compares them)."""
    safe = record.get("safe")
    if safe is None:
        return {"safe_owners": "", "safe_threshold": 0, "safe_setup": ""}
    return {"safe_owners": canonical.dumps(list(safe["owners"])).decode(),
            "safe_threshold": int(safe["threshold"]),
            "safe_setup": SW.setup_text(safe)}


def verified_wallet(state: AuthorityState, row: WalletRecord) -> Wallet:
    """The wallet a stored row holds, if signerd made it: its record carries the audit key's
    seal and matches the row's identity columns; a wallet with an outside or imported key was
    approved, exactly as recorded, by a governance proposal of the ledger. Its status is the
    stricter of the row's and the ledger's (a freeze in the ledger holds whatever the row
    says)."""
    record = wallet_record(row)
    wid = row.id
    if not seal.valid(state.audit_public_key, "wallet", record, row.seal):
        raise AuthorityViolation(f"wallet {wid}: its seal does not verify under signerd's audit "
                                 "key (the record was written by someone else)", kind="wallet")
    if record["id"] != wid or record["address"] != row.address:
        raise AuthorityViolation(f"wallet {wid}: its row does not match its sealed record",
                                 kind="wallet")
    if "safe" in record or row.safe_owners or row.safe_setup or row.safe_threshold not in ("", "0"):
        copies = safe_columns(record)
        if (row.safe_owners != copies["safe_owners"] or row.safe_setup != copies["safe_setup"]
                or row.safe_threshold != str(copies["safe_threshold"])):
            raise AuthorityViolation(f"wallet {wid}: its Safe owners, threshold or setup in the "
                                     "store differ from its sealed record", kind="wallet")
    if record["proposal"]:
        approved = state.approved_wallets.get(wid)
        if approved is None:
            status = WalletStatus(row.status)
            if status in (WalletStatus.AWAITING_APPROVAL, WalletStatus.RETIRED):
                return wallet_from_record(record, status)
            raise AuthorityViolation(f"wallet {wid} is {status.value} in the store, but no "
                                     f"approved proposal of the authority ledger made it "
                                     f"(proposal {record['proposal']})", kind="wallet")
        if approved != AU.wallet_digest(record):
            raise AuthorityViolation(f"wallet {wid}: its record differs from the one proposal "
                                     f"{record['proposal']} approved", kind="wallet")
    try:
        status = WalletStatus(row.status)
    except ValueError:
        raise AuthorityViolation(f"wallet {wid}: unknown status {row.status!r}",
                                 kind="wallet") from None
    if wid in state.frozen and status is not WalletStatus.RETIRED:
        status = WalletStatus.FROZEN
    elif status is WalletStatus.AWAITING_APPROVAL and state.approved_wallets.get(wid):
        status = WalletStatus.ACTIVE
    return wallet_from_record(record, status)


def verified_wallets(tx: Tx, state: AuthorityState, purpose: str, *, category: str = "",
                     case_ref: str = "", left_out: list[dict[str, str]] | None = None,
                     page: int = 1000) -> Iterator[Wallet]:
    """Every wallet of the store (of a category and case, when given) whose row verifies
    (:func:`verified_wallet`), read a page at a time. A row that does not verify is no wallet of
    ours: it is logged as left out of ``purpose``, and added to ``left_out`` (its id and why)."""
    after = ""
    while True:
        rows = tx.list_wallets(category=category, case_ref=case_ref, after=after, limit=page)
        for row in rows:
            try:
                yield verified_wallet(state, row)
            except AuthorityViolation as e:
                log.error("wallet %s left out of %s: %s", row.id, purpose, e.message)
                if left_out is not None:
                    left_out.append({"id": row.id, "reason": e.message})
        if len(rows) < page:
            return
        after = rows[-1].id


def load_wallet(tx: Tx, state: AuthorityState, wallet_id: str, *, lock: bool = False) -> Wallet:
    if not wallet_id:
        raise InvalidArgument("wallet_id: required")
    return verified_wallet(state, tx.get_wallet(wallet_id, lock=lock))


def freeze_order(state: AuthorityState, wallet_id: str) -> str:
    return state.frozen.get(wallet_id, "")


IMPORTED = "imported"  # the origin of a wallet built around a seized key (admin.import_...)


def outside_keys(wallet: Wallet) -> int:
    """Keys that someone other than this signerd holds or may hold: cosigners' keys, and an
    imported seized key (the suspect, or whoever handled it, may still know it)."""
    if wallet.origin.startswith(IMPORTED):
        return len(wallet.keys)
    if wallet.safe_owners:  # a Safe: every owner but this signerd's owner key
        return len(wallet.safe_owners) - 1
    return sum(1 for k in wallet.keys if not k.hsm_held)


def destinations(tx: Tx, state: AuthorityState, source: Wallet,
                 addresses: Iterable[str]) -> dict[str, Destination]:
    """The verified wallets of this signerd among ``addresses``. A destination is ``own``
    only when it has the source's category and its outside keys are fewer than its threshold
    (they cannot spend without signerd's keys; an imported seized key counts as outside), and
    it is approved and not retired. A row that
    does not verify is no wallet of ours (and is logged). A Tron wallet on another Tron network
    is no wallet of ours either: its address is the same on every Tron network, but no wallet
    of the source's network governs what arrives there (a Tron signature names no network)."""
    out: dict[str, Destination] = {}
    wanted = [a for a in set(addresses) if a and a != source.address]
    for address, row in tx.wallets_by_address(wanted).items():
        try:
            w = verified_wallet(state, row)
        except AuthorityViolation as e:
            log.error("destination %s is not one of signerd's wallets: %s", address, e.message)
            continue
        if Chain.TRON in (source.chain, w.chain) and (w.chain, w.network) != (source.chain,
                                                                             source.network):
            continue
        live = w.status in (WalletStatus.ACTIVE, WalletStatus.FROZEN)
        own = (live and w.category is source.category and outside_keys(w) < w.threshold)
        out[address] = Destination(w.id, w.category.value, own)
    return out


def key_share_record(share: KeyShareRecord) -> dict[str, Any]:
    """What signerd seals of a key share."""
    return {"key_id": share.key_id, "public_key": share.public_key,
            "category": share.category, "case_ref": share.case_ref}


def verified_key_share(state: AuthorityState, share: KeyShareRecord) -> KeyShareRecord:
    if not seal.valid(state.audit_public_key, "key_share", key_share_record(share), share.seal):
        raise AuthorityViolation(f"key share {share.key_id}: its seal does not verify (signerd "
                                 "did not make it)", kind="wallet")
    return share


def operator_public(state: AuthorityState, op_id: str) -> AU.OperatorRecord:
    rec = state.operators.get(op_id)
    if rec is None:
        raise NotFound(f"operator {echo(op_id, quote=False)} not found")
    return rec


def record_json(record: Mapping[str, Any]) -> str:
    return canonical.dumps(dict(record)).decode()

