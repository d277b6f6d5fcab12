"""Bitcoin end to end with the real daemon and SoftHSM: every wallet type, a 2-of-3 across two
daemons, and adversarial PSBTs. Final transactions are verified input by input with
python-bitcointx's script interpreter, not with signerd's code."""
from __future__ import annotations

import base64
import sqlite3
from dataclasses import replace

import grpc
import pytest
from bitcointx.core import CTransaction
from bitcointx.core.script import CScript, CScriptWitness
from bitcointx.core.scripteval import (SCRIPT_VERIFY_CLEANSTACK, SCRIPT_VERIFY_DERSIG,
                                       SCRIPT_VERIFY_LOW_S, SCRIPT_VERIFY_NULLDUMMY,
                                       SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_P2SH,
                                       SCRIPT_VERIFY_STRICTENC, SCRIPT_VERIFY_WITNESS,
                                       SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, VerifyScript)
import coincurve

from signerd.core.bitcoin.address import address_to_script
from signerd.core.bitcoin.psbt import Psbt, PsbtInput, PsbtOutput, parse_psbt
from signerd.core.bitcoin.script import p2wpkh_script
from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from tests.support.daemon import Daemon, init_state
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.bitcoin import (EXTERNAL, approve_both, approved, build_psbt, funding, submit,
                                   verify_with_bitcointx, wallet)
from tests.support.fixtures import DaemonFactory

_cold = iter(range(1, 10**6))


def cold_key() -> bytes:
    """A fresh external cosigner key: a key never serves two wallets, cold keys included."""
    return coincurve.PrivateKey(b"\x09" * 28 + next(_cold).to_bytes(4, "big")).public_key.format()


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("btc")


def scripts_for(w: pb.Wallet) -> dict:
    from signerd.core.bitcoin.descriptor import parse_descriptor

    desc = parse_descriptor(w.descriptor, require_checksum=True)
    out: dict = {}
    if w.script_type == pb.P2SH_P2WPKH:
        from signerd.core.bitcoin.script import p2sh_p2wpkh_scripts

        out["redeem"] = p2sh_p2wpkh_scripts(desc.keys[0].pubkey)[1]
    if w.script_type == pb.P2WSH_SORTEDMULTI:
        out["wscript"] = desc.witness_script()
    return out


@pytest.mark.parametrize("script_type,kw", [
    (pb.P2WPKH, {}),
    (pb.P2SH_P2WPKH, {}),
    (pb.P2WSH_SORTEDMULTI, {"threshold": 2, "hsm_keys": 2, "cosigners": None}),
])
@pytest.mark.parametrize("utxo", ["non_witness", "both"])
def test_each_wallet_type_signs_after_quorum_and_verifies(daemon: Daemon, script_type: int,
                                                          kw: dict, utxo: str) -> None:
    if "cosigners" in kw:
        kw = {**kw, "cosigners": [cold_key().hex()]}
    w = wallet(daemon, script_type, **kw)
    psbt, prev = build_psbt(w, [60_000, 40_000], [(EXTERNAL, 70_000),
                                                  (address_to_script(w.address, "regtest"),
                                                   29_000)], utxo=utxo, **scripts_for(w))
    t = submit(daemon, w, psbt, b64=utxo != "both")
    assert t.state == pb.PENDING_APPROVAL
    outs = {(o.amount, o.is_change) for o in t.movement.outputs}
    assert ("70000", False) in outs and ("29000", True) in outs and t.movement.fee == "1000"
    t = approve_both(daemon, t)
    assert t.state == pb.SIGNED and t.raw_tx and t.psbt
    assert verify_with_bitcointx(t.raw_tx, prev) == 2
    final = parse_psbt(base64.b64decode(t.psbt))
    assert all(i.final_scriptwitness for i in final.inputs)


@pytest.mark.parametrize("script_type,kw", [
    (pb.P2WPKH, {}),
    (pb.P2SH_P2WPKH, {}),
    (pb.P2WSH_SORTEDMULTI, {"threshold": 2, "hsm_keys": 2, "cosigners": None}),
])
def test_witness_utxo_alone_is_refused_for_each_wallet_type(daemon: Daemon, script_type: int,
                                                            kw: dict) -> None:
    """A segwit v0 input carrying only its witness UTXO could understate its amount (see the
    attack above): signerd signs no input without its full previous transaction."""
    if "cosigners" in kw:
        kw = {**kw, "cosigners": [cold_key().hex()]}
    w = wallet(daemon, script_type, **kw)
    psbt, _ = build_psbt(w, [60_000, 40_000], [(EXTERNAL, 70_000),
                                               (address_to_script(w.address, "regtest"), 29_000)],
                         utxo="witness", **scripts_for(w))
    e = rpc_error(submit, daemon, w, psbt)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == ("input 0: the full previous transaction (non_witness_utxo) is "
                           "required for every input signerd signs, so the fee shown is the fee "
                           "paid")
    assert not daemon.custody().ListTransfers(pb.ListTransfersRequest(wallet_id=w.id)).transfers


def test_one_thousand_input_psbt_is_signed(daemon: Daemon) -> None:
    w = wallet(daemon)
    psbt, prev = build_psbt(w, [1_000] * 1000, [(EXTERNAL, 900_000)], one_funding_each=True)
    t = approve_both(daemon, submit(daemon, w, psbt))
    assert t.state == pb.SIGNED and len(t.movement.digests) == 1000
    assert verify_with_bitcointx(t.raw_tx, prev) == 1000


def test_two_of_three_across_two_daemons(daemon: Daemon, tmp_path) -> None:
    """Daemon A and daemon B each hold one key share in their own token; a cold key is third."""
    other = Daemon(init_state(tmp_path / "b")).start()
    cold = cold_key()
    try:
        share_a = daemon.custody().CreateKeyShare(pb.CreateKeyShareRequest(
            category=pb.CONFISCATED, case_ref="CASE-X"))
        share_b = other.custody().CreateKeyShare(pb.CreateKeyShareRequest(
            category=pb.CONFISCATED, case_ref="CASE-X"))
        wa = approved(daemon, daemon.custody().CreateWallet(pb.CreateWalletRequest(
            chain=pb.BITCOIN, network="regtest", category=pb.CONFISCATED, case_ref="CASE-X",
            script_type=pb.P2WSH_SORTEDMULTI, threshold=2, hsm_key_ids=[share_a.key_id],
            cosigners=[share_b.public_key.hex(), cold.hex()])))
        wb = approved(other, other.custody().CreateWallet(pb.CreateWalletRequest(
            chain=pb.BITCOIN, network="regtest", category=pb.CONFISCATED, case_ref="CASE-X",
            script_type=pb.P2WSH_SORTEDMULTI, threshold=2, hsm_key_ids=[share_b.key_id],
            cosigners=[share_a.public_key.hex(), cold.hex()])))
        assert wa.address == wb.address and wa.descriptor == wb.descriptor
        psbt, prev = build_psbt(wa, [100_000], [(EXTERNAL, 99_000)], **scripts_for(wa))
        ta = approve_both(daemon, submit(daemon, wa, psbt))
        assert ta.state == pb.SIGNED and not ta.raw_tx  # one share of two: not final yet
        half = parse_psbt(base64.b64decode(ta.psbt))
        assert len(half.inputs[0].partial_sigs) == 1
        tb = approve_both(other, submit(other, wb, half))
        assert tb.state == pb.SIGNED and tb.raw_tx
        assert verify_with_bitcointx(tb.raw_tx, prev) == 1
    finally:
        other.stop()


def _signatures(d: Daemon, transfer_id: str) -> int:
    with sqlite3.connect(d.state / "signerd.db") as c:
        return c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                         (transfer_id,)).fetchone()[0]


MAX_FEE_1000 = """
name = "two-key, fee at most 1000 sat"
max_fee = 1000

[[rule]]
name = "two-key"
asset = "*"
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""


def test_understated_witness_amounts_cannot_hide_the_fee(daemon: Daemon) -> None:
    """CVE-2020-14199: a segwit v0 digest commits only to the amount of its own input. T1 claims
    input 1 is worth 1,000 sat (a witness UTXO alone), T2 replaces it with the same transaction
    and claims the same of input 0; each shows a fee of 500 sat, under the policy's max_fee, and
    the signature of input 0 from T1 with that of input 1 from T2 make a valid transaction that
    pays 99,500 sat in fees. signerd refuses an input it signs without its full previous
    transaction, so neither transfer exists."""
    w = wallet(daemon)
    set_policy(daemon, w.id, MAX_FEE_1000)
    spk = address_to_script(w.address, "regtest")
    honest, prev = build_psbt(w, [100_000, 100_000], [(EXTERNAL, 60_000), (spk, 40_500)],
                              utxo="both")

    def understating(i: int) -> Psbt:
        return honest.with_input(i, replace(honest.inputs[i], non_witness_utxo=None,
                                            witness_utxo=TxOut(1_000, spk)))

    try:
        t1 = submit(daemon, w, understating(1))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert e.details().startswith(
            "input 1: the full previous transaction (non_witness_utxo) is required"), e.details()
        e = rpc_error(submit, daemon, w, understating(0))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details().startswith("input 0: the full previous transaction"), e.details()
        listed = daemon.custody().ListTransfers(pb.ListTransfersRequest(wallet_id=w.id))
        assert not listed.transfers
        with sqlite3.connect(daemon.state / "signerd.db") as c:
            assert c.execute("SELECT COUNT(*) FROM signatures s JOIN transfers t ON "
                             "t.id = s.transfer_id WHERE t.wallet_id = ?",
                             (w.id,)).fetchone()[0] == 0
        return
    # Without the check, the attack goes through: both transfers are approved at a fee of 500.
    assert t1.movement.fee == "500"
    t1 = approve_both(daemon, t1)
    assert t1.state == pb.SIGNED
    t2 = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, psbt=understating(0).to_base64().encode(), replaces=t1.id))
    assert t2.movement.fee == "500"
    t2 = approve_both(daemon, t2)
    assert t2.state == pb.SIGNED
    a, b = (Transaction.parse(bytes.fromhex(t.raw_tx)) for t in (t1, t2))
    spliced = replace(a, inputs=(a.inputs[0], b.inputs[1]))
    assert verify_with_bitcointx(spliced.serialize().hex(), prev) == 2
    real_fee = sum(o.value for o in prev.outputs) - sum(o.value for o in spliced.outputs)
    pytest.fail(f"signerd signed two transfers each shown with a fee of 500 sat; spliced, their "
                f"signatures make a valid transaction paying {real_fee} sat in fees")


def test_lowered_witness_amount_that_disagrees_with_the_full_utxo(daemon: Daemon) -> None:
    w = wallet(daemon)
    psbt, prev = build_psbt(w, [50_000], [(EXTERNAL, 40_000)], utxo="both")
    low = TxOut(10_000, prev.outputs[0].script_pubkey)  # hides a 40,000 sat fee as 0
    from dataclasses import replace

    bad = psbt.with_input(0, replace(psbt.inputs[0], witness_utxo=low))
    e = rpc_error(submit, daemon, w, bad)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 0" in e.details()


def test_non_witness_utxo_whose_hash_does_not_match(daemon: Daemon) -> None:
    w = wallet(daemon)
    psbt, _ = build_psbt(w, [50_000], [(EXTERNAL, 40_000)], utxo="non_witness")
    other = funding(address_to_script(w.address, "regtest"), [50_000])
    from dataclasses import replace

    bad = psbt.with_input(0, replace(psbt.inputs[0], non_witness_utxo=other))
    e = rpc_error(submit, daemon, w, bad)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "txid" in e.details().lower()


def test_change_output_that_is_not_the_wallets_counts_as_external(daemon: Daemon) -> None:
    w = wallet(daemon)
    other = wallet(daemon)  # same platform, other wallet: own_wallet, not change
    psbt, _ = build_psbt(w, [50_000], [(address_to_script(other.address, "regtest"), 49_000)])
    t = submit(daemon, w, psbt)
    (out,) = t.movement.outputs
    assert not out.is_change and out.destination_class == "own_wallet"


@pytest.mark.parametrize("sighash", [0x02, 0x81, 0x03])
def test_sighash_none_single_anyonecanpay_refused(daemon: Daemon, sighash: int) -> None:
    w = wallet(daemon)
    psbt, _ = build_psbt(w, [50_000], [(EXTERNAL, 40_000)], sighash=sighash)
    e = rpc_error(submit, daemon, w, psbt)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "not allowed" in e.details()


NONE_ALLOWED = """
name = "two-key, SIGHASH_NONE allowed"
sighash = ["ALL", "NONE"]

[[rule]]
name = "two-key"
asset = "*"
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""
NONE_WARNING = ("WARNING: SIGHASH_NONE on input 0: the outputs can be changed after signing (no "
                "output is signed), so whoever holds the signed transaction can send these funds "
                "anywhere.")


def test_sighash_none_is_bound_shown_with_a_warning_that_holds(daemon: Daemon) -> None:
    """A policy may allow SIGHASH_NONE; then each input's sighash type is in the statement the
    approvers sign, and the daemon's rendering and signerctl's (rebuilt from the raw PSBT) warn
    that the outputs can be changed after signing. Then the signed transaction, its outputs
    redirected, still verifies in python-bitcointx: the warning is true (and the same change
    to a SIGHASH_ALL transaction does not verify)."""
    import json

    from bitcointx.core.scripteval import VerifyScriptError

    from signerd.cli.verify import rebuild_statement
    from signerd.adapters.config import Limits
    from signerd.core.model import Decision
    from tests.support.cli import ctl

    w = wallet(daemon)
    set_policy(daemon, w.id, NONE_ALLOWED)
    psbt, prev = build_psbt(w, [100_000], [(EXTERNAL, 99_000)], sighash=0x02)
    t = submit(daemon, w, psbt)
    assert list(t.movement.sighash) == ["NONE"]
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert json.loads(st.statement.partition(b"\n")[2])["sighash"] == ["NONE"]
    assert "\nsighash:         input 0 NONE\n" in st.rendered
    assert NONE_WARNING in st.rendered.splitlines()
    # signerctl decodes the payload itself and rebuilds the same bytes
    rebuilt = rebuild_statement(st, t.id, Decision.APPROVE, limits=Limits(),
                                allowed_sighash=frozenset({0x01, 0x02}))
    assert rebuilt.statement == st.statement and rebuilt.movement.sighash == ("NONE",)
    show = ctl(daemon, "--as", "inv1", "transfer", "show", t.id).stdout
    assert NONE_WARNING in show.splitlines() and "it matches" in show
    # approving anything but ALL takes the operator's own --allow-sighash
    key = str(daemon.state / "operators/inv1.key")
    r = ctl(daemon, "--as", "inv1", "transfer", "approve", t.id, "--key", key, "--yes", ok=False)
    assert r.returncode == 1 and "SIGHASH_NONE, which is not allowed" in r.stderr
    r = ctl(daemon, "--as", "inv1", "transfer", "approve", t.id, "--key", key, "--yes",
            "--allow-sighash", "NONE")
    assert NONE_WARNING in r.stdout.splitlines()
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED and verify_with_bitcointx(t.raw_tx, prev) == 1

    thief = p2wpkh_script(coincurve.PrivateKey(b"\x0b" * 32).public_key.format())
    signed = Transaction.parse(bytes.fromhex(t.raw_tx))
    redirected = replace(signed, outputs=(TxOut(99_500, thief),))
    assert verify_with_bitcointx(redirected.serialize().hex(), prev) == 1
    # the contrast: under SIGHASH_ALL the same change breaks the signature
    psbt, prev = build_psbt(w, [100_000], [(EXTERNAL, 99_000)])
    t = approve_both(daemon, submit(daemon, w, psbt))
    assert "WARNING" not in daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).rendered
    signed = Transaction.parse(bytes.fromhex(t.raw_tx))
    with pytest.raises(VerifyScriptError):
        verify_with_bitcointx(replace(signed, outputs=(TxOut(99_500, thief),)).serialize().hex(),
                              prev)


def test_input_of_another_wallet_is_refused(daemon: Daemon) -> None:
    w, other = wallet(daemon), wallet(daemon)
    psbt, _ = build_psbt(other, [50_000], [(EXTERNAL, 40_000)])
    e = rpc_error(submit, daemon, w, psbt)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "does not belong" in e.details()


def test_outpoint_held_by_another_live_transfer(daemon: Daemon) -> None:
    w = wallet(daemon)
    psbt, prev = build_psbt(w, [50_000], [(EXTERNAL, 40_000)])
    first = submit(daemon, w, psbt)
    bump = Psbt(Transaction(2, psbt.tx.inputs, (TxOut(30_000, EXTERNAL),), 0), psbt.inputs,
                (PsbtOutput(),))
    e = rpc_error(submit, daemon, w, bump)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "already held" in e.details()
    # An explicit replacement (fee bump) is its own transfer, judged by policy, and takes over.
    repl = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, psbt=bump.to_base64().encode(), replaces=first.id))
    assert repl.replaces == first.id and repl.state == pb.PENDING_APPROVAL


def test_returned_psbt_with_a_cold_key_signature_finalizes(daemon: Daemon) -> None:
    """signerd signs its share; the cold key signs offline; the PSBT comes back and is final."""
    from dataclasses import replace

    from signerd.core.bitcoin.signer import analyze, der_encode
    from signerd.core.chains import BitcoinAdapter

    n = next(_cold)
    cold_priv = coincurve.PrivateKey(b"\x0a" * 28 + n.to_bytes(4, "big"))
    cold = cold_priv.public_key.format()
    w = wallet(daemon, pb.P2WSH_SORTEDMULTI, threshold=2, hsm_keys=1, cosigners=[cold.hex()])
    psbt, prev = build_psbt(w, [70_000, 30_000], [(EXTERNAL, 99_000)], **scripts_for(w))
    t = approve_both(daemon, submit(daemon, w, psbt))
    assert t.state == pb.SIGNED and not t.raw_tx
    half = parse_psbt(base64.b64decode(t.psbt))
    spec = replace(BitcoinAdapter.spec(_model(w)), own_pubkeys=(cold,))
    for req in analyze(half, spec).to_sign:
        sig = cold_priv.sign(req.digest, hasher=None)  # DER, low-S (libsecp256k1)
        inp = half.inputs[req.input_index]
        half = half.with_input(req.input_index, replace(
            inp, partial_sigs={**inp.partial_sigs, cold: sig + b"\x01"}))
    done = daemon.custody().CombinePsbt(pb.CombinePsbtRequest(
        transfer_id=t.id, psbt=half.to_base64().encode()))
    assert done.raw_tx and verify_with_bitcointx(done.raw_tx, prev) == 2
    assert der_encode  # imported for symmetry with the bogus case below


def _cold_signed(half: Psbt, w: pb.Wallet, cold_priv: coincurve.PrivateKey) -> Psbt:
    """``half`` with the cold key's signature on every input, made offline."""
    from signerd.core.bitcoin.signer import analyze
    from signerd.core.chains import BitcoinAdapter

    cold = cold_priv.public_key.format()
    spec = replace(BitcoinAdapter.spec(_model(w)), own_pubkeys=(cold,))
    for req in analyze(half, spec).to_sign:
        inp = half.inputs[req.input_index]
        half = half.with_input(req.input_index, replace(inp, partial_sigs={
            **inp.partial_sigs, cold: cold_priv.sign(req.digest, hasher=None) + b"\x01"}))
    return half


def test_frozen_wallet_takes_no_cosigners_signatures(daemon: Daemon) -> None:
    """A frozen wallet signs nothing, its outside cosigners' signatures included: CombinePsbt,
    which would finalize the transaction, is refused until a governed unfreeze."""
    n = next(_cold)
    cold_priv = coincurve.PrivateKey(b"\x0c" * 28 + n.to_bytes(4, "big"))
    w = wallet(daemon, pb.P2WSH_SORTEDMULTI, threshold=2, hsm_keys=1,
               cosigners=[cold_priv.public_key.format().hex()])
    psbt, prev = build_psbt(w, [70_000, 30_000], [(EXTERNAL, 99_000)], **scripts_for(w))
    t = approve_both(daemon, submit(daemon, w, psbt))
    assert t.state == pb.SIGNED and not t.raw_tx
    full = _cold_signed(parse_psbt(base64.b64decode(t.psbt)), w, cold_priv)
    frozen = daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                                order_ref="ORDER-BTC-9"))
    assert frozen.status == pb.FROZEN
    e = rpc_error(daemon.custody().CombinePsbt, pb.CombinePsbtRequest(
        transfer_id=t.id, psbt=full.to_base64().encode()))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ("signerd-reason", "WALLET_FROZEN") in (e.trailing_metadata() or ())
    assert e.details() == (f"wallet {w.id} is frozen by court order; it takes no cosigners' "
                           "signatures until unfrozen")
    again = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert not again.raw_tx and again.psbt == t.psbt
    # Once the governance quorum unfreezes it, the same PSBT completes the transaction.
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref="ORDER-BTC-10"))
    assert govern(daemon, p).state == "APPROVED"
    done = daemon.custody().CombinePsbt(pb.CombinePsbtRequest(
        transfer_id=t.id, psbt=full.to_base64().encode()))
    assert done.raw_tx and verify_with_bitcointx(done.raw_tx, prev) == 2


def test_frozen_wallet_takes_no_replacement(daemon: Daemon) -> None:
    """A replacement (fee bump) is a new transfer: a frozen wallet takes none, and the transfer
    it would replace keeps its outpoints."""
    w = wallet(daemon)
    psbt, _ = build_psbt(w, [50_000], [(EXTERNAL, 49_000)])
    first = approve_both(daemon, submit(daemon, w, psbt))
    assert first.state == pb.SIGNED
    pending = submit(daemon, w, build_psbt(w, [50_000], [(EXTERNAL, 49_000)])[0])
    daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-BTC-11"))
    for old in (first, pending):
        bump = Psbt(Transaction(2, _psbt_of(old).tx.inputs, (TxOut(48_000, EXTERNAL),), 0),
                    _psbt_of(old).inputs, (PsbtOutput(),))
        e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
            wallet_id=w.id, psbt=bump.to_base64().encode(), replaces=old.id))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert ("signerd-reason", "WALLET_FROZEN") in (e.trailing_metadata() or ())
        assert e.details() == (f"wallet {w.id} is frozen by court order; it takes no new "
                               "transfers until unfrozen")
        now = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=old.id))
        assert now.state == old.state
    listed = daemon.custody().ListTransfers(pb.ListTransfersRequest(wallet_id=w.id)).transfers
    assert sorted(t.id for t in listed) == sorted((first.id, pending.id))


def _psbt_of(t: pb.Transfer) -> Psbt:
    return parse_psbt(base64.b64decode(t.payload) if t.payload[:5] != b"psbt\xff"
                      else t.payload)


def _model(w: pb.Wallet):
    from signerd.core.model import Category, Chain, KeyRef, ScriptType, Wallet, WalletStatus

    return Wallet(id=w.id, chain=Chain.BITCOIN, network=w.network,
                  script_type=ScriptType.P2WSH_SORTEDMULTI, category=Category.CONFISCATED,
                  case_ref=w.case_ref, legal_basis="", status=WalletStatus.ACTIVE,
                  address=w.address,
                  keys=tuple(KeyRef(k.key_id if k.hsm_held else "ext-" + k.key_id, k.label,
                                    k.public_key) for k in w.keys),
                  threshold=w.threshold)


def test_returned_psbt_with_a_bogus_signature_is_refused(daemon: Daemon) -> None:
    cold = cold_key()
    w = wallet(daemon, pb.P2WSH_SORTEDMULTI, threshold=2, hsm_keys=1, cosigners=[cold.hex()])
    psbt, _ = build_psbt(w, [100_000], [(EXTERNAL, 99_000)], **scripts_for(w))
    t = approve_both(daemon, submit(daemon, w, psbt))
    assert t.state == pb.SIGNED and not t.raw_tx
    half = parse_psbt(base64.b64decode(t.psbt))
    from dataclasses import replace

    from signerd.core.bitcoin.signer import der_encode

    forged = der_encode(12345, 67890) + b"\x01"
    inp = replace(half.inputs[0], partial_sigs={**half.inputs[0].partial_sigs, cold: forged})
    e = rpc_error(daemon.custody().CombinePsbt, pb.CombinePsbtRequest(
        transfer_id=t.id, psbt=half.with_input(0, inp).to_base64().encode()))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and cold.hex() in e.details()
    again = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert not again.raw_tx


def test_unsigned_until_quorum(daemon: Daemon) -> None:
    w = wallet(daemon)
    psbt, _ = build_psbt(w, [50_000], [(EXTERNAL, 40_000)])
    t = submit(daemon, w, psbt)
    decide(daemon, t.id, "inv1")
    assert _signatures(daemon, t.id) == 0


@pytest.mark.parametrize("data,needle", [
    (b"not a psbt", "psbt"),
    (b"cHNidP8BAAoCAAAAAAAAAAAAAA==", "no inputs"),
    (b"psbt\xff\x00", "psbt"),
])
def test_malformed_psbts_are_invalid_argument(daemon: Daemon, data: bytes, needle: str) -> None:
    w = wallet(daemon)
    e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=w.id, psbt=data))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.details().lower()
