"""Bitcoin through the real daemon: wallets, PSBTs spending made-up funding transactions,
submission, approval by the demo two-key policy, and the check of a final transaction input by
input with python-bitcointx's script interpreter (not signerd's code)."""
from __future__ import annotations

import coincurve
from bitcointx.core import CTransaction
from bitcointx.core.script import CScript, CScriptWitness
from bitcointx.core.scripteval import (SCRIPT_VERIFY_CLEANSTACK, SCRIPT_VERIFY_DERSIG,
                                       SCRIPT_VERIFY_LOW_S, SCRIPT_VERIFY_NULLDUMMY,
                                       SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_P2SH,
                                       SCRIPT_VERIFY_STRICTENC, SCRIPT_VERIFY_WITNESS,
                                       SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, VerifyScript)

from signerd.core.bitcoin.address import address_to_script
from signerd.core.bitcoin.psbt import Psbt, PsbtInput, PsbtOutput
from signerd.core.bitcoin.script import p2wpkh_script
from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut

from tests.support.daemon import Daemon
from tests.support.governance import decide, govern
from tests.support.rpc import pb

FLAGS = {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, SCRIPT_VERIFY_DERSIG, SCRIPT_VERIFY_LOW_S,
         SCRIPT_VERIFY_NULLDUMMY, SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_STRICTENC,
         SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, SCRIPT_VERIFY_CLEANSTACK}
EXTERNAL = p2wpkh_script(coincurve.PrivateKey(b"\x07" * 32).public_key.format())
_salt = iter(range(1, 10**6))


def wallet(d: Daemon, script_type: int = pb.P2WPKH, **kw) -> pb.Wallet:
    return approved(d, d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.BITCOIN, network="regtest", category=pb.CONFISCATED, case_ref="CASE-BTC",
        script_type=script_type, **kw)))


def approved(d: Daemon, w: pb.Wallet) -> pb.Wallet:
    """A wallet with an outside cosigner waits for its governance proposal: approve it with
    the demo governance quorum (a platform wallet is active at once)."""
    if not w.proposal_id:
        return w
    assert w.status == pb.AWAITING_APPROVAL
    p = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=w.proposal_id))
    assert govern(d, p).state == "APPROVED"
    w = d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))
    assert w.status == pb.ACTIVE
    return w


def funding(spk: bytes, amounts: list[int]) -> Transaction:
    salt = next(_salt)
    return Transaction(2, (TxIn(OutPoint(salt.to_bytes(32, "big"), 0), b"\x51"),),
                       tuple(TxOut(a, spk) for a in amounts), 0)


def build_psbt(w: pb.Wallet, amounts: list[int], outputs: list[tuple[bytes, int]], *,
               utxo: str = "both", redeem: bytes | None = None, wscript: bytes | None = None,
               sighash: int | None = None, network: str = "regtest", one_funding_each: bool = False
               ) -> tuple[Psbt, Transaction | list[Transaction]]:
    """A PSBT spending outputs of the wallet: by default outputs of one funding transaction,
    each input carrying it in full and its witness UTXO (``utxo``: as Bitcoin Core writes segwit
    v0 inputs); with ``one_funding_each``, a funding transaction per input (a sweep of many
    small outputs, where one shared funding transaction copied into every input would not fit),
    and the list of them is returned."""
    spk = address_to_script(w.address, network)
    if one_funding_each:
        prevs = [funding(spk, [a]) for a in amounts]
        spent = [(p, 0) for p in prevs]
    else:
        prev = funding(spk, amounts)
        spent = [(prev, i) for i in range(len(amounts))]
    txins = tuple(TxIn(OutPoint(p.txid(), i), b"", 0xFFFFFFFD) for p, i in spent)
    tx = Transaction(2, txins, tuple(TxOut(v, s) for s, v in outputs), 0)
    inputs = tuple(PsbtInput(
        non_witness_utxo=p if utxo in ("non_witness", "both") else None,
        witness_utxo=p.outputs[i] if utxo in ("witness", "both") else None,
        redeem_script=redeem, witness_script=wscript, sighash_type=sighash)
        for p, i in spent)
    return Psbt(tx, inputs, tuple(PsbtOutput() for _ in outputs)), (
        prevs if one_funding_each else prev)


def submit(d: Daemon, w: pb.Wallet, psbt: Psbt, *, b64: bool = True) -> pb.Transfer:
    data = psbt.to_base64().encode() if b64 else psbt.serialize()
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=w.id, psbt=data))


def verify_with_bitcointx(raw_hex: str, prev: Transaction | list[Transaction],
                          network: str = "regtest") -> int:
    """Run every input's scripts in python-bitcointx's interpreter against the outputs of the
    funding transaction(s) ``prev``; returns inputs checked."""
    tx = CTransaction.deserialize(bytes.fromhex(raw_hex))
    by_txid = {p.txid(): p for p in (prev if isinstance(prev, list) else [prev])}
    assert all(txin.prevout.hash in by_txid for txin in tx.vin)
    for i, txin in enumerate(tx.vin):
        spent = by_txid[txin.prevout.hash].outputs[txin.prevout.n]
        VerifyScript(txin.scriptSig, CScript(spent.script_pubkey), tx, i, flags=FLAGS,
                     amount=spent.value, witness=tx.wit.vtxinwit[i].scriptWitness
                     if tx.wit.vtxinwit else CScriptWitness())
    return len(tx.vin)


def approve_both(d: Daemon, t: pb.Transfer) -> pb.Transfer:
    decide(d, t.id, "inv1")
    return decide(d, t.id, "cust1")
