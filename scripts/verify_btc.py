"""Check a signed Bitcoin transaction with an independent script interpreter (python-bitcointx).

    .venv/bin/python scripts/verify_btc.py RAW_TX_HEX_OR_FILE PREV_TX_HEX_OR_FILE

Every input must spend an output of the previous transaction given (as scripts/demo_psbt.py
writes it). Prints one line per input and exits non-zero on the first failure.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bitcointx.core import CTransaction
from bitcointx.core.script import CScript, CScriptWitness
from bitcointx.core.scripteval import (SCRIPT_VERIFY_CLEANSTACK, SCRIPT_VERIFY_DERSIG,
                                       SCRIPT_VERIFY_LOW_S, SCRIPT_VERIFY_NULLDUMMY,
                                       SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_P2SH,
                                       SCRIPT_VERIFY_STRICTENC, SCRIPT_VERIFY_WITNESS,
                                       SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, VerifyScript,
                                       VerifyScriptError)

FLAGS = {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, SCRIPT_VERIFY_DERSIG, SCRIPT_VERIFY_LOW_S,
         SCRIPT_VERIFY_NULLDUMMY, SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_STRICTENC,
         SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, SCRIPT_VERIFY_CLEANSTACK}


def _hex(arg: str) -> bytes:
    text = arg
    if len(arg) < 256 and Path(arg).is_file():
        text = Path(arg).read_text()
    return bytes.fromhex(text.strip().removeprefix("0x"))


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tx = CTransaction.deserialize(_hex(sys.argv[1]))
    prev = CTransaction.deserialize(_hex(sys.argv[2]))
    for i, txin in enumerate(tx.vin):
        if txin.prevout.hash != prev.GetTxid():
            print(f"input {i}: does not spend the given previous transaction")
            return 1
        spent = prev.vout[txin.prevout.n]
        witness = tx.wit.vtxinwit[i].scriptWitness if tx.wit.vtxinwit else CScriptWitness()
        try:
            VerifyScript(txin.scriptSig, spent.scriptPubKey, tx, i, flags=FLAGS,
                         amount=spent.nValue, witness=witness)
        except VerifyScriptError as e:
            print(f"input {i}: FAILED: {e}")
            return 1
        print(f"input {i}: OK ({spent.nValue} sat, python-bitcointx VerifyScript)")
    print(f"txid {tx.GetTxid()[::-1].hex()}: all {len(tx.vin)} inputs verify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
