"""The chain of authority: genesis, the authority ledger and governance proposals (pure: no
I/O, no clock, no HSM).

Every operator key and role, every policy text, every unfreeze, every wallet holding a key
from outside and every token registry entry is in force only through the **authority
ledger**: an append-only, hash-chained list of entries whose first entry is the genesis and
whose later entries are

- ``proposal``: a governance proposal (docs/ARCHITECTURE.md, "Flow of a governance proposal")
  with the operators' signed decisions that approved it. It verifies only if every signature verifies over the proposal's statement under
  the key the operator held just before the entry, and the decisions meet the governance
  policy in force then, never counting the submitter;
- ``wallet.freeze`` and ``operator.suspend``: acts that only tighten, immediate for an admin.

Every entry after the genesis carries **signerd's seal**: the HSM audit key (pinned in the
genesis) signs the entry's place and content (its seq, the hash of the entry it follows and its
own hash, see :func:`entry_seal_record`) when signerd appends it, after checking it as every
reader will. Approvals alone do not make an entry: a proposal whose quorum signed it but which
signerd refused to apply (it ended FAILED), or one moved to another place in the ledger, carries
no valid seal, and a store writer who can compute the hash chain cannot make one. Nor does the
seal alone: a sealed proposal entry still needs its quorum, so signerd's own key cannot invent a
governance act. The genesis is not sealed: it is pinned outside the store and signed by every
initial operator.

:func:`fold` replays entries onto a state and raises :class:`AuthorityViolation` at the first
entry that does not verify, so a state returned by it is the one the entries prove. The genesis
document names the initial operators, the governance policy, the policy templates, the
daemon's audit key and, optionally, the initial token registry (``tokens``) and chain registry
(``chains``, signerd.core.chain_registry); each initial
operator signs it, and the daemon pins its digest outside the store (config and HSM). Nothing
in this module trusts a stored row: it is handed entries and checks them.
"""
from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any

from . import backup as BK
from . import canonical, seal
from .approval import (SignedDecision, genesis_statement, proposal_statement, safe_text,
                       signature_valid, verified_votes)
from .errors import (AuthorityViolation, FailedPrecondition, InvalidArgument, InvalidKey,
                     InvalidPolicy, PermissionDenied, PolicyDenied, SignerError)
from .errors import echo
from .model import Decision, EvmChain, OperatorStatus, Token
from . import chain_registry as CR
from .operator_keys import KeyType, fingerprint, key_type, load_public_pem, spki_digest
from .tokens import token_from_json, token_json
from .policy import (MAX_DOCUMENT_CHARS, OperatorView, Policy, QuorumResult, Requirement, Vote,
                     _duration, _names, _no_unknown, _text, can_be_met, evaluate, merge,
                     parse_policy, requirement_from_table)

ZERO = b"\x00" * 32
ENTRY_TAG = b"signerd-authority-entry/v1"
GENESIS = "genesis"
PROPOSAL = "proposal"
FREEZE = "wallet.freeze"
SUSPEND = "operator.suspend"
ENTRY_KINDS = frozenset({GENESIS, PROPOSAL, FREEZE, SUSPEND})
ENTRY_SEAL = "ledger/entry"  # signerd.core.seal's kind for the seal of a ledger entry's place
PROPOSAL_SEAL = "proposal"  # ... and for a proposal document as signerd recorded it

# Governance acts that take effect only through a proposal approved by the governance quorum.
KINDS = (
    "operator.register", "operator.revoke", "operator.roles", "operator.reinstate",
    "wallet.policy", "template.set", "governance.set", "wallet.unfreeze", "wallet.import",
    "wallet.create", "token.set", "backup.key", "backup.create", "chain.set", "safe.owners",
)
# Kinds added after governance policies were first written: a policy whose rules name none of
# them (and have no "*") still parses, and such a kind needs every rule's demands at once.
LATER_KINDS = frozenset({"token.set", "backup.key", "backup.create", "chain.set", "safe.owners"})
OPERATOR_ID = re.compile(r"[a-z][a-z0-9_-]{0,63}")
ROLE = re.compile(r"[a-z][a-z0-9_]{0,31}")
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
PROPOSAL_ID = re.compile(r"p_[0-9a-f]{20}")
WALLET_ID = re.compile(r"w_[0-9a-f]{16}")
MAX_TEXT = 1000
_HEX64 = re.compile(r"[0-9a-f]{64}")

_DOC_KEYS = frozenset({"id", "instance_id", "kind", "change", "submitter", "created_at",
                       "expires_at"})
_CHANGE_KEYS: dict[str, dict[str, type]] = {
    "operator.register": {"operator_id": str, "roles": list, "public_key_pem": str},
    "operator.revoke": {"operator_id": str, "reason": str},
    "operator.roles": {"operator_id": str, "old_roles": list, "roles": list},
    "operator.reinstate": {"operator_id": str, "reason": str},
    "wallet.policy": {"wallet_id": str, "base_version": int, "old_document": str,
                      "document": str, "template": str},
    "template.set": {"name": str, "base_sha256": str, "old_document": str, "document": str},
    "governance.set": {"base_sha256": str, "old_document": str, "document": str},
    "wallet.unfreeze": {"wallet_id": str, "order_ref": str, "freeze_order": str},
    "wallet.import": {"wallet": dict, "seizure_record": str, "form": str,
                      "derivation_path": str},
    "wallet.create": {"wallet": dict},
    # A token registry entry added or changed; old_token is the entry in force ({} for none).
    "token.set": {"token": dict, "old_token": dict},
    # The key backup (signerd.core.backup): a ceremony's backup key approved by its check value
    # and custodians; a backup bundle made under an approved backup key.
    "backup.key": {"ceremony": dict},
    "backup.create": {"ceremony_id": str, "check_value": str},
    # A chain registry entry added or changed; old_chain is the entry in force ({} for none).
    "chain.set": {"chain": dict, "old_chain": dict},
    # A Safe transaction that changes its own Safe (owners, threshold, guard, modules, fallback
    # handler): the governance quorum approves that transfer's exact SafeTx hash, on top of
    # the wallet's own quorum; the sign step signs it only when this approval is in the ledger.
    "safe.owners": {"wallet_id": str, "transfer_id": str, "safe": str, "chain_id": int,
                    "safe_tx_hash": str, "safe_nonce": str, "owner_change": str},
}
# Fields a change may carry or leave out (absent in proposals made before they existed, so those
# keep their statements and the ledgers that hold them keep folding).
_OPTIONAL_CHANGE_KEYS: dict[str, dict[str, type]] = {
    # The operator's declaration that their key was generated on, and stays on, a token
    # (a description of the device); required for the roles the governance's hardware_keys names.
    "operator.register": {"token_held": str},
}
MAX_DEVICE_TEXT = 200
WALLET_KEYS = frozenset({"id", "chain", "network", "script_type", "category", "case_ref",
                         "legal_basis", "address", "descriptor", "threshold", "chain_ids",
                         "cosigners", "keys", "template", "policy_sha256", "origin", "proposal",
                         "created_at"})
# Keys a wallet record may add to WALLET_KEYS: "safe" for a Safe wallet (safe_wallet.CheckedSafe)
WALLET_OPTIONAL_KEYS = frozenset({"safe"})
_GENESIS_KEYS = frozenset({"instance_id", "created_at", "operators", "governance", "templates",
                           "audit_key"})
# Absent in a genesis without initial tokens, and in one made before the chain registry (whose
# registry starts empty: see signerd.core.chain_registry).
_GENESIS_OPTIONAL = frozenset({"tokens", "chains"})
_GOV_KEYS = frozenset({"name", "expiry", "roles", "rule", "hardware_keys"})
_GOV_RULE_KEYS = frozenset({"name", "kinds", "approvers", "roles", "group", "veto", "expiry"})


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_digest(public_key_pem: str) -> str:
    """What makes an operator key unique: SHA-256 of its canonical SubjectPublicKeyInfo (the
    same for one key in any encoding: a compressed P-256 point, another PEM layout)."""
    return spki_digest(load_public_pem(public_key_pem.encode()))


# --------------------------------------------------------------------------- governance policy


@dataclass(frozen=True)
class GovernanceRule:
    name: str
    kinds: frozenset[str]  # proposal kinds, or "*"
    requirement: Requirement


@dataclass(frozen=True)
class GovernancePolicy:
    """Who must approve each kind of governance proposal, the roles operators may hold, and
    how long a proposal waits for its quorum. Parse it with :func:`parse_governance`."""

    name: str
    expiry: int
    roles: frozenset[str]
    rules: tuple[GovernanceRule, ...]
    # Roles whose operators must register a key they declare token-held (``token_held``).
    hardware_keys: frozenset[str] = frozenset()

    def names(self, kind: str) -> bool:
        """Whether a rule names ``kind`` (or ``*``)."""
        return any(kind in r.kinds or "*" in r.kinds for r in self.rules)

    def requirement_for(self, kind: str) -> Requirement:
        """The merged requirement of every rule naming ``kind`` (or ``*``); for a kind of
        :data:`LATER_KINDS` that no rule names, the merged requirement of every rule."""
        hits = [r.requirement for r in self.rules if kind in r.kinds or "*" in r.kinds]
        if not hits and kind in LATER_KINDS:
            hits = [r.requirement for r in self.rules]
        if not hits:
            raise PolicyDenied(f"the governance policy has no rule for {kind} proposals")
        return reduce(merge, hits)


def parse_governance(text: str) -> GovernancePolicy:
    """Parse a governance policy document (TOML)::

        name = "governance"
        expiry = "72h"                      # how long a proposal waits for its quorum
        roles = ["admin", "investigator"]   # the roles operators may hold
        [[rule]]                            # at least one; every kind needs a matching rule
        name = "two-admins"
        kinds = ["*"]                       # proposal kinds (operator.register, ...) or "*";
                                            # a later kind (token.set) no rule names needs
                                            # every rule's demands at once
        approvers = 2
        roles = { admin = 2 }               # as in transfer policies: minimums, group, veto

    and optionally ``hardware_keys = ["custody_officer"]``: roles whose operators must register
    with the declaration that their key is held on a token (``token_held``); a registration, a
    role change or a governance change that would give such a role to an operator without it is
    refused.
    """
    if not isinstance(text, str):
        raise InvalidPolicy("governance policy must be text")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidPolicy(f"governance policy exceeds {MAX_DOCUMENT_CHARS} characters")
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise InvalidPolicy(f"governance policy is not valid TOML: {e}") from None
    _no_unknown(doc, _GOV_KEYS, "governance policy")
    if "name" not in doc:
        raise InvalidPolicy("governance policy: missing key 'name'")
    name = _text(doc["name"], "governance policy key 'name'")
    expiry = _duration(doc.get("expiry", "72h"), "governance policy key 'expiry'")
    roles = frozenset(_names(doc.get("roles", []), "governance policy key 'roles'", _role))
    if not roles:
        raise InvalidPolicy("governance policy key 'roles' must list the roles operators hold")
    hardware = frozenset(_names(doc.get("hardware_keys", []),
                                "governance policy key 'hardware_keys'", _role))
    if hardware - roles:
        raise InvalidPolicy(f"governance policy key 'hardware_keys' names role "
                            f"{echo(sorted(hardware - roles)[0])}, which is not in 'roles'")
    raw_rules = doc.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise InvalidPolicy("governance policy: needs at least one [[rule]]")
    rules: list[GovernanceRule] = []
    for i, raw in enumerate(raw_rules, 1):
        if not isinstance(raw, dict) or "name" not in raw:
            raise InvalidPolicy(f"governance rule #{i}: must be a table with a 'name'")
        rname = _text(raw["name"], f"governance rule #{i}: key 'name'")
        _no_unknown(raw, _GOV_RULE_KEYS, f"governance rule {echo(rname)}")
        kinds = frozenset(_names(raw.get("kinds", ["*"]), f"governance rule {echo(rname)}: key "
                                 "'kinds'", _text))
        unknown = sorted(kinds - set(KINDS) - {"*"})
        if unknown or not kinds:
            raise InvalidPolicy(f"governance rule {echo(rname)}: key 'kinds': "
                                f"{echo(unknown[0])} is not "
                                f"a proposal kind ({', '.join(KINDS)} or *)" if unknown else
                                f"governance rule {echo(rname)}: key 'kinds' is empty")
        req = requirement_from_table(raw, rname, expiry)
        named = {r for r, _ in req.roles} | req.veto
        if named - roles:
            raise InvalidPolicy(f"governance rule {echo(rname)} names role "
                                f"{echo(sorted(named - roles)[0])}, which is not in 'roles'")
        if any(r.name == rname for r in rules):
            raise InvalidPolicy(f"governance rule {echo(rname)}: name used by another rule")
        rules.append(GovernanceRule(rname, kinds, req))
    policy = GovernancePolicy(name, expiry, roles, tuple(rules), hardware)
    for kind in KINDS:
        policy.requirement_for(kind)
    return policy


def _role(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ROLE.fullmatch(value):
        raise InvalidPolicy(f"{where}: {echo(value)} is not a role name ({ROLE.pattern})")
    return value


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class OperatorRecord:
    id: str
    roles: frozenset[str]
    public_key_pem: str
    fingerprint: str
    status: OperatorStatus
    since: int  # the ledger entry that registered the operator
    key_type: KeyType  # the registered key's type: the one algorithm its signatures verify by
    # The device the operator declared their key held on, as the quorum approved it ("" for
    # none): the operator's and the quorum's word, not the device's attestation.
    token_held: str = ""


@dataclass(frozen=True)
class Template:
    name: str
    sha256: str
    version: int


@dataclass(frozen=True)
class WalletPolicy:
    """A wallet's policy version set by a proposal (version 1 is the template it was made
    with, named in its sealed record)."""

    version: int
    sha256: str
    waiver: bool
    proposal: str


@dataclass(frozen=True)
class BackupKey:
    """A ceremony's backup key, approved by a ``backup.key`` proposal: signerd wraps custody
    keys only under a trusted HSM key with this check value (signerd.core.backup)."""

    ceremony_id: str
    check_value: str
    key_id: str
    threshold: int
    custodians: tuple[tuple[str, str], ...]  # (operator id, key fingerprint), by share index
    proposal: str
    record: Mapping[str, Any]  # the ceremony record as approved


@dataclass(frozen=True)
class AuthorityState:
    """What the ledger proves, after entry ``seq`` whose hash is ``head``."""

    instance_id: str
    genesis: bytes
    seq: int
    head: bytes
    audit_key_id: str
    audit_public_key: bytes
    governance: GovernancePolicy
    governance_sha256: str
    operators: Mapping[str, OperatorRecord]
    key_owners: Mapping[str, str]  # key digest -> operator id: a key serves one identity, ever
    templates: Mapping[str, Template]
    texts: Mapping[str, str]  # sha256 -> every policy text the governance ever approved
    wallet_policies: Mapping[str, tuple[WalletPolicy, ...]]
    frozen: Mapping[str, str]  # wallet id -> the court order of the freeze in force
    approved_wallets: Mapping[str, str]  # wallet id -> SHA-256 of its approved record
    applied: Mapping[str, int]  # proposal id -> ledger seq
    # The token registry: (chain id, lower-case contract address) -> entry
    tokens: Mapping[tuple[int, str], Token] = field(default_factory=dict)
    # Approved backup keys by ceremony id; approved backups: proposal id -> (ceremony id, the
    # proposal's expiry, until which its bundle may be made)
    backup_keys: Mapping[str, BackupKey] = field(default_factory=dict)
    backups: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    # The chain registry: EVM chain id -> entry (signerd.core.chain_registry)
    chains: Mapping[int, EvmChain] = field(default_factory=dict)
    # Safe transfers that change their own Safe, approved by the governance quorum
    # (``safe.owners``): transfer id -> the SafeTx hash approved (hex)
    safe_owner_changes: Mapping[str, str] = field(default_factory=dict)

    @property
    def governance_text(self) -> str:
        return self.texts[self.governance_sha256]

    def operator_views(self) -> dict[str, OperatorView]:
        return {o.id: OperatorView(o.id, o.roles, o.status is OperatorStatus.ACTIVE)
                for o in self.operators.values()}

    def deciding_operator(self, operator_id: str, submitter: str, subject: str
                          ) -> OperatorRecord:
        """The operator deciding on ``subject`` (``transfer ID``, ``proposal ID``), which
        ``submitter`` submitted: registered and active, and not its submitter
        (PermissionDenied)."""
        op = self.operators.get(operator_id)
        if op is None:
            raise PermissionDenied(f"operator {operator_id} is not an operator in the chain of "
                                   "authority")
        if op.status is not OperatorStatus.ACTIVE:
            raise PermissionDenied(f"operator {operator_id} is {op.status.value}")
        if operator_id == submitter:
            raise PermissionDenied(
                f"operator {operator_id} submitted {subject} and cannot decide on it")
        return op

    def keys(self) -> dict[str, bytes]:
        """Operator id -> public key PEM, for every operator the ledger knows (a suspended or
        revoked operator's signature still verifies; ``evaluate`` does not count it)."""
        return {o.id: o.public_key_pem.encode() for o in self.operators.values()}

    def wallet_policy_version(self, wallet_id: str) -> int:
        return 1 + len(self.wallet_policies.get(wallet_id, ()))


class _Builder:
    """A state being changed by one entry: fields are copied on first write."""

    def __init__(self, state: AuthorityState):
        self.state = state
        self.changes: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        return self.changes.get(name, getattr(self.state, name))

    def mut(self, name: str) -> dict[str, Any]:
        if name not in self.changes:
            self.changes[name] = dict(getattr(self.state, name))
        return self.changes[name]  # type: ignore[no-any-return]

    def set(self, name: str, value: Any) -> None:
        self.changes[name] = value

    def build(self, seq: int, head: bytes) -> AuthorityState:
        return replace(self.state, seq=seq, head=head, **self.changes)


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One link of the authority ledger. ``seal`` is signerd's seal over
    :func:`entry_seal_record` (hex; empty for the genesis): it signs the hash, so it is not part
    of it."""

    seq: int
    kind: str
    body: dict[str, Any]
    decisions: tuple[SignedDecision, ...]
    prev_hash: bytes
    hash: bytes
    seal: str = ""

    def approvals_json(self) -> list[dict[str, str]]:
        return decisions_json(self.decisions)


def decisions_json(decisions: Iterable[SignedDecision]) -> list[dict[str, str]]:
    return [{"operator_id": d.operator_id, "decision": Decision(d.decision).value,
             "signature": d.signature.hex()}
            for d in sorted(decisions, key=lambda d: d.operator_id)]


def decisions_from_json(items: Any, where: str) -> tuple[SignedDecision, ...]:
    if not isinstance(items, list):
        raise InvalidArgument(f"{where}: approvals must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"operator_id", "decision", "signature"}:
            raise InvalidArgument(f"{where}: an approval must have operator_id, decision and "
                                  "signature")
        try:
            out.append(SignedDecision(str(item["operator_id"]), Decision(item["decision"]),
                                      bytes.fromhex(item["signature"])))
        except (ValueError, TypeError):
            raise InvalidArgument(f"{where}: an approval is malformed") from None
    return tuple(out)


def entry_hash(prev_hash: bytes, seq: int, kind: str, body: Mapping[str, Any],
               decisions: Iterable[SignedDecision]) -> bytes:
    message = (ENTRY_TAG + prev_hash + seq.to_bytes(8, "big")
               + canonical.dumps({"kind": kind, "body": dict(body),
                                  "approvals": decisions_json(decisions)}))
    return hashlib.sha256(message).digest()


def make_entry(prev_seq: int, prev_hash: bytes, kind: str, body: Mapping[str, Any],
               decisions: Iterable[SignedDecision] = (), seal_hex: str = "") -> Entry:
    seq = prev_seq + 1
    decisions = tuple(sorted(decisions, key=lambda d: d.operator_id))
    return Entry(seq, kind, dict(body), decisions, prev_hash,
                 entry_hash(prev_hash, seq, kind, body, decisions), seal_hex)


def next_entry(state: AuthorityState, kind: str, body: Mapping[str, Any],
               decisions: Iterable[SignedDecision] = ()) -> Entry:
    """The unsealed entry that would follow ``state``'s head (see :func:`seal_entry`)."""
    return make_entry(state.seq, state.head, kind, body, decisions)


def entry_seal_record(entry: Entry) -> dict[str, Any]:
    """What signerd's seal of a ledger entry covers: its place (seq and the hash of the entry it
    follows) and, through its hash, its kind, body and approvals."""
    return {"seq": entry.seq, "prev_hash": entry.prev_hash.hex(), "hash": entry.hash.hex()}


def seal_entry(entry: Entry, sealer: Callable[[str, dict[str, Any]], str]) -> Entry:
    """``entry`` with signerd's seal; ``sealer(kind, record)`` is ``App.seal`` (the HSM's audit
    key). signerd seals only an entry :func:`check_entry` accepted at its place."""
    return replace(entry, seal=sealer(ENTRY_SEAL, entry_seal_record(entry)))


def entry_sealed(state: AuthorityState, entry: Entry) -> bool:
    """Whether ``entry`` carries signerd's seal under the audit key ``state`` pins (verified
    by content, so the verdict cached for these exact bytes cannot be poisoned)."""
    return seal.valid(state.audit_public_key, ENTRY_SEAL, entry_seal_record(entry), entry.seal)


def proposal_sealed(state: AuthorityState, doc: Mapping[str, Any], seal_hex: str) -> bool:
    """Whether a proposal document carries signerd's seal (made when signerd recorded it)."""
    return seal.valid(state.audit_public_key, PROPOSAL_SEAL, doc, seal_hex)


# --------------------------------------------------------------------------- genesis


def genesis_digest(doc: Mapping[str, Any]) -> bytes:
    """The digest the daemon pins: SHA-256 of the genesis statement the operators sign."""
    return hashlib.sha256(genesis_statement(doc)).digest()


def make_genesis(*, instance_id: str, created_at: int, operators: list[dict[str, Any]],
                 governance: str, templates: Mapping[str, str], audit_key_id: str,
                 audit_public_key: bytes, tokens: Iterable[Mapping[str, Any]] = (),
                 chains: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The genesis document (checked as :func:`fold` will check it). ``tokens``: initial
    token registry entries (chain_id, address, standard, symbol, decimals); without them the
    document has no ``tokens`` key, as genesis documents made before the registry. ``chains``:
    initial chain registry entries (chain_id, name, symbol, decimals); without them no
    ``chains`` key (an empty registry, as genesis documents made before it)."""
    doc: dict[str, Any] = {
        "instance_id": instance_id,
        "created_at": int(created_at),
        "operators": sorted(({"id": o["id"], "roles": sorted(set(o["roles"])),
                              "public_key_pem": o["public_key_pem"],
                              **({"token_held": o["token_held"]} if o.get("token_held")
                                 else {})} for o in operators),
                            key=lambda o: o["id"]),
        "governance": governance,
        "templates": dict(sorted(templates.items())),
        "audit_key": {"key_id": audit_key_id, "public_key": audit_public_key.hex()},
    }
    entries = [token_json(token_from_json(dict(t), "genesis: tokens")) for t in tokens]
    if entries:
        doc["tokens"] = sorted(entries, key=lambda t: (t["chain_id"], t["address"].lower()))
    chain_entries = [CR.chain_json(CR.chain_from_json(dict(c), "genesis: chains"))
                     for c in chains]
    if chain_entries:
        doc["chains"] = sorted(chain_entries, key=lambda c: c["chain_id"])
    _genesis_state(doc, ZERO)
    return doc


def _genesis_state(doc: Any, head: bytes) -> AuthorityState:
    """The state a genesis document establishes; InvalidArgument names what is wrong."""
    if (not isinstance(doc, dict) or not _GENESIS_KEYS <= set(doc)
            or not set(doc) <= _GENESIS_KEYS | _GENESIS_OPTIONAL):
        raise InvalidArgument(f"genesis: must have exactly the keys {sorted(_GENESIS_KEYS)} "
                              f"(and optionally {', '.join(sorted(_GENESIS_OPTIONAL))})")
    if not isinstance(doc["instance_id"], str) or not doc["instance_id"]:
        raise InvalidArgument("genesis: instance_id must be a non-empty string")
    try:
        governance = parse_governance(doc["governance"])
    except InvalidPolicy as e:
        raise InvalidArgument(f"genesis: {e.message}") from None
    key = doc["audit_key"]
    if (not isinstance(key, dict) or set(key) != {"key_id", "public_key"}
            or not isinstance(key["key_id"], str) or not isinstance(key["public_key"], str)):
        raise InvalidArgument("genesis: audit_key must name key_id and public_key")
    operators: dict[str, OperatorRecord] = {}
    owners: dict[str, str] = {}
    if not isinstance(doc["operators"], list) or not doc["operators"]:
        raise InvalidArgument("genesis: operators must list the initial operators")
    for o in doc["operators"]:
        if (not isinstance(o, dict) or not {"id", "roles", "public_key_pem"} <= set(o)
                or not set(o) <= {"id", "roles", "public_key_pem", "token_held"}):
            raise InvalidArgument("genesis: an operator has id, roles and public_key_pem (and "
                                  "optionally token_held)")
        rec = _new_operator(o["id"], o["roles"], o["public_key_pem"], governance, owners,
                            operators, since=1, token_held=o.get("token_held"))
        operators[rec.id] = rec
        owners[key_digest(rec.public_key_pem)] = rec.id
    texts = {sha256_hex(doc["governance"]): doc["governance"]}
    templates: dict[str, Template] = {}
    if not isinstance(doc["templates"], dict) or not doc["templates"]:
        raise InvalidArgument("genesis: templates must name at least one policy template")
    state = AuthorityState(
        instance_id=doc["instance_id"], genesis=genesis_digest(doc), seq=1, head=head,
        audit_key_id=key["key_id"], audit_public_key=bytes.fromhex(key["public_key"]),
        governance=governance, governance_sha256=sha256_hex(doc["governance"]),
        operators=operators, key_owners=owners, templates={}, texts=texts,
        wallet_policies={}, frozen={}, approved_wallets={}, applied={})
    raw_chains = doc.get("chains", [])
    if not isinstance(raw_chains, list) or ("chains" in doc and not raw_chains):
        raise InvalidArgument("genesis: chains, when present, must list chain entries")
    chains = CR.registry((CR.chain_from_json(raw, "genesis: chains") for raw in raw_chains),
                         "genesis: chains")
    state = replace(state, chains=chains)  # the templates may name their native coins
    for name, text in doc["templates"].items():
        if not isinstance(name, str) or not TEMPLATE_NAME.fullmatch(name):
            raise InvalidArgument(f"genesis: {echo(name)} is not a template name")
        check_policy_text(state, text, f"genesis template {echo(name)}", template=True)
        templates[name] = Template(name, sha256_hex(text), 1)
        texts[sha256_hex(text)] = text
    registry: dict[tuple[int, str], Token] = {}
    raw_tokens = doc.get("tokens", [])
    if not isinstance(raw_tokens, list) or ("tokens" in doc and not raw_tokens):
        raise InvalidArgument("genesis: tokens, when present, must list token entries")
    for raw in raw_tokens:
        _add_token(registry, token_from_json(raw, "genesis: tokens"), "genesis: tokens")
    _check_governance_can_act(governance, operators.values(), "genesis")
    return replace(state, templates=templates, texts=texts, tokens=registry, chains=chains)


def _add_token(registry: dict[tuple[int, str], Token], token: Token, where: str) -> None:
    """Put ``token`` in ``registry`` (replacing its own entry): one entry per contract and
    chain, and one contract per symbol and chain, so a symbol names one token."""
    for other in registry.values():
        if (other.chain_id == token.chain_id and other.symbol.upper() == token.symbol.upper()
                and other.key != token.key):
            raise InvalidArgument(f"{where}: symbol {token.symbol} is already the symbol of "
                                  f"token {other.address} on chain {other.chain_id}")
    registry[token.key] = token


def _set_entry(b: _Builder, table: str, key: Any, entry: Any, old: Any,
               to_json: Callable[[Any], dict[str, Any]],
               add: Callable[[dict[Any, Any], Any, str], None], where: str, name: str,
               field_name: str) -> None:
    """Apply a registry change (``token.set``, ``chain.set``): ``entry`` replaces the entry at
    ``key`` of ``table`` only if that entry is still the ``old`` the proposal was made against
    (``name`` names it in the refusal) and the change changes something (``field_name``)."""
    current = b.get(table).get(key)
    if (to_json(current) if current is not None else {}) != old:
        raise FailedPrecondition(f"{name} changed since this proposal was made; propose again")
    if current == entry:
        raise InvalidArgument(f"{field_name} is registered with these fields already")
    registry = dict(b.get(table))
    add(registry, entry, where)
    b.set(table, registry)


def _new_operator(op_id: Any, roles: Any, pem: Any, governance: GovernancePolicy,
                  owners: Mapping[str, str], operators: Mapping[str, OperatorRecord], *,
                  since: int, token_held: Any = None) -> OperatorRecord:
    if not isinstance(op_id, str) or not OPERATOR_ID.fullmatch(op_id):
        raise InvalidArgument(f"operator_id: {echo(op_id)} is not an operator id "
                              f"({OPERATOR_ID.pattern})")
    if op_id in operators:
        raise FailedPrecondition(f"operator_id: operator {op_id} is already registered "
                                 f"({operators[op_id].status.value})")
    role_set = _roles(roles, governance.roles)
    device = "" if token_held is None else _device(token_held)
    _check_hardware_keys(governance, op_id, role_set, device)
    if not isinstance(pem, str):
        raise InvalidArgument("public_key_pem: must be text")
    try:
        key = load_public_pem(pem.encode())
    except InvalidKey as e:
        raise InvalidArgument(f"public_key_pem: {e.message}") from None
    owner = owners.get(spki_digest(key))
    if owner is not None:
        raise InvalidArgument(f"public_key_pem: this key is already registered to operator "
                              f"{owner}; one key serves one identity")
    return OperatorRecord(op_id, role_set, pem, fingerprint(key), OperatorStatus.ACTIVE, since,
                          key_type(key), device)


def _device(value: Any) -> str:
    """A declaration that the key is token-held: the device, 1 to MAX_DEVICE_TEXT printable
    characters."""
    if (not isinstance(value, str) or not value.strip() or len(value) > MAX_DEVICE_TEXT
            or not value.isprintable()):
        raise InvalidArgument(f"token_held: the device holding the key, 1 to {MAX_DEVICE_TEXT} "
                              "printable characters (e.g. 'YubiKey 5 NFC serial 12345678, PIV "
                              "slot 9c')")
    return value


def _check_hardware_keys(governance: GovernancePolicy, op_id: str, roles: frozenset[str],
                         token_held: str) -> None:
    """Refuse roles that need a token-held key for an operator who has not declared one."""
    needs = sorted(roles & governance.hardware_keys)
    if needs and not token_held:
        raise FailedPrecondition(
            f"operator {op_id}: the governance policy requires a key held on a token for role "
            f"{needs[0]}, and this operator's registration does not declare one (register the "
            "key made on the token with the device named: signerctl operator add ... "
            "--token-held DEVICE)")


def _roles(roles: Any, known: frozenset[str]) -> frozenset[str]:
    if not isinstance(roles, list) or not roles:
        raise InvalidArgument("roles: at least one role is required")
    for r in roles:
        if not isinstance(r, str) or r not in known:
            raise InvalidArgument(f"roles: {echo(r)} is not a role of the governance policy "
                                  f"({', '.join(sorted(known))})")
    return frozenset(roles)


def check_policy_text(state: AuthorityState, text: Any, where: str, *,
                      template: bool) -> Policy:
    """A transfer policy the governance may approve: it parses, names only registered
    operators and the governance policy's roles, and (for a template) waives no floor."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{where}: must be text")
    try:
        policy = parse_policy(text)
    except InvalidPolicy as e:
        raise InvalidArgument(f"{where}: {e.message}") from None
    if template and policy.floor_waiver:
        raise InvalidArgument(f"{where}: floor_waiver is allowed only in a policy the governance "
                              "quorum sets for one wallet, never in a template")
    known = {n for c in state.chains.values() for n in CR.asset_names(c.symbol, c.chain_id)}
    unknown_assets = sorted(policy.native_assets() - known)
    if unknown_assets:
        raise InvalidArgument(f"{where}: names asset {unknown_assets[0]}, which is not the native "
                              "coin of a chain in the chain registry (signerctl chain list)")
    roles, operators = policy.names()
    unknown_roles = sorted(roles - state.governance.roles)
    if unknown_roles:
        raise InvalidArgument(f"{where}: names role {echo(unknown_roles[0])}, which the governance "
                              f"policy does not know ({', '.join(sorted(state.governance.roles))})")
    for op in sorted(operators):
        rec = state.operators.get(op)
        if rec is None or rec.status is OperatorStatus.REVOKED:
            raise InvalidArgument(f"{where}: names operator {echo(op)}, who is not a registered "
                                  "operator")
    return policy


def _check_governance_can_act(policy: GovernancePolicy, operators: Iterable[OperatorRecord],
                              what: str) -> None:
    """Refuse a change that would leave some kind of proposal without enough active operators
    to approve it: the governance must never lock itself out."""
    active = [o for o in operators if o.status is OperatorStatus.ACTIVE]
    for kind in KINDS:
        if kind in LATER_KINDS and not policy.names(kind):
            continue  # not a lock-out: a governance.set can still name it
        req = policy.requirement_for(kind)
        members = [o.roles for o in active if req.group is None or o.id in req.group]
        if not can_be_met(req, members):
            raise FailedPrecondition(f"{what} would leave {kind} proposals unapprovable: the "
                                     f"active operators cannot meet {req.describe()}")


# --------------------------------------------------------------------------- proposals


def check_document(doc: Any, instance_id: str) -> dict[str, Any]:
    """The shape of a proposal document; InvalidArgument names the field."""
    if not isinstance(doc, dict) or set(doc) != _DOC_KEYS:
        raise InvalidArgument(f"proposal: must have exactly the keys {sorted(_DOC_KEYS)}")
    if not isinstance(doc["id"], str) or not PROPOSAL_ID.fullmatch(doc["id"]):
        raise InvalidArgument("proposal: id is malformed")
    if doc["instance_id"] != instance_id:
        raise InvalidArgument(f"proposal: it is for daemon {doc['instance_id']!r}, not "
                              f"{instance_id!r}")
    kind = doc["kind"]
    if kind not in _CHANGE_KEYS:
        raise InvalidArgument(f"kind: {echo(kind)} is not a proposal kind ({', '.join(KINDS)})")
    for key in ("created_at", "expires_at"):
        if isinstance(doc[key], bool) or not isinstance(doc[key], int) or doc[key] < 0:
            raise InvalidArgument(f"proposal: {key} must be a non-negative integer")
    if not isinstance(doc["submitter"], str) or not doc["submitter"]:
        raise InvalidArgument("proposal: submitter must be named")
    change = doc["change"]
    optional = _OPTIONAL_CHANGE_KEYS.get(kind, {})
    schema = {**_CHANGE_KEYS[kind], **optional}
    if (not isinstance(change, dict) or not set(_CHANGE_KEYS[kind]) <= set(change)
            or not set(change) <= set(schema)):
        extra = f" (and optionally {', '.join(sorted(optional))})" if optional else ""
        raise InvalidArgument(f"change: a {kind} proposal has exactly the fields "
                              f"{', '.join(sorted(_CHANGE_KEYS[kind]))}{extra}")
    for name, typ in schema.items():
        if name not in change:
            continue
        value = change[name]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise InvalidArgument(f"change.{name}: must be {typ.__name__}")
        if isinstance(value, str) and len(value) > MAX_DOCUMENT_CHARS:
            raise InvalidArgument(f"change.{name}: too long")
    return doc


def check_proposal(state: AuthorityState, doc: Mapping[str, Any]) -> None:
    """Whether ``doc`` would apply to ``state`` as it is (the checks of :func:`fold`, without
    the quorum): raises InvalidArgument or FailedPrecondition naming the field."""
    _apply_change(_Builder(state), dict(doc), state.seq + 1)


def requirement(state: AuthorityState, doc: Mapping[str, Any]) -> Requirement:
    return state.governance.requirement_for(doc["kind"])


def check_approvable(state: AuthorityState, doc: Mapping[str, Any]) -> None:
    """Refuse a proposal that can never pass: the active operators other than its submitter
    (who never counts) cannot meet what its kind needs (FailedPrecondition naming both)."""
    req = requirement(state, doc)
    submitter = doc["submitter"]
    members = [o.roles for o in state.operators.values()
               if o.status is OperatorStatus.ACTIVE and o.id != submitter
               and (req.group is None or o.id in req.group)]
    if not can_be_met(req, members):
        raise FailedPrecondition(
            f"{doc['kind']} proposals need {req.describe()}, and the submitter never counts: "
            f"the active operators other than {echo(submitter, quote=False)} cannot meet it, so "
            "this proposal could never pass; let another operator propose it")


def proposal_quorum(state: AuthorityState, doc: Mapping[str, Any],
                    decisions: Iterable[SignedDecision]) -> tuple[QuorumResult, list[Vote],
                                                                  list[str]]:
    """Verify the decisions over the proposal's statement under the keys in force and count
    them toward the governance requirement for its kind (the submitter never counts)."""
    votes, bad = verified_votes(lambda d: proposal_statement(doc, d), decisions, state.keys())
    q = evaluate(requirement(state, doc), votes, state.operator_views(), doc["submitter"])
    return q, votes, bad


def wallet_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of a wallet's canonical record (what a wallet proposal approves)."""
    return hashlib.sha256(canonical.dumps(dict(record))).hexdigest()


def _apply_change(b: _Builder, doc: dict[str, Any], seq: int) -> None:
    check_document(doc, b.state.instance_id)
    if doc["id"] in b.get("applied"):
        raise FailedPrecondition(f"proposal {doc['id']} was applied already (ledger entry "
                                 f"{b.get('applied')[doc['id']]})")
    kind, c = doc["kind"], doc["change"]
    ops: Mapping[str, OperatorRecord] = b.get("operators")
    gov: GovernancePolicy = b.get("governance")

    def operator(op_id: str) -> OperatorRecord:
        rec = ops.get(op_id)
        if rec is None:
            raise InvalidArgument(f"operator_id: {echo(op_id)} is not a registered operator")
        return rec

    if kind == "operator.register":
        rec = _new_operator(c["operator_id"], c["roles"], c["public_key_pem"], gov,
                            b.get("key_owners"), ops, since=seq, token_held=c.get("token_held"))
        b.mut("operators")[rec.id] = rec
        b.mut("key_owners")[key_digest(rec.public_key_pem)] = rec.id
    elif kind == "operator.revoke":
        rec = operator(c["operator_id"])
        if rec.status is OperatorStatus.REVOKED:
            raise FailedPrecondition(f"operator {rec.id} is already revoked")
        _set_operator(b, replace(rec, status=OperatorStatus.REVOKED), "revoking " + rec.id)
    elif kind == "operator.roles":
        rec = operator(c["operator_id"])
        if rec.status is OperatorStatus.REVOKED:
            raise FailedPrecondition(f"operator {rec.id} is revoked")
        if sorted(c["old_roles"]) != sorted(rec.roles):
            raise FailedPrecondition(f"operator {rec.id} holds {', '.join(sorted(rec.roles))}, "
                                     "not the roles this proposal changes; propose again")
        roles = _roles(c["roles"], gov.roles)
        if roles == rec.roles:
            raise InvalidArgument(f"roles: operator {rec.id} holds these roles already")
        _check_hardware_keys(gov, rec.id, roles, rec.token_held)
        _set_operator(b, replace(rec, roles=roles), f"changing the roles of {rec.id}")
    elif kind == "operator.reinstate":
        rec = operator(c["operator_id"])
        if rec.status is not OperatorStatus.SUSPENDED:
            raise FailedPrecondition(f"operator {rec.id} is {rec.status.value}, not suspended "
                                     "(a revoked operator stays revoked)")
        b.mut("operators")[rec.id] = replace(rec, status=OperatorStatus.ACTIVE)
    elif kind == "wallet.policy":
        wid = _wallet_id(c["wallet_id"])
        versions = b.get("wallet_policies").get(wid, ())
        current = 1 + len(versions)
        if c["base_version"] != current:
            raise FailedPrecondition(f"wallet {wid} is at policy version {current}, not "
                                     f"{c['base_version']}; propose again")
        if versions and sha256_hex(c["old_document"]) != versions[-1].sha256:
            raise FailedPrecondition(f"old_document is not wallet {wid}'s policy version "
                                     f"{current}")
        if c["template"]:
            tpl = b.get("templates").get(c["template"])
            if tpl is None or tpl.sha256 != sha256_hex(c["document"]):
                raise InvalidArgument(f"template: {echo(c['template'])} is not a template "
                                      "with this text")
        policy = check_policy_text(_state_of(b), c["document"], "document", template=False)
        sha = sha256_hex(c["document"])
        b.mut("texts")[sha] = c["document"]
        b.mut("wallet_policies")[wid] = versions + (
            WalletPolicy(current + 1, sha, bool(policy.floor_waiver), doc["id"]),)
    elif kind == "template.set":
        name = c["name"]
        if not TEMPLATE_NAME.fullmatch(name):
            raise InvalidArgument(f"name: {echo(name)} is not a template name "
                                  f"({TEMPLATE_NAME.pattern})")
        tpl = b.get("templates").get(name)
        if (tpl.sha256 if tpl else "") != c["base_sha256"]:
            raise FailedPrecondition(f"template {name} changed since this proposal was made; "
                                     "propose again")
        if tpl is not None and sha256_hex(c["old_document"]) != tpl.sha256:
            raise FailedPrecondition(f"old_document is not template {name}'s current text")
        check_policy_text(_state_of(b), c["document"], "document", template=True)
        sha = sha256_hex(c["document"])
        if tpl is not None and tpl.sha256 == sha:
            raise InvalidArgument(f"document: template {name} has this text already")
        b.mut("texts")[sha] = c["document"]
        b.mut("templates")[name] = Template(name, sha, (tpl.version if tpl else 0) + 1)
    elif kind == "governance.set":
        if c["base_sha256"] != b.get("governance_sha256"):
            raise FailedPrecondition("the governance policy changed since this proposal was "
                                     "made; propose again")
        if sha256_hex(c["old_document"]) != b.get("governance_sha256"):
            raise FailedPrecondition("old_document is not the governance policy in force")
        try:
            new = parse_governance(c["document"])
        except InvalidPolicy as e:
            raise InvalidArgument(f"document: {e.message}") from None
        for rec in ops.values():
            if rec.status is not OperatorStatus.REVOKED and not rec.roles <= new.roles:
                raise FailedPrecondition(f"document: operator {rec.id} holds roles "
                                         f"{', '.join(sorted(rec.roles - new.roles))} that the "
                                         "new governance policy drops; change their roles first")
            if rec.status is not OperatorStatus.REVOKED:
                try:
                    _check_hardware_keys(new, rec.id, rec.roles, rec.token_held)
                except FailedPrecondition as e:
                    raise FailedPrecondition(
                        f"document: {e.message}; register a token-held key for them (under "
                        "another id) and revoke this one, or change their roles, first"
                    ) from None
        _check_governance_can_act(new, ops.values(), "the new governance policy")
        sha = sha256_hex(c["document"])
        if sha == b.get("governance_sha256"):
            raise InvalidArgument("document: this is the governance policy in force already")
        b.mut("texts")[sha] = c["document"]
        b.set("governance", new)
        b.set("governance_sha256", sha)
    elif kind == "wallet.unfreeze":
        wid = _wallet_id(c["wallet_id"])
        order = b.get("frozen").get(wid)
        if order is None:
            raise FailedPrecondition(f"wallet {wid} is not frozen")
        if c["freeze_order"] != order:
            raise FailedPrecondition(f"wallet {wid} is frozen by order {echo(order)}, not "
                                     f"{echo(c['freeze_order'])}; propose again")
        _order_ref(c["order_ref"], "order_ref")
        if c["order_ref"].strip() == order.strip():
            raise InvalidArgument("order_ref: the unfreeze must name its own court order, not "
                                  "the freeze order")
        del b.mut("frozen")[wid]
    elif kind in ("wallet.import", "wallet.create"):
        w = c["wallet"]
        if not WALLET_KEYS <= set(w) or set(w) - WALLET_KEYS - WALLET_OPTIONAL_KEYS:
            raise InvalidArgument(f"change.wallet: a wallet record has exactly the fields "
                                  f"{', '.join(sorted(WALLET_KEYS))}")
        wid = _wallet_id(w["id"])
        if w["proposal"] != doc["id"]:
            raise InvalidArgument("change.wallet: the record must name this proposal")
        if kind == "wallet.import" and w["category"] != "seized":
            raise InvalidArgument("change.wallet: an imported key makes a seized wallet")
        if w["policy_sha256"] not in b.get("texts"):
            raise InvalidArgument("change.wallet: its policy is not a text the governance "
                                  "approved")
        if wid in b.get("approved_wallets"):
            raise FailedPrecondition(f"wallet {wid} was approved already")
        b.mut("approved_wallets")[wid] = wallet_digest(w)
    elif kind == "token.set":
        token = token_from_json(c["token"], "change.token")
        if token_json(token) != c["token"]:
            raise InvalidArgument("change.token: the address must be in its EIP-55 checksum "
                                  "form and the fields as checked (propose with the admin API)")
        _set_entry(b, "tokens", token.key, token, c["old_token"], token_json, _add_token,
                   "change.token", f"token {token.address} on chain {token.chain_id}",
                   f"token: {token.address} on chain {token.chain_id}")
    elif kind == "chain.set":
        chain = CR.chain_from_json(c["chain"], "change.chain")
        _set_entry(b, "chains", chain.chain_id, chain, c["old_chain"], CR.chain_json,
                   CR.add_chain, "change.chain", f"chain {chain.chain_id}",
                   f"chain: chain {chain.chain_id}")
    elif kind == "backup.key":
        _apply_backup_key(b, c["ceremony"], doc["id"])
    elif kind == "safe.owners":
        if not _HEX64.fullmatch(c["safe_tx_hash"]):
            raise InvalidArgument("change.safe_tx_hash: 64 lower-case hex digits")
        if not re.fullmatch(r"t_[0-9a-f]{20}", c["transfer_id"]):
            raise InvalidArgument("change.transfer_id: a transfer id (t_...)")
        if c["transfer_id"] in b.get("safe_owner_changes"):
            raise FailedPrecondition(f"transfer {c['transfer_id']}: its change of the Safe was "
                                     "approved already")
        b.mut("safe_owner_changes")[c["transfer_id"]] = c["safe_tx_hash"]
    elif kind == "backup.create":
        key = b.get("backup_keys").get(c["ceremony_id"])
        if key is None:
            raise FailedPrecondition(f"ceremony_id: {echo(c['ceremony_id'])} is not a backup "
                                     "key the governance approved (signerctl backup register)")
        if key.check_value != c["check_value"]:
            raise InvalidArgument(f"check_value: not the check value of backup key "
                                  f"{key.ceremony_id}")
        b.mut("backups")[doc["id"]] = (key.ceremony_id, int(doc["expires_at"]))
    b.mut("applied")[doc["id"]] = seq


def _apply_backup_key(b: _Builder, record: dict[str, Any], proposal: str) -> None:
    """A ceremony's backup key into force: its record well formed, for this instance, new, and
    each custodian an operator of the ledger (not revoked) whose key in force has the
    fingerprint the ceremony sealed that custodian's share to."""
    try:
        rec = BK.check_ceremony(record, "change.ceremony")
    except InvalidArgument as e:
        raise InvalidArgument(e.message) from None
    if rec["instance_id"] != b.state.instance_id:
        raise InvalidArgument(f"change.ceremony: made for instance {echo(rec['instance_id'])}, "
                              f"not {b.state.instance_id}")
    keys: Mapping[str, BackupKey] = b.get("backup_keys")
    if rec["ceremony_id"] in keys:
        raise FailedPrecondition(f"backup key {rec['ceremony_id']} was approved already")
    if any(k.check_value == rec["check_value"] for k in keys.values()):
        raise FailedPrecondition("change.ceremony: a backup key with this check value was "
                                 "approved already")
    ops: Mapping[str, OperatorRecord] = b.get("operators")
    for c in rec["custodians"]:
        op = ops.get(c["operator_id"])
        if op is None or op.status is OperatorStatus.REVOKED:
            raise InvalidArgument(f"change.ceremony: custodian {echo(c['operator_id'])} is not "
                                  "an operator of the chain of authority")
        if op.fingerprint != c["fingerprint"]:
            raise InvalidArgument(f"change.ceremony: custodian {op.id}'s share was sealed to key "
                                  f"{echo(c['fingerprint'])}, not to the key {op.id} holds in "
                                  f"the ledger ({op.fingerprint})")
    b.mut("backup_keys")[rec["ceremony_id"]] = BackupKey(
        rec["ceremony_id"], rec["check_value"], rec["key_id"], rec["threshold"],
        tuple((c["operator_id"], c["fingerprint"]) for c in rec["custodians"]), proposal,
        dict(rec))


def _state_of(b: _Builder) -> AuthorityState:
    return b.build(b.state.seq, b.state.head)


def _set_operator(b: _Builder, rec: OperatorRecord, what: str) -> None:
    operators = b.mut("operators")
    operators[rec.id] = rec
    _check_governance_can_act(b.get("governance"), operators.values(), what)


def _wallet_id(value: str) -> str:
    if not WALLET_ID.fullmatch(value):
        raise InvalidArgument(f"wallet_id: {echo(value)} is not a wallet id")
    return value


def _order_ref(value: str, name: str) -> str:
    text = value.strip()
    if not text or len(text) > MAX_TEXT or not text.isprintable():
        raise InvalidArgument(f"{name}: a court order reference of 1 to {MAX_TEXT} printable "
                              "characters is required")
    return text


def freeze_body(state: AuthorityState, wallet_id: str, order_ref: str, actor: str,
                at: int) -> dict[str, Any]:
    """The body of a freeze entry following ``state``'s head (to be sealed: see
    signerd.services.admin, which seals it with :func:`immediate_seal_kind`)."""
    return {"wallet_id": _wallet_id(wallet_id), "order_ref": _order_ref(order_ref, "order_ref"),
            "actor": actor, "at": int(at), "after": state.head.hex()}


def suspend_body(state: AuthorityState, operator_id: str, reason: str, actor: str,
                 at: int) -> dict[str, Any]:
    return {"operator_id": operator_id, "reason": reason[:MAX_TEXT], "actor": actor,
            "at": int(at), "after": state.head.hex()}


def immediate_seal_kind(kind: str) -> str:
    """What signerd's seal of an immediate entry is called (``signerd.core.seal``'s kind)."""
    return "ledger/" + kind


def sealed(body: Mapping[str, Any], seal_hex: str) -> dict[str, Any]:
    return {**body, "seal": seal_hex}


def _check_immediate(state: AuthorityState, kind: str, body: Mapping[str, Any]) -> None:
    """An immediate act carries no operator's signature, so signerd seals it with its audit
    key, bound to the ledger head it follows: a store writer can neither forge one (a
    suspension would take a vote away) nor replay one elsewhere in the ledger. (Every entry
    also carries the entry seal :func:`advance` checks, which binds the same place; this seal of
    the body is the older of the two, kept so that immediate entries keep their form.)"""
    record = {k: v for k, v in body.items() if k != "seal"}
    if record.get("after") != state.head.hex():
        raise AuthorityViolation(f"an immediate {kind} entry does not follow the ledger head it "
                                 "was made after (replayed or moved)", kind="ledger")
    if not seal.valid(state.audit_public_key, immediate_seal_kind(kind), record,
                      str(body.get("seal", ""))):
        raise AuthorityViolation(f"an immediate {kind} entry does not carry signerd's seal "
                                 "(written by someone else)", kind="ledger")


def veto_roles(state: AuthorityState) -> frozenset[str]:
    """Every role that can veto under a policy text the governance approved (templates and
    wallet policies, every version)."""
    roles: set[str] = set()
    for text in state.texts.values():
        try:
            policy = parse_policy(text)
        except InvalidPolicy:
            continue  # the governance policy text
        for rule in policy.rules:
            roles |= rule.requirement.veto
    return frozenset(roles)


def _apply_immediate(b: _Builder, kind: str, body: Mapping[str, Any]) -> None:
    _check_immediate(b.state, kind, body)
    body = {k: v for k, v in body.items() if k not in ("seal", "after")}
    if kind == FREEZE:
        if set(body) != {"wallet_id", "order_ref", "actor", "at"}:
            raise InvalidArgument("a freeze names wallet_id, order_ref, actor and at")
        wid = _wallet_id(body["wallet_id"])
        if wid in b.get("frozen"):
            raise FailedPrecondition(f"wallet {wid} is already FROZEN")
        b.mut("frozen")[wid] = _order_ref(body["order_ref"], "order_ref")
    else:
        if set(body) != {"operator_id", "reason", "actor", "at"}:
            raise InvalidArgument("a suspension names operator_id, reason, actor and at")
        rec = b.get("operators").get(body["operator_id"])
        if rec is None:
            raise InvalidArgument(f"operator_id: {echo(body['operator_id'])} is not a registered "
                                  "operator")
        if rec.status is not OperatorStatus.ACTIVE:
            raise FailedPrecondition(f"operator {rec.id} is {rec.status.value}, not active")
        vetoes = sorted(rec.roles & veto_roles(b.state))
        if vetoes:
            raise FailedPrecondition(
                f"operator {rec.id} holds the veto role {vetoes[0]}: a suspension would take a "
                "veto away, which does not only tighten; revoke them through a governance "
                "proposal instead")
        # No immediate act may leave the governance unable to act (not even to reinstate).
        _set_operator(b, replace(rec, status=OperatorStatus.SUSPENDED), f"suspending {rec.id}")


# --------------------------------------------------------------------------- the fold


def advance(state: AuthorityState, entry: Entry) -> AuthorityState:
    """The state after ``entry``. A signature, quorum, seal or link that does not verify raises
    AuthorityViolation; a change that does not apply raises InvalidArgument or
    FailedPrecondition (at replay, :func:`fold` makes that a violation too)."""
    return _advance(state, entry, require_seal=True)


def check_entry(state: AuthorityState, entry: Entry) -> AuthorityState:
    """Every check of :func:`advance` except signerd's seal: what signerd runs on an entry
    before it seals it. The state returned is not proven by anything: only an entry that
    :func:`advance` accepts counts."""
    return _advance(state, entry, require_seal=False)


def _advance(state: AuthorityState, entry: Entry, *, require_seal: bool) -> AuthorityState:
    if entry.seq != state.seq + 1 or entry.prev_hash != state.head:
        raise AuthorityViolation(f"authority ledger entry {entry.seq} does not follow entry "
                                 f"{state.seq}: the ledger was rewritten", kind="ledger")
    if entry.hash != entry_hash(entry.prev_hash, entry.seq, entry.kind, entry.body,
                                entry.decisions):
        raise AuthorityViolation(f"authority ledger entry {entry.seq}: its hash does not match "
                                 "its content (entry altered)", kind="ledger")
    if require_seal and not entry_sealed(state, entry):
        what = (f" (proposal {echo(entry.body.get('id'), quote=False)})"
                if entry.kind == PROPOSAL and isinstance(entry.body, dict) else
                f" ({echo(entry.kind, quote=False)})")
        raise AuthorityViolation(
            f"authority ledger entry {entry.seq}{what}: signerd's seal does not verify for this "
            "entry at this place (signerd did not append it here: it was written, replayed or "
            "moved by someone else)", kind="ledger")
    b = _Builder(state)
    if entry.kind == PROPOSAL:
        doc = entry.body
        check_document(doc, state.instance_id)
        q, _, bad = proposal_quorum(state, doc, entry.decisions)
        if bad:
            raise AuthorityViolation(f"authority ledger entry {entry.seq} (proposal {doc['id']}): "
                                     + "; ".join(bad), kind="approval")
        if not q.met:
            raise AuthorityViolation(f"authority ledger entry {entry.seq} (proposal {doc['id']}): "
                                     f"its approvals do not meet the governance quorum "
                                     f"({q.reason})", kind="quorum")
        _apply_change(b, doc, entry.seq)
    elif entry.kind in (FREEZE, SUSPEND):
        if entry.decisions:
            raise AuthorityViolation(f"authority ledger entry {entry.seq}: an immediate act "
                                     "carries no approvals", kind="ledger")
        _apply_immediate(b, entry.kind, entry.body)
    else:
        raise AuthorityViolation(f"authority ledger entry {entry.seq}: unknown kind "
                                 f"{entry.kind!r}", kind="ledger")
    return b.build(entry.seq, entry.hash)


def genesis_entry(doc: Mapping[str, Any], decisions: Iterable[SignedDecision]) -> Entry:
    return make_entry(0, ZERO, GENESIS, doc, decisions)


def start(entry: Entry, pinned: bytes) -> AuthorityState:
    """The state the genesis entry establishes, if it is the pinned genesis and every initial
    operator signed it."""
    if entry.seq != 1 or entry.kind != GENESIS or entry.prev_hash != ZERO:
        raise AuthorityViolation("the authority ledger does not start with a genesis entry",
                                 kind="genesis")
    if entry.hash != entry_hash(ZERO, 1, GENESIS, entry.body, entry.decisions):
        raise AuthorityViolation("the genesis entry's hash does not match its content",
                                 kind="genesis")
    digest = genesis_digest(entry.body)
    if digest != pinned:
        raise AuthorityViolation(f"the store's genesis {digest.hex()} differs from the pinned "
                                 f"genesis {pinned.hex()}", kind="genesis")
    try:
        state = _genesis_state(entry.body, entry.hash)
    except SignerError as e:
        raise AuthorityViolation(f"the genesis does not verify: {e.message}",
                                 kind="genesis") from None
    statement = genesis_statement(entry.body)
    signed = {d.operator_id for d in entry.decisions
              if d.decision is Decision.APPROVE and d.operator_id in state.operators
              and signature_valid(state.operators[d.operator_id].public_key_pem.encode(),
                                  statement, d.signature)}
    missing = sorted(set(state.operators) - signed)
    if missing or len(entry.decisions) != len(state.operators):
        raise AuthorityViolation("the genesis is not approved by every initial operator "
                                 f"(missing or invalid: {', '.join(missing) or 'extra entries'})",
                                 kind="genesis")
    return state


def fold(state: AuthorityState | None, entries: Iterable[Entry], *,
         pinned: bytes) -> AuthorityState:
    """Replay ``entries`` (from the genesis when ``state`` is None) and return the state they
    prove; raise AuthorityViolation at the first entry that does not verify."""
    for entry in entries:
        if state is None:
            state = start(entry, pinned)
            continue
        try:
            state = advance(state, entry)
        except AuthorityViolation:
            raise
        except SignerError as e:
            raise AuthorityViolation(f"authority ledger entry {entry.seq} does not apply: "
                                     f"{e.message}", kind="ledger") from None
    if state is None:
        raise AuthorityViolation("the authority ledger is empty: no genesis", kind="genesis")
    return state


def wallet_policy_text(state: AuthorityState, wallet_id: str, template_sha256: str,
                       version: int) -> tuple[str, bool]:
    """(the text of a wallet's policy ``version``, whether its floor waiver holds). Version 1
    is the template text named in the wallet's sealed record (``template_sha256``); later
    versions were set by proposals of the ledger, and only those may waive the floor."""
    if version == 1:
        text = state.texts.get(template_sha256)
        if text is None:
            raise AuthorityViolation(f"wallet {wallet_id}: its policy is not a text the "
                                     "governance approved", kind="policy")
        return text, False
    versions = state.wallet_policies.get(wallet_id, ())
    if not 2 <= version <= len(versions) + 1:
        raise AuthorityViolation(f"wallet {wallet_id} has no policy version {version} in the "
                                 "authority ledger", kind="policy")
    v = versions[version - 2]
    return state.texts[v.sha256], v.waiver


# --------------------------------------------------------------------------- for people


def summary(doc: Mapping[str, Any]) -> str:
    """One line naming what a proposal changes."""
    kind, c = doc["kind"], doc["change"]
    s = safe_text
    if kind == "operator.register":
        return (f"register operator {s(c['operator_id'])} as {', '.join(map(s, c['roles']))}"
                + (" (key held on a token)" if c.get("token_held") else ""))
    if kind == "operator.revoke":
        return f"revoke operator {s(c['operator_id'])}"
    if kind == "operator.roles":
        return (f"change the roles of operator {s(c['operator_id'])} from "
                f"{', '.join(map(s, c['old_roles']))} to {', '.join(map(s, c['roles']))}")
    if kind == "operator.reinstate":
        return f"reinstate suspended operator {s(c['operator_id'])}"
    if kind == "wallet.policy":
        tpl = f" (template {s(c['template'])})" if c["template"] else ""
        return (f"set the policy of wallet {s(c['wallet_id'])}: version {c['base_version']} -> "
                f"{c['base_version'] + 1}{tpl}")
    if kind == "template.set":
        return (f"{'change' if c['base_sha256'] else 'add'} policy template {s(c['name'])}")
    if kind == "governance.set":
        return "change the governance policy"
    if kind == "wallet.unfreeze":
        return (f"unfreeze wallet {s(c['wallet_id'])} (frozen by {s(c['freeze_order'])}) by "
                f"order {s(c['order_ref'])}")
    if kind == "token.set":
        t, old = c["token"], c["old_token"]
        what = (f"{s(t.get('standard', '')).upper()} token {s(t.get('symbol', ''))} "
                f"({s(t.get('decimals', ''))} decimals) at {s(t.get('address', ''))} on chain "
                f"{s(t.get('chain_id', ''))}")
        if not old:
            return "register " + what
        return (f"change token {s(old.get('symbol', ''))} ({s(old.get('decimals', ''))} "
                f"decimals) to " + what)
    if kind == "chain.set":
        ch, old = c["chain"], c["old_chain"]
        what = (f"chain {s(ch.get('chain_id', ''))} as {s(ch.get('name', ''))}, native coin "
                f"{s(ch.get('symbol', ''))} ({s(ch.get('decimals', ''))} decimals)")
        if not old:
            return "register " + what
        return (f"change chain {s(old.get('chain_id', ''))} from {s(old.get('name', ''))} "
                f"{s(old.get('symbol', ''))} ({s(old.get('decimals', ''))} decimals) to " + what)
    if kind == "backup.key":
        r = c["ceremony"]
        who = ", ".join(s(x.get("operator_id", "")) for x in r.get("custodians", [])
                        if isinstance(x, dict))
        return (f"approve backup key {s(r.get('ceremony_id', ''))} (any "
                f"{s(r.get('threshold', ''))} of custodians {who} restore it)")
    if kind == "backup.create":
        return f"back up every custody key under backup key {s(c['ceremony_id'])}"
    if kind == "safe.owners":
        return (f"let transfer {s(c['transfer_id'])} of Safe wallet {s(c['wallet_id'])} change "
                f"the Safe {s(c['safe'])}: {s(c['owner_change'])}")
    w = c["wallet"]
    verb = "import a seized key as" if kind == "wallet.import" else "create"
    return (f"{verb} {s(w['category'])} {s(w['chain'])} wallet {s(w['id'])} at "
            f"{s(w['address'])}")


def render_proposal(doc: Mapping[str, Any], decision: Decision, *,
                    requirement_text: str = "") -> str:
    """What an operator reads before signing a decision on a proposal: every bound field,
    and a policy change as the old and the new text side by side."""
    from datetime import datetime, timezone

    def utc(t: int) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    s = safe_text
    c = doc["change"]
    lines = [
        f"You are about to {Decision(decision).value} this governance proposal.",
        f"proposal:        {s(doc['id'])}",
        f"daemon:          {s(doc['instance_id'])}",
        f"kind:            {s(doc['kind'])}",
        f"change:          {summary(doc)}",
        f"submitted by:    {s(doc['submitter'])} at {utc(doc['created_at'])}",
        f"expires:         {utc(doc['expires_at'])}",
    ]
    if requirement_text:
        lines.append(f"needs:           {s(requirement_text)}")
    kind = doc["kind"]
    if kind == "operator.register":
        lines.append("public key:")
        lines += ["  " + s(line) for line in c["public_key_pem"].strip().splitlines()]
        try:
            key = load_public_pem(c["public_key_pem"].encode())
            lines.append(f"key type:        {key_type(key).label}")
            lines.append(f"fingerprint:     {fingerprint(key)}")
        except InvalidKey:
            lines.append("fingerprint:     (not a valid key)")
        device = c.get("token_held")
        lines.append(f"key held on:     {s(device)} (declared by the operator, confirmed by "
                     "this approval; not attested by the device)" if device else
                     "key held on:     not declared (a file, or a token nobody vouched for)")
    elif kind in ("operator.revoke", "operator.reinstate"):
        lines.append(f"reason:          {s(c['reason']) or '(none)'}")
    elif kind in ("wallet.policy", "template.set", "governance.set"):
        old_label = {"wallet.policy": f"version {c.get('base_version', '')}",
                     "template.set": "current" if c.get("base_sha256") else "(new)",
                     "governance.set": "in force"}[kind]
        lines.append("old and new text side by side ('|' same, '*' changed, '<' removed, "
                     "'>' added):")
        lines += side_by_side(c["old_document"], c["document"], f"old ({old_label})", "new")
    elif kind == "token.set":
        t, old = c["token"], c["old_token"]
        lines += [f"chain id:        {s(t.get('chain_id', ''))}",
                  f"contract:        {s(t.get('address', ''))}",
                  f"standard:        {s(t.get('standard', ''))}",
                  f"symbol:          {s(t.get('symbol', ''))}"
                  + (f" (was {s(old.get('symbol', ''))})" if old else " (new entry)"),
                  f"decimals:        {s(t.get('decimals', ''))}"
                  + (f" (was {s(old.get('decimals', ''))})" if old else ""),
                  "effect:          calls to this contract on this chain are decoded as token "
                  "transfers and approvals, shown with this symbol and decimals"]
    elif kind == "chain.set":
        ch, old = c["chain"], c["old_chain"]
        lines += [f"chain id:        {s(ch.get('chain_id', ''))}",
                  f"name:            {s(ch.get('name', ''))}"
                  + (f" (was {s(old.get('name', ''))})" if old else " (new entry)"),
                  f"native coin:     {s(ch.get('symbol', ''))}"
                  + (f" (was {s(old.get('symbol', ''))})" if old else ""),
                  f"decimals:        {s(ch.get('decimals', ''))}"
                  + (f" (was {s(old.get('decimals', ''))})" if old else ""),
                  "effect:          Ethereum wallets may sign on this chain id; its native coin "
                  "is the asset of this symbol (policy rules asset = SYMBOL or SYMBOL@CHAIN_ID)"]
    elif kind == "backup.key":
        r = c["ceremony"]
        lines += [f"ceremony:        {s(r.get('ceremony_id', ''))} of "
                  f"{utc(int(r.get('created_at', 0)))}",
                  f"backup key:      HSM key id {s(r.get('key_id', ''))} "
                  f"({s(r.get('key_label', ''))}), {s(r.get('mechanism', ''))}",
                  f"check value:     {s(r.get('check_value', ''))}",
                  f"threshold:       any {s(r.get('threshold', ''))} of "
                  f"{len(r.get('custodians', []))} custodians rebuild it:"]
        lines += [f"  share {s(x.get('index', ''))}:       {s(x.get('operator_id', ''))} "
                  f"(key {s(x.get('fingerprint', ''))})"
                  for x in r.get("custodians", []) if isinstance(x, dict)]
        lines.append("effect:          signerd may wrap custody keys under this key, once a "
                     "backup.create proposal is approved")
    elif kind == "safe.owners":
        lines += [f"wallet:          {s(c['wallet_id'])}",
                  f"transfer:        {s(c['transfer_id'])}",
                  f"safe:            {s(c['safe'])} on chain {s(c['chain_id'])}",
                  f"safe tx hash:    0x{s(c['safe_tx_hash'])}",
                  f"safe nonce:      {s(c['safe_nonce'])}",
                  f"change:          {s(c['owner_change'])}",
                  "effect:          signerd's owner key may sign exactly this SafeTx once the "
                  "wallet's own quorum approved it too"]
    elif kind == "backup.create":
        lines += [f"backup key:      {s(c['ceremony_id'])} (check value {s(c['check_value'])})",
                  "effect:          every custody key of signerd is exported, wrapped under "
                  "this key only, into a bundle sealed by the audit key"]
    elif kind in ("wallet.import", "wallet.create"):
        w = c["wallet"]
        lines += [f"wallet:          {s(w['id'])} ({s(w['category'])}, case {s(w['case_ref'])})",
                  f"chain:           {s(w['chain'])} ({s(w['network'])})"
                  + (f", chain ids {', '.join(map(str, w['chain_ids']))}" if w["chain_ids"]
                     else ""),
                  f"address:         {s(w['address'])}",
                  f"script:          {s(w['script_type'])}"
                  + (f", {w['threshold']} of {len(w['keys'])}" if len(w["keys"]) > 1 else "")]
        if w["descriptor"]:
            lines.append(f"descriptor:      {s(w['descriptor'])}")
        for k in w["keys"]:
            lines.append(f"key:             {s(k['public_key'])} "
                         f"({'this signerd HSM' if k['hsm_held'] else 'OUTSIDE key'})")
        if isinstance(w.get("safe"), dict):
            sf = w["safe"]
            lines.append(f"safe:            {s(sf.get('address', ''))} on chain "
                         f"{s(sf.get('chain_id', ''))}, {s(sf.get('threshold', ''))} of "
                         f"{len(sf.get('owners', []))} owners")
            for o in sf.get("owners", []):
                mine = " (this signerd's HSM key)" if o == sf.get("owner") else " (OUTSIDE owner)"
                lines.append(f"safe owner:      {s(o)}{mine}")
            lines.append(f"safe setup:      {s(canonical.dumps(sf.get('setup', {})).decode())}")
        lines.append(f"policy template: {s(w['template'])}")
        if kind == "wallet.import":
            lines.append(f"seizure record:  {s(c['seizure_record'])} ({s(c['form'])}"
                         + (f", path {s(c['derivation_path'])}" if c["derivation_path"] else "")
                         + ")")
        if w["legal_basis"]:
            lines.append(f"legal basis:     {s(w['legal_basis'])}")
    return "\n".join(lines) + "\n"


def side_by_side(old: str, new: str, old_label: str, new_label: str,
                 width: int = 50) -> list[str]:
    """Two texts in two columns, line against line, with a marker for each row: ``|`` the same,
    ``*`` changed, ``<`` only in the old text, ``>`` only in the new one. Long lines wrap
    (nothing is cut off)."""
    a = [safe_text(x) for x in old.splitlines()]
    b = [safe_text(x) for x in new.splitlines()]
    rows = [f"  {old_label[:width]:<{width}}   {new_label[:width]}"]

    def put(mark: str, left: str, right: str) -> None:
        lefts = [left[i:i + width] for i in range(0, max(len(left), 1), width)]
        rights = [right[i:i + width] for i in range(0, max(len(right), 1), width)]
        for i in range(max(len(lefts), len(rights))):
            l_part = lefts[i] if i < len(lefts) else ""
            r_part = rights[i] if i < len(rights) else ""
            rows.append(f"  {l_part:<{width}} {mark if i == 0 else ' '} {r_part}".rstrip())

    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            for x, y in zip(a[i1:i2], b[j1:j2]):
                put("|", x, y)
        elif op == "replace":
            for k in range(max(i2 - i1, j2 - j1)):
                x = a[i1 + k] if i1 + k < i2 else ""
                y = b[j1 + k] if j1 + k < j2 else ""
                put("*" if x and y else ("<" if x else ">"), x, y)
        elif op == "delete":
            for x in a[i1:i2]:
                put("<", x, "")
        else:
            for y in b[j1:j2]:
                put(">", "", y)
    return rows

