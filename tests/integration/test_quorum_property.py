"""Property: through the real transfer service (SoftHSM, SQLite), a signature exists if and only
if a valid quorum was recorded, over random policies, operator sets and decision sequences.

The oracle below is written independently of signerd.core.policy: it tries every subset of the
counted approvers and every assignment of them to role slots."""
from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from signerd.services.admin import AdminService
from signerd.app import App
from signerd.core.approval import sign_statement
from signerd.core.errors import SignerError
from signerd.core.model import Decision
from signerd.core.operator_keys import generate, public_pem
from signerd.services.wallets import WalletRequest
from tests.support.fixtures import in_process_app
from tests.support.governance import app_govern, app_wallet
from tests.support.ethereum import tx_fields

ROLES = ["investigator", "custody_officer", "prosecutor"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    yield from in_process_app(tmp_path_factory.mktemp("prop") / "state")


def oracle(m: int, mins: dict[str, int], approvers: list[frozenset[str]]) -> bool:
    """Is there a set of >= m distinct approvers in which each role minimum is filled by
    distinct people? Brute force over role-slot assignments."""
    if len(approvers) < m:
        return False
    slots = [r for r, n in mins.items() for _ in range(n)]
    if len(slots) > len(approvers):
        return False
    for chosen in itertools.permutations(range(len(approvers)), len(slots)):
        if all(slots[i] in approvers[p] for i, p in enumerate(chosen)):
            return True
    return False


def two_people_of_two_roles(approvers: list[frozenset[str]]) -> bool:
    """The floor: two distinct approvers holding two different roles."""
    return any(ra != rb for i, x in enumerate(approvers) for j, y in enumerate(approvers)
               if i != j for ra in x for rb in y)


_counter = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(
    m=st.integers(1, 3),
    mins=st.dictionaries(st.sampled_from(ROLES), st.integers(1, 2), max_size=2).filter(
        lambda d: sum(d.values()) <= 3),
    ops=st.lists(st.tuples(st.frozensets(st.sampled_from(ROLES), min_size=1, max_size=2),
                           st.sampled_from([True, True, True, False])), min_size=2, max_size=6),
    votes=st.lists(st.tuples(st.integers(0, 5),
                             st.sampled_from(["APPROVE", "APPROVE", "APPROVE", "REJECT"])),
                   min_size=2, max_size=12),
)
def test_signature_iff_valid_quorum(app: App, m: int, mins: dict[str, int],
                                    ops: list[tuple[frozenset[str], bool]],
                                    votes: list[tuple[int, str]]) -> None:
    n = next(_counter)
    admin = AdminService(app)
    roles_toml = ", ".join(f"{r} = {k}" for r, k in mins.items())
    policy = (f'name = "p{n}"\n[[rule]]\nname = "r"\nasset = "*"\napprovers = {m}\n'
              + (f"roles = {{ {roles_toml} }}\n" if roles_toml else ""))
    w = app_wallet(app, policy, case_ref=f"P{n}")
    keys, ids = [], []
    for j, (roles, active) in enumerate(ops):
        key = generate()
        op_id = f"op{n}x{j}"
        v = app_govern(app, admin.register_operator("admin", op_id, sorted(roles),
                                                    public_pem(key)))
        assert v.state == "APPROVED", v.row["failure"]
        if not active:
            assert app_govern(app, admin.revoke_operator("admin", op_id)).state == "APPROVED"
        keys.append(key)
        ids.append(op_id)
    t = app.transfers.submit("platform", w.id, json.dumps(tx_fields(chainId=1)).encode())
    recorded: list[tuple[str, str]] = []
    for idx, decision in votes:
        idx %= len(ids)
        d = Decision(decision)
        statement, _, _ = app.transfers.statement(t.id, d)
        try:
            app.transfers.decide(ids[idx], t.id, ids[idx], d, sign_statement(keys[idx], statement),
                                 reason="no" if d is Decision.REJECT else "")
            recorded.append((ids[idx], decision))
        except SignerError:
            pass  # refused decisions (revoked, duplicate, transfer no longer pending) change nothing
    # Oracle over what the store recorded: first decision per active operator.
    first: dict[str, str] = {}
    for op_id, decision in recorded:
        first.setdefault(op_id, decision)
    roles_of = {ids[j]: ops[j][0] for j in range(len(ops))}
    approvers = [roles_of[o] for o, d in first.items() if d == "APPROVE"]
    rejecters = [o for o, d in first.items() if d == "REJECT"]
    # Quorum is judged in order: once met the transfer is signed and later rejections are refused.
    met = False
    seen: list[frozenset[str]] = []
    for op_id, decision in recorded:
        if decision == "APPROVE":
            seen.append(roles_of[op_id])
        if (oracle(max(m, sum(mins.values()), 2), {r: k for r, k in mins.items() if k}, seen)
                and two_people_of_two_roles(seen)):
            met = True
            break
    with sqlite3.connect(Path(app.config.store_url[len("sqlite:///"):])) as c:
        sigs = c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                         (t.id,)).fetchone()[0]
    view = app.transfers.get(t.id)
    event(f"signed={met}")
    assert (sigs == 1) == met, (m, mins, ops, recorded, view.state)
    assert (view.row["state"] == "SIGNED") == met
    if not met:
        assert view.row["state"] in ("PENDING_APPROVAL", "REJECTED"), view.row["state"]
    assert all(o in roles_of for o in rejecters) and len(approvers) <= len(first)
