"""Make an unsigned Tron TRC-20 transfer for the walkthrough, as a platform's wallet software
would: a TriggerSmartContract calling transfer(address,uint256) on the token contract, from the
wallet's address, built with the protobuf messages tronpy ships (java-tron's definitions), not
with signerd's code.

    signerctl --json wallet show WALLET_ID > tron-wallet.json
    .venv/bin/python scripts/demo_tron_tx.py tron-wallet.json --contract T... --to T... \
        --amount 250000000 --out usdt.json

The reference block is made up (the transaction is not meant for a real network); it expires
in an hour. The output is {"txID", "raw_data_hex"}, as TronWeb and tronpy write transactions.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from google.protobuf import any_pb2
from tronpy.keys import to_hex_address
from tronpy.proto import tron_pb2

TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")  # transfer(address,uint256)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wallet_json", help="signerctl --json wallet show of a Tron wallet")
    ap.add_argument("--contract", required=True, help="the TRC-20 contract (T...)")
    ap.add_argument("--to", required=True, help="the recipient (T...)")
    ap.add_argument("--amount", required=True, type=int, help="token base units")
    ap.add_argument("--fee-limit", type=int, default=30_000_000, help="sun (default 30 TRX)")
    ap.add_argument("--expires-in", type=int, default=3600, help="seconds (default 3600)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    wallet = json.loads(Path(a.wallet_json).read_text())
    if wallet["chain"] != "tron":
        print(f"{a.wallet_json}: not a Tron wallet", file=sys.stderr)
        return 1
    raw20 = bytes.fromhex(to_hex_address(a.to))[1:]
    call = tron_pb2.TriggerSmartContract(
        owner_address=bytes.fromhex(to_hex_address(wallet["address"])),
        contract_address=bytes.fromhex(to_hex_address(a.contract)),
        data=TRANSFER_SELECTOR + bytes(12) + raw20 + a.amount.to_bytes(32, "big"))
    now = int(time.time() * 1000)
    raw = tron_pb2.Transaction.raw(
        ref_block_bytes=bytes.fromhex("f6a0"), ref_block_hash=bytes.fromhex("1122334455667788"),
        expiration=now + a.expires_in * 1000, timestamp=now, fee_limit=a.fee_limit,
        contract=[tron_pb2.Transaction.Contract(
            type=tron_pb2.Transaction.Contract.ContractType.TriggerSmartContract,
            parameter=any_pb2.Any(type_url="type.googleapis.com/protocol.TriggerSmartContract",
                                  value=call.SerializeToString()))]).SerializeToString()
    Path(a.out).write_text(json.dumps({"txID": hashlib.sha256(raw).hexdigest(),
                                       "raw_data_hex": raw.hex()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
