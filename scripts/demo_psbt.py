"""Make a regtest PSBT for the walkthrough: a made-up funding transaction pays the wallet, and the
PSBT spends it to an external address with change back to the wallet.

    signerctl --json wallet show WALLET_ID > wallet.json
    .venv/bin/python scripts/demo_psbt.py wallet.json --out transfer.psbt --prev prev.hex

The funding transaction is written to --prev so that scripts/verify_btc.py can check the signed
result with an independent script interpreter (python-bitcointx). Regtest only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import coincurve

from signerd.core.bitcoin.address import address_to_script
from signerd.core.bitcoin.descriptor import parse_descriptor
from signerd.core.bitcoin.psbt import Psbt, PsbtInput, PsbtOutput
from signerd.core.bitcoin.script import p2sh_p2wpkh_scripts, p2wpkh_script
from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wallet_json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prev", required=True)
    ap.add_argument("--amount", type=int, default=100_000, help="sats funded (default 100000)")
    ap.add_argument("--send", type=int, default=60_000, help="sats to the external address")
    ap.add_argument("--fee", type=int, default=1_000)
    args = ap.parse_args()
    w = json.loads(Path(args.wallet_json).read_text())
    if w.get("network") != "regtest":
        sys.exit("demo_psbt: regtest wallets only")
    spk = address_to_script(w["address"], "regtest")
    desc = parse_descriptor(w["descriptor"], require_checksum=True)
    prev = Transaction(2, (TxIn(OutPoint(os.urandom(32), 0), b"\x51"),),
                       (TxOut(args.amount, spk),), 0)
    external = p2wpkh_script(coincurve.PrivateKey().public_key.format())
    change = args.amount - args.send - args.fee
    tx = Transaction(2, (TxIn(OutPoint(prev.txid(), 0), b"", 0xFFFFFFFD),),
                     (TxOut(args.send, external), TxOut(change, spk)), 0)
    st = w.get("script_type")
    inp = PsbtInput(
        witness_utxo=prev.outputs[0], non_witness_utxo=prev,
        redeem_script=p2sh_p2wpkh_scripts(desc.keys[0].pubkey)[1] if st == "p2sh-p2wpkh" else None,
        witness_script=desc.witness_script() if st == "p2wsh-sortedmulti" else None)
    psbt = Psbt(tx, (inp,), (PsbtOutput(), PsbtOutput()))
    Path(args.out).write_text(psbt.to_base64() + "\n")
    Path(args.prev).write_text(prev.serialize().hex() + "\n")
    print(f"PSBT in {args.out}: send {args.send} sat, change {change} sat, fee {args.fee} sat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
