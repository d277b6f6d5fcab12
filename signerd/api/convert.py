"""Translation between domain values and protobuf messages (no logic)."""
from __future__ import annotations

import json
from typing import Any

from signerd.app import SignedHead
from signerd.core import canonical
from signerd.core.model import (Category, Chain, EvmChain, Movement, ScriptType, Token, Wallet,
                                WalletStatus)
from signerd.services.proposals import ProposalView, ShownDecision
from signerd.services.transfers import ShownApproval, TransferView
from ..v1 import signerd_pb2 as pb

CHAIN_TO_PB = {Chain.BITCOIN: pb.BITCOIN, Chain.ETHEREUM: pb.ETHEREUM, Chain.TRON: pb.TRON}
CHAIN_FROM_PB = {pb.BITCOIN: "bitcoin", pb.ETHEREUM: "ethereum", pb.TRON: "tron",
                 pb.CHAIN_UNSPECIFIED: ""}
CATEGORY_TO_PB = {Category.SEIZED: pb.SEIZED, Category.CONFISCATED: pb.CONFISCATED,
                  Category.STRATEGIC: pb.STRATEGIC}
CATEGORY_FROM_PB = {pb.SEIZED: "seized", pb.CONFISCATED: "confiscated",
                    pb.STRATEGIC: "strategic", pb.CATEGORY_UNSPECIFIED: ""}
STATUS_TO_PB = {WalletStatus.ACTIVE: pb.ACTIVE, WalletStatus.FROZEN: pb.FROZEN,
                WalletStatus.RETIRED: pb.RETIRED,
                WalletStatus.AWAITING_APPROVAL: pb.AWAITING_APPROVAL}
SCRIPT_TO_PB = {ScriptType.P2WPKH: pb.P2WPKH, ScriptType.P2SH_P2WPKH: pb.P2SH_P2WPKH,
                ScriptType.P2WSH_SORTEDMULTI: pb.P2WSH_SORTEDMULTI, ScriptType.EOA: pb.EOA,
                ScriptType.SAFE: pb.SAFE}
SCRIPT_FROM_PB = {pb.P2WPKH: "p2wpkh", pb.P2SH_P2WPKH: "p2sh-p2wpkh",
                  pb.P2WSH_SORTEDMULTI: "p2wsh-sortedmulti", pb.EOA: "eoa", pb.SAFE: "safe",
                  pb.SCRIPT_TYPE_UNSPECIFIED: ""}


def wallet_pb(w: Wallet, *, policy_version: int = 0, freeze_order: str = "") -> pb.Wallet:
    return pb.Wallet(
        id=w.id, chain=CHAIN_TO_PB[w.chain], network=w.network, chain_ids=list(w.chain_ids),
        script_type=SCRIPT_TO_PB[w.script_type], category=CATEGORY_TO_PB[w.category],
        case_ref=w.case_ref, legal_basis=w.legal_basis, status=STATUS_TO_PB[w.status],
        address=w.address, descriptor=w.descriptor,
        keys=[pb.Key(key_id=k.key_id, label=k.label, public_key=k.public_key,
                     hsm_held=k.hsm_held) for k in w.keys],
        threshold=w.threshold, cosigners=list(w.cosigners),
        policy_version=policy_version or w.policy_version, created_at_unix=int(w.created_at),
        freeze_order=freeze_order, template=w.template, proposal_id=w.proposal,
        safe_owners=list(w.safe_owners), safe_setup=w.safe_setup)


def movement_pb(m: Movement) -> pb.Movement:
    msg = pb.Movement(
        chain=CHAIN_TO_PB[m.chain], network=m.network, chain_id=m.chain_id,
        outputs=[pb.Output(address=o.address, amount=str(o.amount), asset=o.asset,
                           is_change=o.is_change, destination_class=o.destination_class.value,
                           wallet_id=o.wallet_id, category=o.category,
                           token_id="" if o.token_id is None else str(o.token_id),
                           source=o.source, grant=o.grant)
                 for o in m.outputs],
        fee=str(m.fee), fee_asset=m.fee_asset, digests=list(m.digests),
        max_fee_per_gas="" if m.max_fee_per_gas is None else str(m.max_fee_per_gas),
        max_priority_fee_per_gas=("" if m.max_priority_fee_per_gas is None
                                  else str(m.max_priority_fee_per_gas)),
        contract_call=m.contract_call, outpoints=list(m.outpoints), sighash=list(m.sighash),
        extra=dict(m.extra),
        safe=[pb.SafeField(name=k, value=v) for k, v in m.safe])
    if m.nonce is not None:
        msg.nonce = m.nonce
    if m.gas_limit is not None:
        msg.gas_limit = m.gas_limit
    if m.vsize is not None:
        msg.vsize = m.vsize
    if m.native is not None:
        msg.native.CopyFrom(evm_chain_pb(m.native))
    return msg


def evm_chain_pb(c: EvmChain) -> pb.EvmChain:
    return pb.EvmChain(chain_id=c.chain_id, name=c.name, symbol=c.symbol, decimals=c.decimals)


def transfer_pb(v: TransferView) -> pb.Transfer:
    t = v.transfer
    return pb.Transfer(
        id=t.id, wallet_id=t.wallet_id, chain=CHAIN_TO_PB[t.chain],
        state=pb.TransferState.Value(t.state.value), payload=t.payload,
        movement=movement_pb(v.movement), submitter=t.submitter,
        policy_version=t.policy_version, requirement=v.requirement,
        remaining=v.remaining, expires_at_unix=int(t.expires_at),
        created_at_unix=int(t.created_at), updated_at_unix=int(t.updated_at),
        approvals=[approval_pb(a) for a in v.approvals],
        raw_tx=t.raw_tx, psbt=t.psbt, tx_hash=t.tx_hash, failure=t.failure,
        replaces=t.replaces, legal_basis=t.legal_basis,
        category_change=t.category_change, instance_id=v.instance_id,
        replaces_state=t.replaces_state, replaces_fee_delta=t.replaces_fee_delta,
        vetoed=[pb.PriorVeto(role=role, transfer_id=tid) for role, tid in v.vetoed])


def approval_pb(a: ShownApproval | ShownDecision) -> pb.ApprovalRecord:
    """A stored decision, on a transfer or on a proposal (the same message for both)."""
    r = a.record
    return pb.ApprovalRecord(
        operator_id=r.operator_id, decision=pb.Decision.Value(r.decision.value),
        signature=bytes.fromhex(r.signature), reason=r.reason,
        created_at_unix=int(r.created_at), counted=a.counted)


def state_from_pb(value: int) -> str:
    return "" if value == pb.TRANSFER_STATE_UNSPECIFIED else pb.TransferState.Name(value)


def json_details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"))


def proposal_pb(v: ProposalView) -> pb.Proposal:
    p = v.proposal
    return pb.Proposal(
        id=p.id, kind=p.kind, state=p.state.value, submitter=p.submitter,
        summary=v.summary, body_json=canonical.dumps(v.doc).decode(), requirement=v.requirement,
        remaining=v.remaining, approvals=[approval_pb(a) for a in v.approvals],
        expires_at_unix=int(p.expires_at), created_at_unix=int(p.created_at),
        updated_at_unix=int(p.updated_at), applied_seq=p.applied_seq,
        failure=p.failure, instance_id=v.doc["instance_id"])


def token_pb(t: Token) -> pb.Token:
    return pb.Token(chain_id=t.chain_id, address=t.address, standard=t.standard,
                    symbol=t.symbol, decimals=t.decimals)


def operator_pb(o: Any) -> pb.Operator:
    return pb.Operator(id=o.id, roles=list(o.roles), public_key_pem=o.public_key_pem,
                       status=o.status.value, fingerprint=o.fingerprint,
                       created_at_unix=int(o.created_at), key_type=o.key_type,
                       token_held=o.token_held)


def policy_pb(p: Any) -> pb.PolicyVersion:
    return pb.PolicyVersion(wallet_id=p.wallet_id, version=p.version, toml=p.document,
                            actor=p.actor, created_at_unix=int(p.created_at))


def audit_head_pb(h: SignedHead) -> pb.AuditHead:
    return pb.AuditHead(seq=h.seq, hash=h.hash, signature=h.signature,
                        audit_public_key=h.audit_public_key, instance_id=h.instance_id)


def safe_signatures_pb(doc: dict[str, Any]) -> pb.SafeSignatures:
    """A Safe transfer's owner signatures (``TransferService.safe_result``)."""
    return pb.SafeSignatures(
        transfer_id=doc["transfer_id"], wallet_id=doc["wallet_id"], safe=doc["safe"],
        chain_id=int(doc["chain_id"]), safe_tx_hash=doc["safe_tx_hash"],
        safe_nonce=str(doc["safe_nonce"]), threshold=int(doc["threshold"]),
        owners=list(doc["owners"]), state=pb.TransferState.Value(doc["state"]),
        owner=doc["owner"], owner_signature=doc["owner_signature"],
        signatures=[pb.SafeOwnerSignature(owner=x["owner"], signature=x["signature"])
                    for x in doc["signatures"]],
        refused=[pb.SafeOwnerSignature(owner=x["owner"], reason=x["reason"])
                 for x in doc["refused"]],
        complete=bool(doc["complete"]), exec_to=doc["exec_to"],
        exec_calldata=doc["exec_calldata"])
