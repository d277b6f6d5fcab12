"""Check a signed Tron transaction with tronpy, independently of signerd: the transaction id
recomputed from raw_data with the protobuf messages tronpy ships, the signer's address
recovered from the signature with tronpy's keys, compared with the expected address.

    signerctl --json transfer result TRANSFER_ID > signed.json
    .venv/bin/python scripts/verify_tron.py signed.json T...

Prints one line and exits non-zero when anything differs.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from tronpy.keys import Signature, to_base58check_address
from tronpy.proto import tron_pb2


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    doc = json.loads(Path(sys.argv[1]).read_text())
    tx = tron_pb2.Transaction.FromString(bytes.fromhex(doc["raw_tx"]))
    txid = hashlib.sha256(tx.raw_data.SerializeToString()).digest()
    if txid.hex() != doc["tx_hash"] or txid.hex() != doc["tron_transaction"]["txID"]:
        print(f"FAIL: txID {txid.hex()} differs from the result's", file=sys.stderr)
        return 1
    if len(tx.signature) != 1:
        print(f"FAIL: {len(tx.signature)} signatures", file=sys.stderr)
        return 1
    sig = Signature(bytes(tx.signature[0]))
    signer = sig.recover_public_key_from_msg_hash(txid)
    if not sig.verify_msg_hash(txid, signer) or signer.to_base58check_address() != sys.argv[2]:
        print(f"FAIL: signed by {signer.to_base58check_address()}, not {sys.argv[2]}",
              file=sys.stderr)
        return 1
    c = tx.raw_data.contract[0]
    kind = tron_pb2.Transaction.Contract.ContractType.Name(c.type)
    extra = ""
    if kind == "TriggerSmartContract":
        call = tron_pb2.TriggerSmartContract.FromString(c.parameter.value)
        extra = (f" to {to_base58check_address(b'A' + call.data[16:36])} "
                 f"amount {int.from_bytes(call.data[36:68], 'big')} on "
                 f"{to_base58check_address(call.contract_address)}")
    print(f"txID {txid.hex()}: {kind}{extra}, signed by {sys.argv[2]}: OK (tronpy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
