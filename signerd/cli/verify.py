"""The independent check: signerctl never trusts the daemon's description of what it asks to be
signed. It decodes the raw transaction here, rebuilds the approval statement from it and the
transfer's metadata with the same core functions the daemon uses, and refuses unless the
daemon's statement is byte for byte the rebuilt one; a proposal statement it checks likewise,
recomputing what it can from the proposal's own content."""
from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Any

from signerd.core import approval, authority, canonical, operator_keys
from signerd.core import safe_wallet
from signerd.core.chains import (Ours, adapter_for_wallet, classify_outputs,
                                 derive_address)
from signerd.cli.documents import to_dict
from signerd.cli.errors import CliError
from signerd.cli.render import safe
from signerd.adapters.config import Limits
from signerd.core.errors import InvalidArgument, SignerError
from signerd.core.model import (Category, Chain, Decision, EvmChain, KeyRef, Movement, ScriptType,
                                Token, Wallet, WalletStatus)
from signerd.core.policy import SIGHASH_TYPES, parse_policy, sighash_numbers
from signerd.core.tokens import make_token
from signerd.core.chain_registry import make_chain
from signerd.v1 import signerd_pb2 as pb

MISMATCH = "the daemon's statement does not match the transaction"


def wallet_model(w: pb.Wallet) -> Wallet:
    """The daemon's wallet as the domain value the chain adapters decode against."""
    def need(name: str, value: str) -> str:
        if not value:
            raise CliError(f"the daemon sent wallet {safe(w.id)} without a {name}")
        return value

    d = to_dict(w)
    keys = []
    for k in w.keys:
        key_id = k.key_id if k.hsm_held or k.key_id.startswith("ext-") else "ext-" + k.key_id
        keys.append(KeyRef(key_id, k.label, bytes(k.public_key)))
    return Wallet(
        id=w.id, chain=Chain(need("chain", d["chain"])), network=w.network,
        script_type=ScriptType(need("script type", d["script_type"])),
        category=Category(need("category", d["category"])), case_ref=w.case_ref,
        legal_basis=w.legal_basis, status=WalletStatus(need("status", d["status"])),
        address=w.address, keys=tuple(keys), chain_ids=tuple(w.chain_ids),
        descriptor=w.descriptor, threshold=w.threshold or 1, cosigners=tuple(w.cosigners),
        created_at=float(w.created_at_unix), policy_version=w.policy_version,
    )


@dataclass(frozen=True)
class Rebuilt:
    statement: bytes
    context: approval.StatementContext
    movement: Movement


def rebuild_statement(st: pb.Statement, transfer_id: str, decision: Decision, *,
                      limits: Limits, instance_id: str | None = None,
                      allowed_sighash: frozenset[int] = frozenset({SIGHASH_TYPES["ALL"]})
                      ) -> Rebuilt:
    """Rebuild the approval statement here from the raw payload and the transfer's metadata;
    raise CliError unless it is byte for byte the statement the daemon asks to be signed."""
    t = st.transfer
    if t.id != transfer_id:
        raise CliError(f"the daemon answered for transfer {safe(t.id)}, not {safe(transfer_id)}")
    if st.wallet.id != t.wallet_id:
        raise CliError(f"the daemon sent wallet {safe(st.wallet.id)} for a transfer from "
                       f"{safe(t.wallet_id)}")
    if instance_id is not None and t.instance_id != instance_id:
        raise CliError(f"the transfer belongs to daemon {safe(t.instance_id)}, not to the "
                       f"configured {safe(instance_id)}")
    wallet = wallet_model(st.wallet)
    if t.chain != pb.CHAIN_UNSPECIFIED and pb.Chain.Name(t.chain).lower() != wallet.chain.value:
        raise CliError("the transfer's chain is not its wallet's chain")
    # The token registry decides what Ethereum calldata and Tron contract calls are; a Bitcoin
    # transfer's is unread. The chain registry names Ethereum chains' native coins.
    tokens = token_registry(st) if wallet.chain in (Chain.ETHEREUM, Chain.TRON) else {}
    chains = chain_registry(st) if wallet.chain is Chain.ETHEREUM else None
    try:
        decoded = adapter_for_wallet(wallet).decode(wallet, bytes(t.payload), limits,
                                                    allowed_sighash=allowed_sighash, tokens=tokens,
                                                    chains=chains)
    except ImportError as e:
        raise CliError(f"cannot decode {wallet.chain.value} transactions here ({e})") from None
    except SignerError as e:
        raise CliError(f"the transaction does not decode here: {e}") from None
    ours = {d.address: Ours(d.wallet_id, d.category, d.own) for d in st.destinations}
    mv = classify_outputs(decoded.movement, ours, tuple(st.allowlist))
    try:
        ctx = approval.statement_context(
            instance_id=t.instance_id, transfer_id=t.id, wallet_id=t.wallet_id,
            policy_version=t.policy_version, expires_at=t.expires_at_unix,
            payload=bytes(t.payload), legal_basis=t.legal_basis,
            category_change=t.category_change or "none", submitter=t.submitter,
            replaces=t.replaces, replaces_state=t.replaces_state,
            replaces_fee_delta=_signed_int(t.replaces_fee_delta or "0", "replaces_fee_delta"),
            vetoed=((v.role, v.transfer_id) for v in t.vetoed))
        statement = approval.build_statement(ctx, mv, decision)
    except SignerError as e:
        raise CliError(f"{MISMATCH}: {e}") from None
    if statement != bytes(st.statement):
        raise CliError(MISMATCH)
    return Rebuilt(statement, ctx, mv)


def _signed_int(text: str, name: str) -> int:
    """A signed decimal integer the daemon sent (as the statement spells it), or
    InvalidArgument naming the field."""
    body = text[1:] if text[:1] == "-" else text
    if not (body.isascii() and body.isdigit()) or (len(body) > 1 and body[0] == "0"):
        raise InvalidArgument(f"{name} must be a decimal integer, got {safe(text)}")
    return int(text)


def token_registry(st: pb.Statement) -> dict[tuple[int, str], Token]:
    """The token registry entries the daemon says the transfer uses, checked as the daemon
    checks them. They decide what decodes as a token here, and the statement binds them, so a
    daemon that names a contract it did not register, or another symbol or decimals, gets a
    statement that no operator's signature over the true one matches."""
    out = {}
    for t in st.tokens:
        try:
            token = make_token(chain_id=t.chain_id, address=t.address, standard=t.standard,
                               symbol=t.symbol, decimals=t.decimals)
        except SignerError as e:
            raise CliError(f"the daemon sent a malformed token entry: {e}") from None
        out[token.key] = token
    return out


def chain_registry(st: pb.Statement) -> dict[int, EvmChain] | None:
    """The chain registry entry the daemon says the transfer's chain has, checked as the
    daemon checks it (None when it sends none: a statement made before the registry). It
    names the native coin here, and the statement binds it, so a daemon that names another
    chain, symbol or decimals gets a statement no signature over the true one matches."""
    if not st.HasField("native"):
        return None
    n = st.native
    try:
        entry = make_chain(chain_id=n.chain_id, name=n.name, symbol=n.symbol,
                           decimals=n.decimals)
    except SignerError as e:
        raise CliError(f"the daemon sent a malformed chain entry: {e}") from None
    return {entry.chain_id: entry}


def accepted_sighash(names: list[str] | None) -> frozenset[int]:
    """The sighash types an approval accepts: ALL, and those --allow-sighash names."""
    return sighash_numbers(["ALL", *(names or [])])


def verify_proposal_statement(st: pb.ProposalStatement, proposal_id: str, decision: Decision,
                              *, instance_id: str | None = None) -> dict[str, Any]:
    """Check the bytes the daemon asks to be signed, here: the proposal statement's tag and
    canonical form, that it is this proposal and this decision, and what can be recomputed
    from its own content (a wallet's address from its keys, a key's fingerprint, that a
    policy parses). Returns the proposal document the person is shown."""
    raw = bytes(st.statement)
    prefix = approval.PROPOSAL_TAG + b"\n"
    if not raw.startswith(prefix):
        raise CliError("the daemon's statement is not a proposal statement")
    try:
        body = canonical.loads(raw[len(prefix):], "statement")
    except SignerError as e:
        raise CliError(f"the daemon's statement is malformed: {e}") from None
    if not isinstance(body, dict) or set(body) != {"decision", "proposal"}:
        raise CliError("the daemon's statement is malformed")
    doc = body["proposal"]
    if body["decision"] != decision.value:
        raise CliError(f"the daemon's statement is for {safe(body['decision'])}, not "
                       f"{decision.value}")
    try:
        authority.check_document(doc, doc.get("instance_id", "") if isinstance(doc, dict) else "")
    except SignerError as e:
        raise CliError(f"the daemon's proposal is malformed: {e}") from None
    if doc["id"] != proposal_id:
        raise CliError(f"the daemon answered for proposal {safe(doc['id'])}, not "
                       f"{safe(proposal_id)}")
    if instance_id is not None and doc["instance_id"] != instance_id:
        raise CliError(f"the proposal belongs to daemon {safe(doc['instance_id'])}, not to the "
                       f"configured {safe(instance_id)}")
    if approval.proposal_statement(doc, decision) != raw:
        raise CliError(MISMATCH)
    c = doc["change"]
    try:
        if doc["kind"] == "operator.register":
            operator_keys.load_public_pem(c["public_key_pem"].encode())
        elif doc["kind"] in ("wallet.policy", "template.set"):
            parse_policy(c["document"])
        elif doc["kind"] == "governance.set":
            authority.parse_governance(c["document"])
        elif doc["kind"] in ("wallet.import", "wallet.create"):
            check_wallet_record(c["wallet"])
    except SignerError as e:
        raise CliError(f"the proposal's content does not check out here: {e}") from None
    return dict(doc)


def check_wallet_record(w: dict[str, Any]) -> None:
    """A proposed wallet's address and descriptor, derived here from its keys."""
    keys = sorted(w["keys"], key=lambda k: k["position"])
    if w["script_type"] == ScriptType.SAFE.value:
        check_safe_record(w, bytes.fromhex(keys[0]["public_key"]))
        return
    address, desc = derive_address(Chain(w["chain"]), w["network"], ScriptType(w["script_type"]),
                                   int(w["threshold"]),
                                   [bytes.fromhex(k["public_key"]) for k in keys])
    if address != w["address"] or desc != w["descriptor"]:
        raise CliError(f"the proposed wallet's address {safe(w['address'])} is not the one its "
                       f"keys make ({safe(address)}); refusing to sign")


def check_safe_record(w: dict[str, Any], owner_key: bytes) -> None:
    """A proposed Safe wallet, checked here as signerd checks it: the Safe's address is the one
    its setup deploys to, the HSM key's owner address is among the setup's owners, and the
    owners, threshold and chain id recorded are the setup's."""
    s = w.get("safe")
    if not isinstance(s, dict) or len(w["keys"]) != 1:
        raise CliError("the proposed Safe wallet has no Safe record or not one owner key; "
                       "refusing to sign")
    checked = safe_wallet.check_safe(w["address"], json.dumps(s.get("setup")), owner_key)
    if (s.get("address") != checked.address or list(s.get("owners", ())) != list(checked.owners)
            or s.get("threshold") != checked.threshold or w["threshold"] != checked.threshold
            or [s.get("chain_id")] != list(w["chain_ids"]) or s.get("owner") != checked.owner):
        raise CliError("the proposed Safe wallet's record differs from its setup; refusing to "
                       "sign")
