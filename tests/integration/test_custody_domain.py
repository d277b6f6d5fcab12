"""The custody domain end to end: seized-key import and sweep, freezes, category movements,
and the holdings report. Signed output is checked by python-bitcointx and eth-account."""
from __future__ import annotations

import json
import secrets

import grpc
import pytest
from eth_account import Account

from signerd.core.bitcoin.address import address_to_script
from tests.support.daemon import Daemon, init_state
from tests.support.governance import decide, govern
from tests.support.rpc import pb, rpc_error
from tests.support.bitcoin import EXTERNAL, build_psbt, verify_with_bitcointx
from tests.support.ethereum import tx_fields
from tests.support.fixtures import DaemonFactory

MNEMONIC = ("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
            "abandon about")
BIP84_ADDRESS = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"  # m/84'/0'/0'/0/0 of MNEMONIC


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("custody")


def key_count(d: Daemon) -> tuple[int, int]:
    status = d.admin().KeyStatus(pb.KeyStatusRequest())
    wallets = len(d.custody().ListWallets(pb.ListWalletsRequest()).wallets)
    return status.key_count, wallets


def import_mnemonic(d: Daemon, **kw) -> pb.Wallet:
    """A seized key imported through its governance proposal, approved by the demo quorum."""
    req = dict(mnemonic=MNEMONIC, derivation_path="m/84'/0'/0'/0/0", chain=pb.BITCOIN,
               network="mainnet", case_ref="CASE-SEIZED-7", seizure_record="SR-2026-0042")
    req.update(kw)
    p = d.admin().ImportKey(pb.ImportKeyRequest(**req))
    assert p.kind == "wallet.import" and p.state == "PENDING_APPROVAL"
    wallet_id = json.loads(p.body_json)["change"]["wallet"]["id"]
    pending = d.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id))
    assert pending.status == pb.AWAITING_APPROVAL
    assert govern(d, p).state == "APPROVED"
    return d.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id))


def test_seized_mnemonic_import_sweep_and_full_policy_elsewhere(daemon: Daemon) -> None:
    seized = import_mnemonic(daemon)
    assert seized.address == BIP84_ADDRESS  # the BIP-84 vector's address: the right key went in
    assert seized.category == pb.SEIZED and seized.keys[0].hsm_held
    custody = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.BITCOIN, network="mainnet", category=pb.SEIZED, case_ref="CASE-SEIZED-7"))
    # Sweep to a custody wallet of the same category: one custody officer is enough.
    psbt, prev = build_psbt(seized, [80_000, 20_000],
                            [(address_to_script(custody.address, "mainnet"), 99_000)],
                            network="mainnet")
    t = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=seized.id, psbt=psbt.to_base64().encode()))
    assert "custody_officer x1" in t.requirement and t.requirement.startswith("1 approver")
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED and verify_with_bitcointx(t.raw_tx, prev, "mainnet") == 2
    # The same wallet sending anywhere else needs the full policy.
    psbt2, _ = build_psbt(seized, [50_000], [(EXTERNAL, 49_000)], network="mainnet")
    t2 = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=seized.id, psbt=psbt2.to_base64().encode()))
    t2 = decide(daemon, t2.id, "cust1")
    assert t2.state == pb.PENDING_APPROVAL and not t2.raw_tx
    assert "investigator" in t2.remaining and "prosecutor" in t2.remaining


def test_a_one_officer_sweep_cannot_pay_a_large_fee(daemon: Daemon) -> None:
    """The seized-sweep template caps the fee (2,500,000 sat) and the fee rate (200 sat/vB):
    before, one custody officer could approve a sweep paying 495,000,000 sat in fees."""
    seized = import_mnemonic(daemon, derivation_path="m/84'/0'/0'/0/9", case_ref="CASE-FEE")
    assert seized.template == "seized-sweep"
    custody = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.BITCOIN, network="mainnet", category=pb.SEIZED, case_ref="CASE-FEE"))
    to_custody = address_to_script(custody.address, "mainnet")

    def sweep(amount: int, keep: int) -> tuple[pb.Transfer, object]:
        psbt, prev = build_psbt(seized, [amount], [(to_custody, keep)], network="mainnet")
        return daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=seized.id, psbt=psbt.to_base64().encode())), prev

    e = rpc_error(sweep, 500_000_000, 5_000_000)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fee 495000000 sat (4.95 BTC) exceeds max_fee.BTC 2500000 sat (0.025 BTC)" in e.details()
    e = rpc_error(sweep, 1_000_000, 960_000)  # 40,000 sat for about 110 vB
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "exceeds max_fee_rate 200" in e.details()
    t, prev = sweep(1_000_000, 998_000)
    assert t.movement.fee == "2000" and t.requirement.startswith("1 approver")
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED and verify_with_bitcointx(t.raw_tx, prev, "mainnet") == 1


@pytest.mark.parametrize("kw,needle", [
    (dict(mnemonic=MNEMONIC.replace("about", "abandon")), "checksum"),
    (dict(mnemonic=MNEMONIC.replace("about", "aboutt")), "word"),
    (dict(mnemonic=MNEMONIC, derivation_path="84/0/0"), "derivation path"),
    (dict(mnemonic=None, hex="ff" * 32), "out of range"),
    (dict(mnemonic=None, hex="00" * 32), "out of range"),
    (dict(mnemonic=None, hex="abc"), "64 hexadecimal"),
    (dict(mnemonic=None, wif="KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9e"), "checksum"),
    (dict(mnemonic=None, wif="cMahea7zqjxrtgAbB7LSGbcQUr1uX1ojuat9jZodMN87JcbXMTcA"),
     "not a mainnet key"),
    (dict(seizure_record=""), "seizure_record"),
])
def test_bad_seized_keys_are_refused_and_nothing_is_stored(daemon: Daemon, kw: dict,
                                                           needle: str) -> None:
    before = key_count(daemon)
    if kw.get("mnemonic", "") is None:
        kw = {k: v for k, v in kw.items() if k != "mnemonic"}
        kw.setdefault("derivation_path", "")
        req = dict(chain=pb.BITCOIN, network="mainnet", case_ref="CASE-BAD",
                   seizure_record="SR-1", **kw)
        e = rpc_error(daemon.admin().ImportKey, pb.ImportKeyRequest(**req))
    else:
        e = rpc_error(import_mnemonic, daemon, **kw)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.details()
    assert MNEMONIC.split()[0] not in e.details()  # the secret never comes back
    assert key_count(daemon) == before


def test_importing_the_same_key_twice_is_refused(daemon: Daemon) -> None:
    import_mnemonic(daemon, derivation_path="m/84'/0'/0'/0/5", case_ref="CASE-TWICE")
    e = rpc_error(import_mnemonic, daemon, derivation_path="m/84'/0'/0'/0/5",
                  case_ref="CASE-TWICE")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "already held" in e.details()


def test_frozen_wallet_refuses_and_signs_after_unfreeze(daemon: Daemon) -> None:
    w = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.CONFISCATED, case_ref="CASE-FRZ"))
    t = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(json=json.dumps(tx_fields(chainId=1)))))
    decide(daemon, t.id, "inv1")
    e = rpc_error(daemon.admin().FreezeWallet, pb.FreezeWalletRequest(wallet_id=w.id))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "order" in e.details()
    frozen = daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                                order_ref="ORDER-2026-17"))
    assert frozen.status == pb.FROZEN and frozen.freeze_order == "ORDER-2026-17"
    got = daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))
    assert frozen.policy_version == got.policy_version >= 1  # as GetWallet shows it
    e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(json=json.dumps(
            tx_fields(chainId=1, nonce=1)))))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "frozen" in e.details()
    t = decide(daemon, t.id, "cust1")  # quorum is recorded, but nothing is signed
    assert t.state == pb.APPROVED and not t.raw_tx
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref="ORDER-2026-18"))
    assert p.state == "PENDING_APPROVAL"  # one admin alone unfreezes nothing
    t = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert t.state == pb.APPROVED and not t.raw_tx
    assert govern(daemon, p).state == "APPROVED"
    t = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert t.state == pb.SIGNED
    assert Account.recover_transaction(bytes.fromhex(t.raw_tx)) == w.address


def test_category_movement_needs_legal_basis_and_its_roles(daemon: Daemon) -> None:
    from signerd.daemon import DEMO_POLICIES

    policy = DEMO_POLICIES["category-movement.toml"]
    src = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-MOVE",
        template="category-movement"))
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=src.id)).toml == policy
    dst = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.CONFISCATED, case_ref="CASE-MOVE"))
    fields = json.dumps(tx_fields(chainId=1, to=dst.address))
    sub = daemon.custody().SubmitTransfer
    e = rpc_error(sub, pb.SubmitTransferRequest(wallet_id=src.id,
                                                ethereum=pb.EthereumTransaction(json=fields)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "seized_to_confiscated" in e.details()
    e = rpc_error(sub, pb.SubmitTransferRequest(wallet_id=src.id, category_change=
                                                "seized_to_confiscated",
                                                ethereum=pb.EthereumTransaction(json=fields)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "legal basis" in e.details()
    assert "COURT; CASE NUMBER; YYYY-MM-DD" in e.details()
    t = sub(pb.SubmitTransferRequest(wallet_id=src.id, category_change="seized_to_confiscated",
                                     legal_basis="Regional Court Berlin; 4 K 12/26; 2026-11-20",
                                     ethereum=pb.EthereumTransaction(json=fields)))
    assert "judge x1" in t.requirement and "prosecutor x1" in t.requirement
    decide(daemon, t.id, "judge1")
    decide(daemon, t.id, "pros1")
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED
    assert Account.recover_transaction(bytes.fromhex(t.raw_tx)) == src.address


@pytest.mark.parametrize(("basis", "why"), [
    (".", "1 part separated by ';', not 3"),
    ("Judgment 4 K 12/26, final", "1 part separated by ';', not 3"),
    ("Regional Court Berlin; ; 2026-11-20", "the case number is empty"),
    ("Regional Court Berlin; 4 K 12/26; 20.11.2026", "the date of the decision"),
    ("Regional Court Berlin; 4 K 12/26; 2999-01-01", "after today"),
])
def test_a_legal_basis_is_a_court_reference(daemon: Daemon, basis: str, why: str) -> None:
    """Court; case number; date of the decision: anything else is refused at submission
    (before, any text passed, "." included), naming the field and the expected form."""
    src = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-BASIS",
        template="category-movement"))
    dst = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.CONFISCATED, case_ref="CASE-BASIS"))
    e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=src.id, category_change="seized_to_confiscated", legal_basis=basis,
        ethereum=pb.EthereumTransaction(json=json.dumps(tx_fields(chainId=1, to=dst.address)))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert e.details().startswith("legal_basis: ") and why in e.details()
    if "after today" not in why:
        assert "'COURT; CASE NUMBER; YYYY-MM-DD'" in e.details()


WALLET_BASES = [
    ("seizure order 7 of the prosecutor", "1 part separated by ';', not 3"),
    ("Local Court Munich; ; 2026-03-02", "the case number is empty"),
    ("Local Court Munich; ER VI Gs 311/26; 02.03.2026", "the date of the decision"),
    ("Local Court Munich; ER VI Gs 311/26; 2999-01-01", "after today"),
]


def seized_hex_import(basis: str, case: str) -> pb.ImportKeyRequest:
    return pb.ImportKeyRequest(hex=secrets.token_bytes(32).hex(), chain=pb.BITCOIN,
                               network="regtest", case_ref=case, seizure_record="SR-BASIS",
                               legal_basis=basis)


@pytest.mark.parametrize(("basis", "why"), WALLET_BASES)
def test_a_wallets_legal_basis_is_a_court_reference(daemon: Daemon, basis: str, why: str
                                                    ) -> None:
    """A created wallet's and an imported seized key's legal basis, when given, is the court
    decision in the same form as a transfer's: anything else is refused before a key is made
    or imported, naming the field and the form."""
    before = key_count(daemon)
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-WBASIS",
        legal_basis=basis))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert e.details().startswith("legal_basis: ") and why in e.details(), e.details()
    e = rpc_error(daemon.admin().ImportKey, seized_hex_import(basis, "CASE-WBASIS"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert e.details().startswith("legal_basis: ") and why in e.details(), e.details()
    if "after today" not in why:
        assert "'COURT; CASE NUMBER; YYYY-MM-DD'" in e.details()
    assert key_count(daemon) == before  # nothing generated, imported or stored


def test_a_wallets_legal_basis_is_stored_in_canonical_form(daemon: Daemon) -> None:
    canonical = "Local Court Munich; ER VI Gs 311/26; 2026-03-02"
    spaced = " Local Court Munich ;ER VI Gs 311/26;  2026-03-02 "
    w = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-WBASIS",
        legal_basis=spaced))
    assert w.legal_basis == canonical
    assert daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).legal_basis == \
        canonical
    p = daemon.admin().ImportKey(seized_hex_import(spaced, "CASE-WBASIS"))
    record = json.loads(p.body_json)["change"]["wallet"]
    assert record["legal_basis"] == canonical  # what the governance quorum approves
    assert govern(daemon, p).state == "APPROVED"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(
        wallet_id=record["id"])).legal_basis == canonical
    # None given stays allowed: no legal basis, stored as none.
    plain = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-WBASIS",
        legal_basis="  "))
    assert plain.legal_basis == ""


def test_default_template_leaves_category_movements_to_the_judiciary(daemon: Daemon) -> None:
    """The two-key template no longer lets an investigator and a custody officer move seized
    assets into the confiscated category: a judge, a prosecutor and a custody officer must, and
    the statement shows the legal basis part by part."""
    src = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CASE-VERDICT"))
    assert src.template == "two-key"
    dst = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.CONFISCATED, case_ref="CASE-VERDICT"))
    t = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=src.id, category_change="seized_to_confiscated",
        legal_basis=" Regional Court Berlin ;4 K 12/26;2026-11-20",
        ethereum=pb.EthereumTransaction(json=json.dumps(tx_fields(chainId=1, to=dst.address)))))
    assert t.legal_basis == "Regional Court Berlin; 4 K 12/26; 2026-11-20"  # canonical form
    assert "judge x1" in t.requirement and "prosecutor x1" in t.requirement
    assert "investigator" not in t.requirement
    st = daemon.approval("judge1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert ("legal basis:     Regional Court Berlin; 4 K 12/26; 2026-11-20\n"
            "  court:         Regional Court Berlin\n"
            "  case number:   4 K 12/26\n"
            "  decided on:    2026-11-20\n") in st.rendered
    decide(daemon, t.id, "inv1")
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.PENDING_APPROVAL and "judge" in t.remaining  # two keys are not enough
    decide(daemon, t.id, "judge1")
    t = decide(daemon, t.id, "pros1")
    assert t.state == pb.SIGNED
    assert Account.recover_transaction(bytes.fromhex(t.raw_tx)) == src.address


def test_report_lists_exactly_what_was_done(daemon: Daemon) -> None:
    doc = json.loads(daemon.audit().Report(pb.ReportRequest(case_ref="CASE-MOVE")).json)
    assert "on-chain balances" in doc["not_known"]
    seized = doc["categories"]["seized"]["cases"]["CASE-MOVE"]
    confiscated = doc["categories"]["confiscated"]["cases"]["CASE-MOVE"]
    assert len(seized["wallets"]) == 1 and len(confiscated["wallets"]) == 1
    (signed,) = seized["signed_transfers"]
    assert signed["category_change"] == "seized_to_confiscated"
    assert seized["signed_outflows"]["ETH"] == str(10**15)
    assert seized["pending_transfers"] == [] and confiscated["signed_transfers"] == []
    frz = json.loads(daemon.audit().Report(pb.ReportRequest(case_ref="CASE-FRZ")).json)
    case = frz["categories"]["confiscated"]["cases"]["CASE-FRZ"]
    assert [f["action"] for f in case["freezes"]] == ["frozen", "unfrozen"]
    assert case["freezes"][0]["order_ref"] == "ORDER-2026-17"
    assert len(case["signed_transfers"]) == 1
    imported = json.loads(daemon.audit().Report(pb.ReportRequest(
        category=pb.SEIZED, case_ref="CASE-SEIZED-7")).json)
    c7 = imported["categories"]["seized"]["cases"]["CASE-SEIZED-7"]
    assert any("SR-2026-0042" in w["origin"] for w in c7["wallets"])
    assert len(c7["signed_transfers"]) == 1 and len(c7["pending_transfers"]) == 1
