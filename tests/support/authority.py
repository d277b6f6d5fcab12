"""A governance ledger in process (pure core): a genesis, its operators and keys, proposals,
approvals and the ledger entries they make (shared by the unit tests of authority and engine)."""
from __future__ import annotations

import hashlib
from typing import Any

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from signerd.core import authority as AU
from signerd.core.approval import (SignedDecision, genesis_statement, proposal_statement,
                                   sign_statement)
from signerd.core.model import Decision
from signerd.core.operator_keys import generate, public_pem

GOV = """name = "governance"
expiry = "72h"
roles = ["investigator", "custody_officer", "admin", "judge"]
[[rule]]
name = "two-admins"
kinds = ["*"]
approvers = 2
roles = { admin = 2 }
"""
TWO_KEY = """name = "two-key"
[[rule]]
name = "all"
asset = "*"
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""
ROLES = {"admin1": ["admin"], "admin2": ["admin"], "admin3": ["admin"],
         "inv1": ["investigator"], "cust1": ["custody_officer"]}
KEYS = {op: generate() for op in ROLES}
AUDIT_KEY = coincurve.PrivateKey(hashlib.sha256(b"signerd authority test audit key").digest())
PINNED_AUDIT = AUDIT_KEY.public_key.format()


def genesis_doc(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        instance_id="signerd-test", created_at=1_700_000_000,
        operators=[{"id": op, "roles": r, "public_key_pem": public_pem(KEYS[op]).decode()}
                   for op, r in ROLES.items()],
        governance=GOV, templates={"two-key": TWO_KEY}, audit_key_id="aa" * 16,
        audit_public_key=PINNED_AUDIT)
    args.update(over)
    return AU.make_genesis(**args)


def signed_genesis(doc: dict[str, Any], signers: list[str] | None = None) -> AU.Entry:
    st = genesis_statement(doc)
    return AU.genesis_entry(doc, [SignedDecision(op, Decision.APPROVE,
                                                 sign_statement(KEYS[op], st))
                                  for op in (signers if signers is not None else ROLES)])


DOC = genesis_doc()
GENESIS = signed_genesis(DOC)
PIN = AU.genesis_digest(DOC)
STATE = AU.start(GENESIS, PIN)
_ids = iter(range(10**6))


def proposal(kind: str, change: dict[str, Any], submitter: str = "admin") -> dict[str, Any]:
    return {"id": f"p_{next(_ids):020x}", "instance_id": "signerd-test", "kind": kind,
            "change": change, "submitter": submitter, "created_at": 1_700_000_000,
            "expires_at": 1_700_259_200}


def approvals(doc: dict[str, Any], *ops: str, decision: Decision = Decision.APPROVE
              ) -> list[SignedDecision]:
    st = proposal_statement(doc, decision)
    return [SignedDecision(op, decision, sign_statement(KEYS[op], st)) for op in ops]


def sealer(key: coincurve.PrivateKey = AUDIT_KEY) -> Any:
    """``App.seal`` with a software key standing in for the HSM's audit key."""
    from signerd.core import seal

    def stamp(kind: str, record: dict[str, Any]) -> str:
        r, s_ = decode_dss_signature(key.sign(seal.digest(kind, record), hasher=None))
        return seal.encode(r, min(s_, seal.SECP256K1_N - s_))
    return stamp


def entry(state: AU.AuthorityState, kind: str, body: dict[str, Any],
          decisions: Any = (), key: coincurve.PrivateKey = AUDIT_KEY) -> AU.Entry:
    """The entry following ``state``'s head as signerd appends it: sealed at its place."""
    return AU.seal_entry(AU.next_entry(state, kind, body, decisions), sealer(key))


def applied(state: AU.AuthorityState, doc: dict[str, Any], *ops: str) -> AU.AuthorityState:
    return AU.advance(state, entry(state, AU.PROPOSAL, doc, approvals(doc, *ops)))


def register(op_id: str, roles: list[str], key: Any = None) -> dict[str, Any]:
    key = key or generate()
    return proposal("operator.register", {"operator_id": op_id, "roles": roles,
                                          "public_key_pem": public_pem(key).decode()})
