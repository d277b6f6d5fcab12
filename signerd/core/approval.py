"""The approval engine: the exact bytes an operator signs for every act, and their verification.

One engine serves every act that can lead to a signature: a transfer (``build_statement``,
domain tag ``signerd-approval/v1``), a governance proposal (``proposal_statement``,
``signerd-proposal/v1``) and the genesis (``genesis_statement``, ``signerd-genesis/v1``). Each
statement is a domain tag, a newline and canonical JSON, so a signature over one kind of act can
never count for another. Operators sign SHA-256 of the statement; ``verified_votes`` turns
stored decisions into votes only where the signature verifies under the operator's key in
force, and ``policy.evaluate`` counts them.

Transfer statements:

signerd and ``signerctl`` each build the statement on their own from the raw transaction and
the transfer's metadata, so a host showing a false summary cannot collect valid approvals. The
bytes are ``DOMAIN_TAG``, a newline, then canonical JSON (keys sorted, no whitespace, ASCII
only) of every field below; every integer is a decimal string, so values beyond 2^53 survive
any JSON reader; absent optional integers are ``null``; bytes are lower-case hex::

    chain, network, chain_id, instance_id, transfer_id, wallet_id, submitter, digests[],
    outputs[{address, amount, asset, change, destination_class, wallet_id, category, and
    token_id, source, grant when the output has them}], fee,
    fee_asset, nonce, gas_limit, max_fee_per_gas, max_priority_fee_per_gas, contract_call, vsize,
    outpoints[], sighash[], payload_sha256, policy_version, category_change, legal_basis,
    replaces{transfer_id, state, fee_delta} or null, vetoed[{role, transfer_id}], decision,
    expires_at, and tokens[{chain_id, address, standard, symbol, decimals}] when the movement
    decodes a call to a registered token (only then: other statements are unchanged), and
    extra{name: value} when the movement has chain-specific fields (Tron: tron_contract,
    tron_expiration in ms, tron_ref_block_bytes, tron_ref_block_hash, and when present
    tron_ref_block_num, tron_timestamp, tron_memo; absent for Bitcoin and Ethereum), and
    native{chain_id, name, symbol, decimals} when the movement carries the chain registry's
    entry for its chain (every Ethereum movement decoded under the registry)

``replaces`` names the transfer this one replaces (a fee bump): its id, its state when this
one was submitted (``PENDING_APPROVAL``, ``APPROVED`` or ``SIGNED``; empty for a transfer
stored before the state was recorded) and ``fee_delta``, this transfer's fee minus that one's
in the fee asset's base units, a decimal string that may be negative. ``null`` when the
transfer replaces nothing. ``render`` shows it as one line, ``replaces: t_... (SIGNED), fee
+4,500 sat``.

``vetoed`` lists, sorted, each earlier veto of the same transaction in the same wallet: the role
that vetoed it and the transfer it vetoed. The transfer then needs an approval by each such
role on top of its policy, and ``render`` says so in a line ``WARNING: previously vetoed by
judge in t_...``.

``tokens`` are the entries of the governance's token registry the decoded movement used, so
the symbol and decimals an operator was shown are what they signed: a tool told another symbol,
other decimals or another contract signs a statement that does not verify. ``native`` is the
chain registry's entry for the chain id in the same way: the chain's name and its native coin's
symbol and decimals, as the operator was shown them (``BNB Smart Chain (56)``, BNB).

An output of a registered collection (ERC-721, ERC-1155) binds its ``token_id`` (a decimal
string), so approvals of one token never count for another. ``source`` is the address whose
tokens a transferFrom takes when it is not the wallet (``render`` shows ``take ... from
<source>`` and a ``WARNING:`` line); ``grant`` (true) marks a grant of everything, a
setApprovalForAll or an ERC-20 allowance of at least 2**96-1, shown as ``GRANT <spender>
control of ALL <symbol> held by the wallet`` with a ``WARNING:`` line.

``sighash`` is each Bitcoin input's sighash type by input index (``ALL``, ``NONE``, ``SINGLE``,
each optionally ``|ANYONECANPAY``; empty for Ethereum): any type but ALL lets the transaction be
changed after signing, and ``render`` says how in a line starting ``WARNING:``.

An output's ``wallet_id`` and ``category`` name the destination when it is one of this
signerd's wallets (empty otherwise); its ``destination_class`` is ``own_wallet`` only when that
wallet has the source's category and no outside keys that could spend without signerd's.

The operator signs SHA-256 of the statement with their key: Ed25519 (the digest as message) or
P-256 (ECDSA whose hashed message is the digest, canonical DER); the algorithm is the type of the
key the ledger holds for the operator (``signerd.core.operator_keys``). ``Movement.details`` is
not bound: it is free-form decoration, not decoded value. ``render`` shows one detail, the
``bytes data`` a decoded ``safeTransferFrom`` hands to the recipient's hook
(``token_call_data``, with a ``WARNING:`` line): it is part of the transaction the digests bind,
and signerctl decodes it from the raw transaction itself.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from signerd.core import canonical
from signerd.core.chain_registry import format_native
from signerd.core.errors import InvalidApproval, InvalidArgument, InvalidKey
from signerd.core.errors import echo
from signerd.core.legal_basis import parts as legal_basis_parts
from signerd.core.model import Chain, Decision, EvmChain, Movement, Output, Token
from signerd.core import operator_keys
from signerd.core.operator_keys import PrivateKey, load_public_pem
from signerd.core.policy import CATEGORY_CHANGES, Vote
from signerd.core.tokens import format_amount as token_amount
from signerd.core.tokens import format_units
from signerd.core.tokens import lookup as lookup_token

DOMAIN_TAG = b"signerd-approval/v1"
PROPOSAL_TAG = b"signerd-proposal/v1"
GENESIS_TAG = b"signerd-genesis/v1"
MAX_EXPIRES_AT = 253402300799  # 9999-12-31T23:59:59Z
# The states a replaced transfer can be in when its replacement is submitted ("" for a
# transfer stored before the state was recorded).
REPLACEABLE_STATES = ("PENDING_APPROVAL", "APPROVED", "SIGNED")


@dataclass(frozen=True)
class StatementContext:
    """The transfer's metadata bound into its statement next to the decoded movement."""

    instance_id: str
    transfer_id: str
    wallet_id: str
    policy_version: int
    expires_at: int  # unix seconds
    payload_sha256: bytes  # SHA-256 of the raw transaction payload as submitted
    legal_basis: str = ""
    category_change: str = "none"
    submitter: str = ""
    replaces: str = ""  # the transfer this one replaces, if any
    replaces_state: str = ""  # its state when this one was submitted
    replaces_fee_delta: int = 0  # this transfer's fee minus that one's (base units; may be < 0)
    vetoed: tuple[tuple[str, str], ...] = ()  # (role, transfer) of each earlier veto of it

    def __post_init__(self) -> None:
        if not isinstance(self.payload_sha256, bytes) or len(self.payload_sha256) != 32:
            raise InvalidArgument("payload_sha256 must be 32 bytes")
        if self.category_change not in CATEGORY_CHANGES:
            raise InvalidArgument(f"unknown category change {echo(self.category_change)}")
        for name in ("instance_id", "transfer_id", "wallet_id", "legal_basis", "submitter",
                     "replaces", "replaces_state"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgument(f"{name} must be a string")
        if isinstance(self.replaces_fee_delta, bool) or not isinstance(self.replaces_fee_delta,
                                                                         int):
            raise InvalidArgument("replaces_fee_delta must be an integer")
        if self.replaces:
            if self.replaces_state and self.replaces_state not in REPLACEABLE_STATES:
                raise InvalidArgument(f"replaces_state: a replaced transfer is one of "
                                      f"{', '.join(REPLACEABLE_STATES)}, not "
                                      f"{safe_text(self.replaces_state)}")
        elif self.replaces_state or self.replaces_fee_delta:
            raise InvalidArgument("replaces_state and replaces_fee_delta need replaces")
        if not isinstance(self.vetoed, tuple) or not all(
                isinstance(v, tuple) and len(v) == 2
                and all(isinstance(x, str) and x for x in v) for v in self.vetoed):
            raise InvalidArgument("vetoed must be (role, transfer_id) pairs of non-empty strings")
        _dec(self.policy_version, "policy_version")
        _dec(self.expires_at, "expires_at")
        if self.expires_at > MAX_EXPIRES_AT:
            raise InvalidArgument("expires_at is beyond the year 9999")


def statement_context(*, instance_id: str, transfer_id: str, wallet_id: str,
                      policy_version: int, expires_at: int, payload: bytes, legal_basis: str,
                      category_change: str, submitter: str, replaces: str, replaces_state: str,
                      replaces_fee_delta: int, vetoed: Iterable[tuple[str, str]]
                      ) -> StatementContext:
    """The statement context of a transfer from its fields, the one way the daemon makes it
    from its stored row (``engine.context``) and signerctl from the transfer the daemon sends:
    the raw payload bound by its SHA-256, the earlier vetoes as (role, transfer) pairs. Raises
    InvalidArgument for fields that make no statement."""
    return StatementContext(
        instance_id=instance_id, transfer_id=transfer_id, wallet_id=wallet_id,
        policy_version=policy_version, expires_at=expires_at,
        payload_sha256=hashlib.sha256(payload).digest(), legal_basis=legal_basis,
        category_change=category_change, submitter=submitter, replaces=replaces,
        replaces_state=replaces_state, replaces_fee_delta=replaces_fee_delta,
        vetoed=tuple(vetoed))


def build_statement(ctx: StatementContext, movement: Movement, decision: Decision) -> bytes:
    """The deterministic statement bytes for this transfer, movement and decision."""
    doc: dict[str, Any] = {
        "instance_id": ctx.instance_id,
        "transfer_id": ctx.transfer_id,
        "wallet_id": ctx.wallet_id,
        "submitter": ctx.submitter,
        "chain": movement.chain.value,
        "network": movement.network,
        "chain_id": _dec(movement.chain_id, "chain_id"),
        "digests": [_hex(d, "digest") for d in movement.digests],
        "outputs": [_output_doc(o) for o in movement.outputs],
        "fee": _dec(movement.fee, "fee"),
        "fee_asset": movement.fee_asset,
        "nonce": _opt(movement.nonce, "nonce"),
        "gas_limit": _opt(movement.gas_limit, "gas_limit"),
        "max_fee_per_gas": _opt(movement.max_fee_per_gas, "max_fee_per_gas"),
        "max_priority_fee_per_gas": _opt(movement.max_priority_fee_per_gas,
                                         "max_priority_fee_per_gas"),
        "contract_call": movement.contract_call,
        "vsize": _opt(movement.vsize, "vsize"),
        "outpoints": list(movement.outpoints),
        "sighash": [_text(t, "sighash") for t in movement.sighash],
        "payload_sha256": ctx.payload_sha256.hex(),
        "policy_version": _dec(ctx.policy_version, "policy_version"),
        "category_change": ctx.category_change,
        "legal_basis": ctx.legal_basis,
        "replaces": None if not ctx.replaces else {
            "transfer_id": ctx.replaces,
            "state": ctx.replaces_state,
            "fee_delta": str(ctx.replaces_fee_delta),
        },
        "vetoed": [{"role": role, "transfer_id": tid} for role, tid in sorted(ctx.vetoed)],
        "decision": Decision(decision).value,
        "expires_at": _dec(ctx.expires_at, "expires_at"),
    }
    if movement.tokens:  # absent otherwise: statements without tokens are as they were
        doc["tokens"] = [
            {"chain_id": _dec(t.chain_id, "token chain_id"), "address": _text(t.address, "token"),
             "standard": _text(t.standard, "token standard"),
             "symbol": _text(t.symbol, "token symbol"),
             "decimals": _dec(t.decimals, "token decimals")}
            for t in sorted(movement.tokens, key=lambda t: t.key)]
    if movement.extra:  # absent otherwise: Bitcoin and Ethereum statements are as they were
        doc["extra"] = {_text(k, "extra name"): _text(v, "extra value")
                        for k, v in movement.extra}
        if len(doc["extra"]) != len(movement.extra):
            raise InvalidArgument("extra: a field is named twice")
    if movement.native is not None:  # absent otherwise: statements without it are as they were
        n = movement.native
        doc["native"] = {"chain_id": _dec(n.chain_id, "native chain_id"),
                         "name": _text(n.name, "native name"),
                         "symbol": _text(n.symbol, "native symbol"),
                         "decimals": _dec(n.decimals, "native decimals")}
    if movement.safe:  # absent otherwise: a Safe transaction's own fields, bound and shown
        doc["safe"] = [[_text(k, "safe field"), _text(v, "safe field")]
                       for k, v in movement.safe]
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return DOMAIN_TAG + b"\n" + body.encode("ascii")


def _output_doc(o: Output) -> dict[str, Any]:
    """One output as the statement binds it; ``token_id``, ``source`` and ``grant`` only when
    the output has them (a token id, someone else's tokens, a grant of everything), so the
    statements of other outputs are as they were."""
    doc: dict[str, Any] = {
        "address": o.address,
        "amount": _dec(o.amount, "amount"),
        "asset": o.asset,
        "change": o.is_change,
        "destination_class": o.destination_class.value,
        "wallet_id": o.wallet_id,
        "category": o.category,
    }
    if o.token_id is not None:
        doc["token_id"] = _dec(o.token_id, "token_id")
    if o.source:
        doc["source"] = _text(o.source, "source")
    if o.grant:
        doc["grant"] = True
    return doc


def statement_digest(statement: bytes) -> bytes:
    """SHA-256 of the statement: the message an operator's key signs."""
    return hashlib.sha256(statement).digest()


def sign_statement(private_key: PrivateKey, statement: bytes) -> bytes:
    """The operator's signature over SHA-256 of the statement with a key in a file (what
    signerctl does; a key on a token signs through ``signerd.adapters.operator_token``)."""
    return operator_keys.sign(private_key, statement_digest(statement))


def verify_statement(public_key_pem: bytes, statement: bytes, signature: bytes, *,
                     operator_id: str = "") -> None:
    """Raise InvalidApproval unless ``signature`` is the key's signature over this statement,
    in the form of the key's type (``operator_keys.signature_problem``).

    A registered key that is not an operator key (Ed25519 or P-256) raises InvalidKey.
    """
    key = load_public_pem(public_key_pem)
    who = f" for operator {operator_id}" if operator_id else ""
    if not isinstance(signature, bytes):
        raise InvalidApproval(f"signature{who} must be bytes, got {type(signature).__name__}")
    problem = operator_keys.signature_problem(key, signature)
    if problem:
        raise InvalidApproval(f"signature{who} {problem}")
    if not operator_keys.verify(key, statement_digest(statement), signature):
        raise InvalidApproval(f"signature does not verify{who}")


def verify_decision(public_key_pem: bytes, statement: bytes, signature: bytes, *,
                    operator_id: str, statement_sha256: bytes, mismatch: str) -> bytes:
    """The statement's digest, once ``signature`` verifies over it (``verify_statement``);
    InvalidApproval with ``mismatch`` when the caller says it signed another statement
    (``statement_sha256``, when given, differs)."""
    digest = statement_digest(statement)
    if statement_sha256 and statement_sha256 != digest:
        raise InvalidApproval(mismatch)
    verify_statement(public_key_pem, statement, signature, operator_id=operator_id)
    return digest


def proposal_statement(doc: Mapping[str, Any], decision: Decision) -> bytes:
    """What an operator signs to approve or reject a governance proposal: the whole proposal
    document (its kind, the exact change, the submitter, its id and window) and the decision."""
    return PROPOSAL_TAG + b"\n" + canonical.dumps({"decision": Decision(decision).value,
                                                   "proposal": dict(doc)})


def genesis_statement(doc: Mapping[str, Any]) -> bytes:
    """What each initial operator signs to approve the genesis document."""
    return GENESIS_TAG + b"\n" + canonical.dumps(dict(doc))


@functools.lru_cache(maxsize=65536)
def _valid(public_key_pem: bytes, digest: bytes, signature: bytes) -> bool:
    """Pure and keyed by every input, so caching it cannot be poisoned: an entry says that this
    signature over this digest verifies under this key, which stays true."""
    try:
        key = load_public_pem(public_key_pem)
    except InvalidKey:
        return False
    return operator_keys.verify(key, digest, signature)


def signature_valid(public_key_pem: bytes, statement: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the key's signature over SHA-256 of ``statement``."""
    if not isinstance(signature, bytes):
        return False
    return _valid(bytes(public_key_pem), statement_digest(statement), signature)


MAX_REASON = 1000


def check_reason(reason: str, name: str = "reason") -> str:
    """A free-text reason stored and audited: at most MAX_REASON characters."""
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"{name}: at most {MAX_REASON} characters, got {len(reason)}")
    return reason


def check_decision(subject: str, subject_id: str, operator_id: str, decision: Decision,
                   reason: str) -> None:
    """The inputs of an operator's decision on any act (``subject`` names the act's id field,
    e.g. ``transfer_id``); InvalidArgument names the field."""
    if not subject_id:
        raise InvalidArgument(f"{subject}: required")
    if not operator_id:
        raise InvalidArgument("operator_id: required")
    if decision not in (Decision.APPROVE, Decision.REJECT):
        raise InvalidArgument("decision: APPROVE or REJECT")
    if decision is Decision.REJECT and not reason.strip():
        raise InvalidArgument("reason: a rejection needs a reason")
    check_reason(reason)


@dataclass(frozen=True)
class SignedDecision:
    """A stored decision: who, what, and the signature that should prove it."""

    operator_id: str
    decision: Decision
    signature: bytes


class StoredDecision(Protocol):
    """A decision as a store row holds it (on a transfer, a proposal or an attestation)."""

    @property
    def operator_id(self) -> str: ...
    @property
    def decision(self) -> Decision: ...
    @property
    def signature(self) -> str: ...  # hex


def signed_decisions(rows: Iterable[StoredDecision]) -> list[SignedDecision]:
    """Stored decisions as signed decisions (a malformed signature verifies as nothing)."""
    out = []
    for r in rows:
        try:
            signature = bytes.fromhex(r.signature)
        except ValueError:
            signature = b""
        out.append(SignedDecision(r.operator_id, r.decision, signature))
    return out


def verified_votes(statement_for: Callable[[Decision], bytes],
                   decisions: Iterable[SignedDecision], keys: Mapping[str, bytes]
                   ) -> tuple[list[Vote], list[str]]:
    """The decisions whose signatures verify over this act's statement under the operator's
    key in ``keys`` (operator id -> public key PEM), as votes; and one line for each that does
    not (an operator ``keys`` does not know, or a signature that does not verify)."""
    statements: dict[Decision, bytes] = {}
    votes: list[Vote] = []
    bad: list[str] = []
    for d in decisions:
        pem = keys.get(d.operator_id)
        if pem is None:
            bad.append(f"{d.operator_id} is not an operator in the chain of authority")
            continue
        decision = Decision(d.decision)
        statement = statements.get(decision)
        if statement is None:
            statement = statements[decision] = statement_for(decision)
        if signature_valid(pem, statement, d.signature):
            votes.append(Vote(d.operator_id, decision))
        else:
            bad.append(f"the {decision.value} of {d.operator_id} does not verify over this act's "
                       "statement")
    return votes, bad


def render(ctx: StatementContext, movement: Movement, decision: Decision) -> str:
    """What an operator reads before signing; every bound field appears.

    Text from outside (addresses, legal basis, ids) is shown escaped when it holds anything but
    printable ASCII, so control characters or look-alike letters cannot forge a line.
    """
    network = (f"{movement.network}, chain id {movement.chain_id}" if movement.chain_id
               else movement.network)
    if movement.native is not None:
        n = movement.native
        network = (f"{n.name}, chain id {n.chain_id}, native coin {n.symbol}, {n.decimals} "
                   "decimals (governance chain registry)")
    lines = [
        f"You are about to {Decision(decision).value} this transfer.",
        f"transfer:        {_safe(ctx.transfer_id)}",
        f"wallet:          {_safe(ctx.wallet_id)}",
        f"daemon:          {_safe(ctx.instance_id)}",
        f"submitted by:    {_safe(ctx.submitter) or '(unknown)'}",
        f"chain:           {movement.chain.value} ({_safe(network)})",
        "outputs:",
    ]
    lines += [f"  {i}. {_describe(o, movement)}" for i, o in enumerate(movement.outputs, 1)]
    if not movement.outputs:
        lines.append("  (none)")
    lines += token_warnings(movement.outputs)
    lines += hook_data_warnings(movement)
    fee_label = {Chain.ETHEREUM: "max fee:", Chain.TRON: "fee limit:"}.get(movement.chain,
                                                                          "fee:")
    lines.append(f"{fee_label:<17}"
                 f"{_amount(movement.fee, movement.fee_asset, native=movement.native)}"
                 + (f", {movement.vsize} vB" if movement.vsize else ""))
    if ctx.replaces:
        lines.append("replaces:        " + replacement_summary(
            ctx.replaces, ctx.replaces_state, ctx.replaces_fee_delta, movement.fee_asset))
    lines += veto_warnings(ctx.vetoed)
    if movement.nonce is not None:
        lines.append(f"nonce:           {movement.nonce}")
    if movement.gas_limit is not None:
        lines.append(f"gas limit:       {movement.gas_limit}")
    for label, wei in (("max fee/gas:", movement.max_fee_per_gas),
                       ("priority fee/gas:", movement.max_priority_fee_per_gas)):
        if wei is not None:
            lines.append(f"{label:<16} {wei} wei")
    for t in movement.tokens:
        lines.append(f"token:           {_safe(t.symbol)} = {_safe(t.standard).upper()} contract "
                     f"{_safe(t.address)} on chain {t.chain_id}, {t.decimals} decimals "
                     "(governance token registry)")
    lines += extra_lines(movement.extra)
    if movement.safe:
        lines += safe_lines(movement.safe)
    if movement.contract_call:
        lines.append(f"contract call:   {_safe(movement.contract_call)} (NOT decoded)")
    if movement.outpoints:
        lines.append("spends:          " + ", ".join(_safe(p) for p in movement.outpoints))
    if movement.sighash:
        lines.append("sighash:         " + sighash_summary(movement.sighash))
        lines += sighash_warnings(movement.sighash, len(movement.outputs))
    lines += [f"{f'digest {i}:':<17}{d.hex()}" for i, d in enumerate(movement.digests, 1)]
    lines += [
        f"payload sha256:  {ctx.payload_sha256.hex()}",
        f"policy version:  {ctx.policy_version}",
        f"category change: {ctx.category_change}",
        *legal_basis_lines(ctx.legal_basis),
        f"expires:         {_utc(ctx.expires_at)}",
    ]
    return "\n".join(lines) + "\n"


_EXTRA_LABELS = {"tron_contract": "tron contract:", "tron_expiration": "tx expiration:",
                 "tron_ref_block_bytes": "ref block bytes:", "tron_ref_block_hash": "ref block hash:",
                 "tron_ref_block_num": "ref block num:", "tron_timestamp": "tx timestamp:",
                 "tron_memo": "memo (hex):"}
_EXTRA_TIMES = ("tron_expiration", "tron_timestamp")


def extra_lines(extra: Iterable[tuple[str, str]]) -> list[str]:
    """The chain-specific fields, one line each; times in ms are shown in UTC as well."""
    lines = []
    for name, value in extra:
        label = _EXTRA_LABELS.get(name, f"{_safe(name)}:")
        shown = _safe(value)
        if name in _EXTRA_TIMES and value.isdigit() and len(value) <= 16:
            try:
                when = datetime.fromtimestamp(int(value) / 1000, timezone.utc)
                shown += f" ms ({when.strftime('%Y-%m-%dT%H:%M:%S')}Z)"
            except (OverflowError, ValueError, OSError):
                pass
        lines.append(f"{label:<17}{shown}")
    return lines


def safe_lines(fields: Sequence[tuple[str, str]]) -> list[str]:
    """A Safe transaction's bound fields, one a line, with ``WARNING:`` lines for a
    DELEGATECALL, a gas refund paid from the Safe and a change to the Safe itself."""
    lines = ["safe transaction (signed by an owner key, executed by the Safe):"]
    values = dict(fields)
    for k, v in fields:
        lines.append(f"  {_safe(k) + ':':<16} {_safe(v)}")
    if values.get("operation", "").startswith("1"):
        lines.append("WARNING: DELEGATECALL: the Safe runs the target's code as its own; it can "
                     "change owners, modules or move any asset")
    if values.get("gas_refund", "none") != "none":
        lines.append("WARNING: gas refund: the Safe pays whoever executes it "
                     f"({_safe(values['gas_refund'])})")
    if values.get("owner_change"):
        lines.append("WARNING: this changes the Safe itself (owners, threshold, guard, modules "
                     "or fallback handler): it needs the governance quorum's approval too")
    return lines


def legal_basis_lines(text: str) -> list[str]:
    """The legal basis as bound, then its parts: the court, the case number and the date of the
    decision (one stored before the structured form was required is marked as free text)."""
    if not text:
        return ["legal basis:     (none)"]
    lines = [f"legal basis:     {_safe(text)}"]
    basis = legal_basis_parts(text)
    if basis is None:
        return lines + ["  (free text, not a structured court reference)"]
    return lines + [f"  court:         {_safe(basis.court)}",
                    f"  case number:   {_safe(basis.case_number)}",
                    f"  decided on:    {basis.decided.isoformat()}"]


def _inputs(indices: Sequence[int]) -> str:
    """``input 3`` or ``inputs 0-2, 5``."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"input{'s' if len(indices) > 1 else ''} {text}"


def sighash_summary(types: Sequence[str]) -> str:
    """Each input's sighash type, consecutive inputs of one type together
    (``inputs 0-999 ALL``, ``input 0 NONE, input 1 ALL``)."""
    groups: list[tuple[str, list[int]]] = []
    for i, name in enumerate(types):
        if groups and groups[-1][0] == name:
            groups[-1][1].append(i)
        else:
            groups.append((name, [i]))
    return ", ".join(f"{_inputs(ix)} {safe_text(name)}" for name, ix in groups)


def sighash_warnings(types: Sequence[str], outputs: int) -> list[str]:
    """A line starting ``WARNING:`` for each way the inputs' sighash types (``types``, by input
    index; ``outputs``: how many outputs the transaction has) let it be changed after signing.
    Segwit v0 digests (BIP-143): NONE signs no output; SINGLE signs the output at its input's
    index, or none when there is no such output; ANYONECANPAY signs no other input."""
    none: list[int] = []
    single: list[int] = []
    lone: list[int] = []
    anyone: list[int] = []
    odd: list[int] = []
    for i, name in enumerate(types):
        base, bar, flag = name.partition("|")
        if (bar and flag != "ANYONECANPAY") or base not in ("ALL", "NONE", "SINGLE"):
            odd.append(i)
            continue
        if flag:
            anyone.append(i)
        if base == "NONE":
            none.append(i)
        elif base == "SINGLE":
            (single if i < outputs else lone).append(i)
    lines = []
    if none:
        lines.append(f"WARNING: SIGHASH_NONE on {_inputs(none)}: the outputs can be changed after "
                     "signing (no output is signed), so whoever holds the signed transaction can "
                     "send these funds anywhere.")
    if single:
        lines.append(f"WARNING: SIGHASH_SINGLE on {_inputs(single)}: only the output at the same "
                     "index as the input is signed; the other outputs can be changed or added "
                     "after signing.")
    if lone:
        lines.append(f"WARNING: SIGHASH_SINGLE on {_inputs(lone)}, with no output at the same "
                     "index: no output is signed, so the outputs can be changed after signing "
                     "and these funds sent anywhere.")
    if anyone:
        lines.append(f"WARNING: ANYONECANPAY on {_inputs(anyone)}: other inputs can be added "
                     "(or the other inputs left out) after signing; the signature covers only "
                     "its own input.")
    if odd:
        lines.append(f"WARNING: a non-standard sighash type on {_inputs(odd)}: what it lets "
                     "change after signing is not known here.")
    return lines


def token_warnings(outputs: Iterable[Output]) -> list[str]:
    """A ``WARNING:`` line for each grant of everything and each output that takes tokens
    from another address than the wallet."""
    lines = []
    for i, o in enumerate(outputs, 1):
        if o.grant:
            lines.append(f"WARNING: output {i} grants {safe_text(o.address)} control of ALL "
                         f"tokens of contract {safe_text(o.asset.partition(':')[2])} the wallet "
                         "holds, now and later, until revoked; it needs a policy rule with "
                         "grant = true.")
        if o.source:
            lines.append(f"WARNING: output {i} takes tokens held by {safe_text(o.source)}, not "
                         "by the wallet, under an allowance or operator approval that address "
                         "gave; it needs a policy rule with spend_allowance = true.")
    return lines


def hook_data_warnings(movement: Movement) -> list[str]:
    """A ``WARNING:`` line showing the ``bytes data`` a decoded safeTransferFrom hands to the
    recipient's ``onERC721Received`` / ``onERC1155Received`` hook (``token_call_data`` in the
    movement's details, decoded from the transaction itself): a contract recipient may act on
    it, e.g. deliver what it receives to an address the data names, so the operator sees it
    beside the recipient. Nothing when the call passes no data."""
    data = movement.details.get("token_call_data", "")
    if not data:
        return []
    to = next((o.address for o in movement.outputs
               if o.asset.partition(":")[0].upper() in ("ERC721", "ERC1155")), "")
    return [f"WARNING: safeTransferFrom hands {safe_text(to) or 'the recipient'} the data "
            f"{safe_text(data)} ({(len(data) - 2) // 2} bytes) in its onERC721Received / "
            "onERC1155Received hook; a contract recipient may act on it (e.g. deliver the "
            "tokens on to an address the data names): approve only if you know what it says."]


def describe_token_output(out: Output, token: Token | None, to: str, where: str) -> str | None:
    """How a registered collection's output or a grant reads (``None`` for any other
    output): ``send ERC-721 SEIZED-ART token id 7 to ...``, ``GRANT 0x.. control of ALL
    SEIZED-ART held by the wallet (setApprovalForAll) ...``."""
    kind, _, address = out.asset.partition(":")
    kind = kind.upper()
    name = _safe(token.symbol) if token is not None else f"token {_safe(address)}"
    if out.grant:
        how = ("setApprovalForAll" if kind.endswith("APPROVE-ALL") else
               f"allowance of {out.amount} base units")
        return f"GRANT {to} control of ALL {name} held by the wallet ({how}) {where}"
    if kind.endswith("APPROVE-ALL"):
        return (f"REVOKE {to}'s control of all {name} held by the wallet "
                f"(setApprovalForAll false) {where}")
    if kind == "ERC20-INCREASE":
        what = (token_amount(out.amount, token) if token is not None
                else f"{out.amount} base units of token {_safe(address)}")
        return f"increase the allowance of spender {to} by {what} {where}"
    if kind not in ("ERC721", "ERC721-APPROVE", "ERC1155") and not out.source:
        return None
    if kind == "ERC721-APPROVE":
        return f"approve spender {to} for ERC-721 {name} token id {out.token_id} {where}"
    if kind == "ERC721":
        what = f"ERC-721 {name} token id {out.token_id}"
    elif kind == "ERC1155":
        count = (f"{format_units(out.amount, token.decimals)} ({out.amount} base units)"
                 if token is not None and token.decimals else str(out.amount))
        what = f"{count} of ERC-1155 {name} token id {out.token_id}"
    else:
        what = format_amount(out.amount, out.asset, token)
    verb = f"take {what} from {_safe(out.source)} (NOT the wallet's)" if out.source else \
        f"send {what}"
    return f"{verb} to {to} {where}"


def _describe(out: Output, movement: Movement) -> str:
    kind, _, address = out.asset.partition(":")
    token = lookup_token(movement.tokens, out.asset, movement.chain_id)
    to = _safe(out.address) if out.address else "(new contract)"
    ours = f" {_safe(out.category)} wallet {_safe(out.wallet_id)}" if out.wallet_id else ""
    where = f"[{out.destination_class.value}{ours}{', CHANGE' if out.is_change else ''}]"
    special = describe_token_output(out, token, to, where)
    if special is not None:
        return special
    if kind.upper() == "ERC20-APPROVE":
        what = (f"an allowance of {token_amount(out.amount, token)}" if token is not None
                else f"{out.amount} base units of token {_safe(address)}")
        return f"approve spender {to} for {what} {where}"
    verb = "change" if out.is_change else "send"
    return (f"{verb} {_amount(out.amount, out.asset, token, native=movement.native)} to {to} "
            f"{where}")


def replacement_summary(transfer_id: str, state: str, fee_delta: int, fee_asset: str) -> str:
    """``t_... (SIGNED), fee +4,500 sat``: what a replacement replaces, that transfer's state
    when the replacement was submitted, and how the fee changes (in the fee asset's base
    units)."""
    unit = {"BTC": "sat", "ETH": "wei", "TRX": "sun"}.get(fee_asset,
                                                         f"base units of {safe_text(fee_asset)}")
    return (f"{safe_text(transfer_id)} ({safe_text(state) or 'state not recorded'}), "
            f"fee {fee_delta:+,} {unit}")


def veto_warnings(vetoed: Iterable[tuple[str, str]]) -> list[str]:
    """A ``WARNING:`` line for each earlier veto of the same transaction."""
    return [f"WARNING: previously vetoed by {safe_text(role)} in {safe_text(tid)}; this "
            f"transfer needs an approval by a {safe_text(role)} as well" for role, tid in
            sorted(vetoed)]


def format_amount(amount: int, asset: str, token: Token | None = None, *,
                  native: EvmChain | None = None) -> str:
    """An amount for people: BTC with 8 decimals and sats, ETH with 18 and wei, the native coin
    of a registered chain (``native``, its registry entry) with its decimals and symbol, a
    registered token (``token``, its registry entry) with its decimals and symbol and in base
    units, any other token in base units only."""
    if (native is not None and asset == native.symbol
            and (native.symbol, native.decimals) != ("ETH", 18)):
        return native_amount(amount, native)
    if asset == "BTC":
        return f"{amount // 10**8}.{amount % 10**8:08d} BTC ({amount} sat)"
    if asset == "ETH":
        return f"{amount // 10**18}.{amount % 10**18:018d} ETH ({amount} wei)"
    if asset == "TRX":
        return f"{amount // 10**6}.{amount % 10**6:06d} TRX ({amount} sun)"
    kind, _, address = asset.partition(":")
    if kind.upper() in ("ERC20", "TRC20"):
        if token is not None:
            return token_amount(amount, token)
        return f"{amount} base units of token {safe_text(address)}"
    if kind.upper() == "ERC20-APPROVE":
        if token is not None:
            return f"an allowance of {token_amount(amount, token)}"
        return f"an allowance of {amount} base units of token {safe_text(address)}"
    return f"{amount} base units of {safe_text(asset)}"


_amount = format_amount


def native_amount(amount: int, chain: EvmChain) -> str:
    """``1.500000000000000000 BNB (1500000000000000000 base units)``."""
    return safe_text(format_native(amount, chain))


def safe_text(text: object) -> str:
    """Text from outside, escaped unless printable ASCII, so neither control characters nor
    look-alike letters can forge a line, a colour or an address."""
    s = str(text)
    return s if s.isascii() and s.isprintable() else ascii(s)


_safe = safe_text


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dec(value: int, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative integer")
    return str(value)


def _text(value: str, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _opt(value: int | None, name: str) -> str | None:
    return None if value is None else _dec(value, name)


def _hex(value: bytes, name: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidArgument(f"{name} must be bytes")
    return value.hex()
