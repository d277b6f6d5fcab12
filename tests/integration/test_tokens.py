"""Tokens are known, not guessed: ERC-20 calldata is a token movement only for a contract the
governance registered for the chain id; anything else is a contract call. End to end through a
real daemon and signerctl, the signature checked with eth-account."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import grpc
import pytest
import rlp
from eth_account import Account

from signerd.core import approval
from signerd.cli.errors import CliError
from signerd.cli.verify import rebuild_statement
from signerd.adapters.config import Limits
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private
from tests.support.cli import ctl, key
from tests.support.daemon import Daemon
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.unit.eth_oracle import CHAIN_ID
from tests.support.fixtures import DaemonFactory, in_process_app

USDT = "0xdAC17F958D2ee523a2206206994597C13D831ec7"  # any contract address will do
RECIPIENT = "0x" + "35" * 20
AMOUNT = 1_000 * 10**6  # 1,000.00 USDT at 6 decimals
TRANSFER = "a9059cbb"  # transfer(address,uint256)


def calldata(to: str = RECIPIENT, amount: int = AMOUNT) -> str:
    return ("0x" + TRANSFER + "00" * 12 + to[2:].lower() + amount.to_bytes(32, "big").hex())


def token_tx(nonce: int, contract: str = USDT, **over: Any) -> dict[str, Any]:
    return tx_fields(nonce=nonce, to=contract, value=0, gas=60_000, data=calldata(), **over)


TOKEN_POLICY = f"""
name = "tokens"
max_fee = {{ ETH = 50000000000000000 }}

[[rule]]
name = "ether"
asset = "ETH"
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}

[[rule]]
name = "usdt"
asset = "ERC20:{USDT}"
max_amount = "10000000000"
approvers = 3
roles = {{ investigator = 1, custody_officer = 1, prosecutor = 1 }}
"""


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("tokens")


def test_erc20_calldata_to_an_unregistered_contract_is_a_refused_contract_call(
        daemon: Daemon) -> None:
    """Before: decoded as a token transfer of 1000000000 base units, PENDING_APPROVAL under the
    two-key rule. Now: a contract call, which the two-key template does not allow."""
    w = eth_wallet(daemon)
    e = rpc_error(submit, daemon, w.id, token_tx(0, contract="0x" + "77" * 20))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "contract calls are not allowed by the policy (allow_contract_calls = false)" in \
        e.details()
    e = rpc_error(submit, daemon, w.id, token_tx(0))  # USDT is not registered yet either
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "contract calls" in e.details()


def test_only_the_governance_registers_a_token(daemon: Daemon) -> None:
    r = ctl(daemon, "--json", "token", "set", "--chain-id", str(CHAIN_ID), "--address",
            USDT.lower(), "--symbol", "USDT", "--decimals", "6")
    p = json.loads(r.stdout)
    assert p["kind"] == "token.set" and p["state"] == "PENDING_APPROVAL"
    assert f"register ERC20 token USDT (6 decimals) at {USDT} on chain {CHAIN_ID}" in p["summary"]
    assert json.loads(ctl(daemon, "--json", "token", "list").stdout)["tokens"] == []
    for op in ("admin1", "admin2"):
        ctl(daemon, "--as", op, "proposal", "approve", p["id"], "--key", key(daemon, op),
            "--yes")
    listed = json.loads(ctl(daemon, "--json", "token", "list").stdout)["tokens"]
    assert listed == [{"chain_id": CHAIN_ID, "address": USDT, "standard": "erc20",
                       "symbol": "USDT", "decimals": 6}]
    assert "USDT" in ctl(daemon, "token", "list", "--chain-id", str(CHAIN_ID)).stdout
    assert daemon.admin("platform").ListTokens(pb.ListTokensRequest(chain_id=1)).tokens == []
    e = rpc_error(daemon.admin().SetToken, pb.SetTokenRequest(
        chain_id=CHAIN_ID, address="0x" + "11" * 20, symbol="usdt", decimals=6))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "already the symbol" in e.details()
    e = rpc_error(daemon.admin().SetToken, pb.SetTokenRequest(
        chain_id=CHAIN_ID, address=USDT, symbol="USDT", decimals=6, standard="erc777"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "standard" in e.details()
    e = rpc_error(daemon.admin().SetToken, pb.SetTokenRequest(
        chain_id=CHAIN_ID, address=USDT, symbol="USDT", decimals=6, standard="erc721"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "indivisible" in e.details()


def test_registered_token_transfer_is_judged_by_token_rules_and_signed(daemon: Daemon,
                                                                       capsys) -> None:
    w = eth_wallet(daemon, policy=TOKEN_POLICY)
    t = submit(daemon, w.id, token_tx(1))
    assert t.state == pb.PENDING_APPROVAL
    (out,) = t.movement.outputs
    assert (out.address, out.amount, out.asset) == (RECIPIENT, str(AMOUNT), f"ERC20:{USDT}")
    assert not t.movement.contract_call
    assert "prosecutor x1" in t.requirement  # the token's rule, not the ether one

    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert [(x.chain_id, x.address, x.symbol, x.decimals) for x in st.tokens] == [
        (CHAIN_ID, USDT, "USDT", 6)]
    assert f"send 1,000.00 USDT (1000000000 base units) to {RECIPIENT}" in st.rendered
    assert f"token:           USDT = ERC20 contract {USDT} on chain {CHAIN_ID}" in st.rendered
    rebuilt = rebuild_statement(st, t.id, Decision.APPROVE, limits=Limits())
    assert rebuilt.statement == st.statement

    # A daemon (or anything between it and the operator) telling other token facts: signerctl
    # refuses, and a signature over the lie does not count.
    for lie in ({"symbol": "USDC"}, {"decimals": 18}):
        bad = pb.Statement()
        bad.CopyFrom(st)
        for k, v in lie.items():
            setattr(bad.tokens[0], k, v)
        with pytest.raises(CliError, match="does not match"):
            rebuild_statement(bad, t.id, Decision.APPROVE, limits=Limits())
        mv = rebuilt.movement
        lying = approval.build_statement(
            rebuilt.context, replace(mv, tokens=(replace(mv.tokens[0], **lie),)),
            Decision.APPROVE)
        signature = approval.sign_statement(load_private(key(daemon, "inv2")), lying)
        e = rpc_error(daemon.approval("inv2").SubmitApproval, pb.SubmitApprovalRequest(
            transfer_id=t.id, operator_id="inv2", decision=pb.APPROVE, signature=signature))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not verify" in e.details()
    dropped = pb.Statement()
    dropped.CopyFrom(st)
    del dropped.tokens[:]
    with pytest.raises(CliError, match="does not match"):
        rebuild_statement(dropped, t.id, Decision.APPROVE, limits=Limits())

    # Its entry does not change under it.
    e = rpc_error(daemon.admin().SetToken, pb.SetTokenRequest(
        chain_id=CHAIN_ID, address=USDT, symbol="USDT", decimals=18))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and t.id in e.details()

    r = ctl(daemon, "--as", "inv1", "transfer", "approve", t.id, "--key", key(daemon, "inv1"),
            "--yes")
    assert f"send 1,000.00 USDT (1000000000 base units) to {RECIPIENT}" in r.stdout
    decide(daemon, t.id, "cust1")
    t = decide(daemon, t.id, "pros1")
    assert t.state == pb.SIGNED, t.failure
    raw = bytes.fromhex(t.raw_tx)
    assert Account.recover_transaction(raw) == w.address
    fields = rlp.decode(raw[1:])
    assert raw[0] == 2 and int.from_bytes(fields[0], "big") == CHAIN_ID
    assert fields[5] == bytes.fromhex(USDT[2:]) and fields[7] == bytes.fromhex(calldata()[2:])


def test_token_rules_bound_the_amount(daemon: Daemon) -> None:
    w = eth_wallet(daemon, policy=TOKEN_POLICY)
    big = tx_fields(nonce=2, to=USDT, value=0, gas=60_000,
                    data=calldata(amount=10_000 * 10**6 + 1))
    e = rpc_error(submit, daemon, w.id, big)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"no policy rule covers 10000000001 base units of ERC20:{USDT.lower()}" in e.details()


def test_a_contract_call_the_policy_allows_stays_undecoded(daemon: Daemon) -> None:
    """ERC-20-shaped calldata to an unregistered contract, under a policy allowing contract
    calls with a rule for them: an undecoded call to that contract, never a token transfer."""
    other = "0x" + "77" * 20
    w = eth_wallet(daemon, policy=TOKEN_POLICY.replace(
        'name = "tokens"', 'name = "calls"\nallow_contract_calls = true') + """
[[rule]]
name = "calls"
asset = "ETH"
contract_call = true
approvers = 3
roles = { investigator = 1, custody_officer = 1, judge = 1 }
""")
    t = submit(daemon, w.id, token_tx(3, contract=other))
    (out,) = t.movement.outputs
    assert (out.address.lower(), out.amount, out.asset) == (other, "0", "ETH")
    assert t.movement.contract_call == calldata() and "judge x1" in t.requirement
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert not st.tokens and "(NOT decoded)" in st.rendered and "USDT" not in st.rendered
    assert rebuild_statement(st, t.id, Decision.APPROVE,
                             limits=Limits()).statement == st.statement
    # Registering the contract now would decode the call differently than it was shown.
    e = rpc_error(daemon.admin().SetToken, pb.SetTokenRequest(
        chain_id=CHAIN_ID, address=other, symbol="OTHER", decimals=18))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"is called by live transfer(s) {t.id}" in e.details()


def test_a_registered_token_transfer_executes_on_py_evm(daemon: Daemon) -> None:
    """The signed transfer, mined on py-evm against a minimal ERC-20 deployed at the registered
    address, moves the tokens it was approved to move."""
    from tests.unit.evm_erc20 import mine_token_transfer, token_address

    contract = token_address()
    p = govern(daemon, daemon.admin().SetToken(pb.SetTokenRequest(
        chain_id=CHAIN_ID, address=contract, symbol="TKN", decimals=6)))
    assert p.state == "APPROVED", p.failure
    w = eth_wallet(daemon)  # the two-key template: no contract calls, so it must decode
    t = submit(daemon, w.id, tx_fields(nonce=0, to=contract, value=0, gas=100_000,
                                       data=calldata(amount=250 * 10**6)))
    assert [o.asset for o in t.movement.outputs] == [f"ERC20:{contract}"]
    decide(daemon, t.id, "inv1")
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED, t.failure
    raw = bytes.fromhex(t.raw_tx)
    assert Account.recover_transaction(raw) == w.address
    receipt, balance_of = mine_token_transfer(raw, w.address, 1_000 * 10**6, 10**18)
    assert receipt["status"] == 1
    assert balance_of(RECIPIENT) == 250 * 10**6 and balance_of(w.address) == 750 * 10**6


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    yield from in_process_app(tmp_path_factory.mktemp("tokens-app") / "state")


def test_the_sign_step_refuses_a_call_the_registry_now_decodes_otherwise(app) -> None:
    """Should the registry entry change between submission and signature anyway (a race the
    proposal check cannot see), the sign step decodes with the registry in force, finds other
    token facts than the approved ones, and signs nothing: an authority violation."""
    from signerd.services import ledger as L
    from signerd.services.admin import AdminService
    from signerd.core.errors import AuthorityViolation
    from signerd.core.approval import sign_statement
    from tests.support.governance import app_govern, app_wallet

    view = app_govern(app, AdminService(app).set_token(
        "admin", chain_id=1, address=USDT, symbol="USDT", decimals=6))
    assert view.state == "APPROVED"
    w = app_wallet(app)
    t = app.transfers.submit("platform", w.id, json.dumps(token_tx(0, chainId=1)).encode())
    assert t.movement.tokens and t.movement.tokens[0].symbol == "USDT"
    statement, _, _ = app.transfers.statement(t.id, Decision.APPROVE)
    app.transfers.decide("inv1", t.id, "inv1", Decision.APPROVE,
                         sign_statement(load_private(key_of(app, "inv1")), statement))
    with app.store.read() as tx:
        state = app.ledger.state(tx)
        row, approvals = tx.get_transfer(t.id), tx.approvals(t.id)
        wallet = L.load_wallet(tx, state, w.id)
        job, verdict = app.transfers.signer._job(tx, state, row, wallet, approvals)
        assert job.movement.tokens == t.movement.tokens  # as approved: it goes on
        (entry,) = state.tokens.values()
        moved = replace(state, tokens={entry.key: replace(entry, decimals=18)})
        with pytest.raises(AuthorityViolation, match="token registry decodes its call"):
            app.transfers.signer._job(tx, moved, row, wallet, approvals)


def key_of(app, op: str) -> str:
    from pathlib import Path

    return str(Path(app.config.path).parent / "operators" / f"{op}.key")
