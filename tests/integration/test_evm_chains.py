"""EVM chains by name, through a real daemon: signerd signs only on a chain id the governance
registered, names each chain's native coin by the registry's symbol (so an ETH tier never
governs BNB), binds the entry in the approval statement, and nothing but a chain.set approved
by the governance quorum adds a chain. Signatures checked with eth-account."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import grpc
import pytest
import rlp
from eth_account import Account

from signerd.adapters.config import Limits
from signerd.cli.errors import CliError
from signerd.cli.verify import rebuild_statement
from signerd.core.model import Decision, EvmChain
from tests.support.attacks import (StoreWriter, append_forged_entry, forged_proposal_doc,
                                   sqlite_writer, violation_metric)
from tests.support.chains import ETHER_RULES, TIERS
from tests.support.cli import ctl, key
from tests.support.daemon import Daemon
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory, in_process_app
from tests.support.governance import decide, decide_proposal, govern
from tests.support.rpc import pb, rpc_error
from tests.unit.eth_oracle import CHAIN_ID

RECIPIENT = "0x" + "35" * 20
ETHER_ONLY = ETHER_RULES.replace('name = "tiers"', 'name = "ether-only"')


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("chains")


def test_the_demo_genesis_registers_the_chains_by_name(daemon: Daemon) -> None:
    listed = json.loads(ctl(daemon, "--json", "chain", "list").stdout)["chains"]
    by_id = {c["chain_id"]: c for c in listed}
    assert by_id[1] == {"chain_id": 1, "name": "Ethereum", "symbol": "ETH", "decimals": 18}
    assert by_id[56] == {"chain_id": 56, "name": "BNB Smart Chain", "symbol": "BNB",
                         "decimals": 18}
    assert by_id[137]["symbol"] == "POL"
    assert {11155111, 17000, 1337, 31337, CHAIN_ID} <= set(by_id)
    assert "BNB Smart Chain" in ctl(daemon, "chain", "list", "--chain-id", "56").stdout
    assert [c.chain_id for c in daemon.admin("platform").ListChains(
        pb.ListChainsRequest(chain_id=97)).chains] == []


def test_a_wallet_on_an_unregistered_chain_is_refused_naming_the_chain_id(
        daemon: Daemon) -> None:
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID, 97], category=pb.SEIZED, case_ref="C-97"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("chain_ids: chain id 97 is not in the chain registry"), \
        e.details()
    r = ctl(daemon, "wallet", "create", "--chain", "ethereum", "--chain-id", "97",
            "--category", "seized", "--case", "C-97", ok=False)
    assert r.returncode != 0 and "chain id 97 is not in the chain registry" in r.stderr


def test_one_admin_alone_cannot_add_a_chain(daemon: Daemon) -> None:
    r = ctl(daemon, "--json", "chain", "set", "--chain-id", "97", "--name", "BNB Testnet",
            "--symbol", "TBNB", "--decimals", "18")
    p = json.loads(r.stdout)
    assert p["kind"] == "chain.set" and p["state"] == "PENDING_APPROVAL"
    assert p["summary"] == "register chain 97 as BNB Testnet, native coin TBNB (18 decimals)"
    # One admin approves: the governance quorum (two admins) is not met, nothing changes.
    p1 = decide_proposal(daemon, p["id"], "admin1")
    assert p1.state == "PENDING_APPROVAL"
    assert 97 not in {c.chain_id for c in daemon.admin().ListChains(
        pb.ListChainsRequest()).chains}
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[97], category=pb.SEIZED, case_ref="C-97"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The second admin: applied, and the chain is usable.
    p2 = decide_proposal(daemon, p["id"], "admin2")
    assert p2.state == "APPROVED", p2.failure
    w = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[97], category=pb.SEIZED, case_ref="C-97"))
    assert list(w.chain_ids) == [97]
    # Bad fields are refused at once, naming the field.
    for bad, field in ((dict(symbol="tbnb"), "symbol"), (dict(name=""), "name"),
                       (dict(chain_id=0), "chain_id"), (dict(symbol="BTC"), "symbol")):
        req = dict(chain_id=98, name="X", symbol="X", decimals=18, **{})
        req.update(bad)
        e = rpc_error(daemon.admin().SetChain, pb.SetChainRequest(**req))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details().startswith(field + ":"), e.details()


def test_a_bnb_transfer_is_judged_by_the_bnb_rule_not_the_ether_one(daemon: Daemon) -> None:
    w = eth_wallet(daemon, chain_ids=(1, 56), policy=TIERS)
    eth = submit(daemon, w.id, tx_fields(nonce=0, chainId=1, to=RECIPIENT, value=10**18))
    assert [(o.asset, o.amount) for o in eth.movement.outputs] == [("ETH", str(10**18))]
    assert "judge" not in eth.requirement, eth.requirement  # the ether rule
    bnb = submit(daemon, w.id, tx_fields(nonce=0, chainId=56, to=RECIPIENT, value=10**18))
    assert [(o.asset, o.amount) for o in bnb.movement.outputs] == [("BNB", str(10**18))]
    assert bnb.movement.fee_asset == "BNB"
    assert (bnb.movement.native.name, bnb.movement.native.symbol) == ("BNB Smart Chain", "BNB")
    assert "judge x1" in bnb.requirement and "3 approvers" in bnb.requirement, bnb.requirement

    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=bnb.id, decision=pb.APPROVE))
    assert (st.native.chain_id, st.native.name, st.native.symbol, st.native.decimals) == (
        56, "BNB Smart Chain", "BNB", 18)
    assert "BNB Smart Chain, chain id 56, native coin BNB" in st.rendered
    assert (f"send 1.000000000000000000 BNB (1000000000000000000 base units) to {RECIPIENT}"
            in st.rendered)
    assert b'"native":{"chain_id":"56","decimals":"18","name":"BNB Smart Chain",' \
           b'"symbol":"BNB"}' in st.statement
    rebuilt = rebuild_statement(st, bnb.id, Decision.APPROVE, limits=Limits())
    assert rebuilt.statement == st.statement
    # A daemon (or anything in between) telling another chain entry: signerctl refuses.
    for lie in ({"symbol": "ETH"}, {"name": "Ethereum"}, {"decimals": 8}):
        bad = pb.Statement()
        bad.CopyFrom(st)
        for k, v in lie.items():
            setattr(bad.native, k, v)
        with pytest.raises(CliError, match="does not match"):
            rebuild_statement(bad, bnb.id, Decision.APPROVE, limits=Limits())
    dropped = pb.Statement()
    dropped.CopyFrom(st)
    dropped.ClearField("native")
    with pytest.raises(CliError, match="does not match"):
        rebuild_statement(dropped, bnb.id, Decision.APPROVE, limits=Limits())

    # Its entry does not change under it.
    e = rpc_error(daemon.admin().SetChain, pb.SetChainRequest(
        chain_id=56, name="BNB Chain", symbol="BNB", decimals=18))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and bnb.id in e.details()

    # Two approvals, which the ether rule would take, do not sign it; the judge's does.
    r = ctl(daemon, "--as", "inv1", "transfer", "approve", bnb.id, "--key", key(daemon, "inv1"),
            "--yes")
    assert "BNB Smart Chain, chain id 56, native coin BNB" in r.stdout
    t = decide(daemon, bnb.id, "cust1")
    assert t.state == pb.PENDING_APPROVAL
    t = decide(daemon, bnb.id, "judge1")
    assert t.state == pb.SIGNED, t.failure
    raw = bytes.fromhex(t.raw_tx)
    assert Account.recover_transaction(raw) == w.address
    fields = rlp.decode(raw[1:])
    assert raw[0] == 2 and int.from_bytes(fields[0], "big") == 56
    assert int.from_bytes(fields[6], "big") == 10**18

    # The holdings report names the chain and the coin.
    report = ctl(daemon, "--as", "auditor", "report", "--case", "CASE-ETH").stdout
    assert "BNB Smart Chain (56) BNB: 1.000000000000000000 BNB" in report, report
    assert (f"on BNB Smart Chain (56): send 1.000000000000000000 BNB (1000000000000000000 base "
            f"units) to {RECIPIENT}") in report, report
    doc = json.loads(ctl(daemon, "--as", "auditor", "--json", "report", "--case",
                         "CASE-ETH").stdout)
    (case,) = [c for cat in doc["categories"].values() for ref, c in cat["cases"].items()
               if ref == "CASE-ETH"]
    row = case["outflows_by_chain"]["BNB Smart Chain (56) BNB"]
    assert (row["chain_id"], row["asset"], row["amount"], row["decimals"]) == (
        56, "BNB", str(10**18), 18)
    assert "Ethereum (1), BNB Smart Chain (56)" in {", ".join(x["chains"])
                                                    for x in case["wallets"]}


def test_a_policy_with_only_ether_rules_denies_bnb(daemon: Daemon) -> None:
    w = eth_wallet(daemon, chain_ids=(1, 56, 137), policy=ETHER_ONLY)
    ok = submit(daemon, w.id, tx_fields(nonce=0, chainId=1, to=RECIPIENT))
    assert ok.state == pb.PENDING_APPROVAL
    for chain_id, coin in ((56, "BNB"), (137, "POL")):
        e = rpc_error(submit, daemon, w.id, tx_fields(nonce=0, chainId=chain_id, to=RECIPIENT))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert coin in e.details(), e.details()


# ---------------------------------------------------------------------------- in process


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    yield from in_process_app(tmp_path_factory.mktemp("chains-app") / "state")


def test_submission_and_the_sign_step_use_the_registry_in_force(app, monkeypatch) -> None:
    """A wallet allowed on a chain the registry does not name (one made before the registry,
    on a ledger whose genesis has none) submits nothing on it: INVALID_ARGUMENT naming the chain
    id. And should the registry differ at the sign step from what the approvals saw (no entry,
    or another entry), the sign step signs nothing: an authority violation."""
    from signerd.core.errors import AuthorityViolation, InvalidArgument
    from signerd.core.approval import sign_statement
    from signerd.adapters.key_files import load_private
    from signerd.services import ledger as L
    from tests.support.governance import app_wallet

    w = app_wallet(app)  # chain id 1
    real_state = app.ledger.state

    def without_chain_1(tx: Any) -> Any:
        s = real_state(tx)
        return replace(s, chains={k: v for k, v in s.chains.items() if k != 1})

    monkeypatch.setattr(app.ledger, "state", without_chain_1)
    payload = json.dumps(tx_fields(nonce=0, chainId=1)).encode()
    with pytest.raises(InvalidArgument, match="chainId: chain id 1 is not in the chain registry"):
        app.transfers.submit("platform", w.id, payload)
    monkeypatch.undo()

    t = app.transfers.submit("platform", w.id, payload)
    assert t.movement.native is not None and t.movement.native.name == "Ethereum"
    statement, _, _ = app.transfers.statement(t.id, Decision.APPROVE)
    folder = os.path.dirname(app.config.path)
    app.transfers.decide("inv1", t.id, "inv1", Decision.APPROVE,
                         sign_statement(load_private(f"{folder}/operators/inv1.key"), statement))
    with app.store.read() as tx:
        state = app.ledger.state(tx)
        row, approvals = tx.get_transfer(t.id), tx.approvals(t.id)
        wallet = L.load_wallet(tx, state, w.id)
        job, _ = app.transfers.signer._job(tx, state, row, wallet, approvals)
        assert job.movement.native == state.chains[1]  # as approved: it goes on
        gone = replace(state, chains={k: v for k, v in state.chains.items() if k != 1})
        with pytest.raises(AuthorityViolation, match="chain id 1 is not in the chain registry"):
            app.transfers.signer._job(tx, gone, row, wallet, approvals)
        for other in (replace(state.chains[1], name="Mainnet"),
                      replace(state.chains[1], symbol="WETH"),
                      replace(state.chains[1], decimals=9)):
            moved = replace(state, chains={**state.chains, 1: other})
            with pytest.raises(AuthorityViolation, match="chain registry names chain 1 "
                                                         "otherwise"):
                app.transfers.signer._job(tx, moved, row, wallet, approvals)


# ---------------------------------------------------------------------------- store writers


@pytest.fixture
def attacked(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("chains-attacked")


def test_a_chains_row_written_into_the_store_makes_no_chain_usable(attacked: Daemon) -> None:
    """A DBA adds chain 97: a ``chains`` table with a row, then a forged chain.set entry in the
    authority ledger (approvals signed with the writer's own key, hashed and linked as signerd
    would). Neither makes chain 97 usable: the registry is what the sealed, quorum-approved
    ledger proves, and a ledger that does not verify serves nothing."""
    from signerd.core.operator_keys import generate

    d = attacked
    db: StoreWriter = sqlite_writer(d)
    db.run(("CREATE TABLE IF NOT EXISTS chains (chain_id INTEGER PRIMARY KEY, name TEXT, "
            "symbol TEXT, decimals INTEGER)", ()),
           ("INSERT INTO chains VALUES (97, 'BNB Testnet', 'TBNB', 18)", ()))
    e = rpc_error(d.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[97], category=pb.SEIZED, case_ref="C-97"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "chain id 97" in e.details()
    assert 97 not in {c.chain_id for c in d.admin().ListChains(pb.ListChainsRequest()).chains}

    # The forged ledger entry.
    doc = forged_proposal_doc(d, "p_" + "97" * 10, "chain.set",
                              {"chain": {"chain_id": 97, "name": "BNB Testnet",
                                         "symbol": "TBNB", "decimals": 18}, "old_chain": {}})
    before = violation_metric(d, "ledger")
    entry = append_forged_entry(db, doc, generate())
    e = rpc_error(d.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[97], category=pb.SEIZED, case_ref="C-97"))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert f"authority ledger entry {entry.seq}" in e.details()
    assert violation_metric(d, "ledger") >= before + 1
    assert db.one("SELECT COUNT(*) AS n FROM wallets")["n"] == 0
