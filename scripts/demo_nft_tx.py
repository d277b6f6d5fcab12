"""Make an unsigned ERC-721 transfer for the walkthrough, as a platform's wallet software would:
an EIP-1559 transaction from the wallet to the collection's contract calling
safeTransferFrom(address,address,uint256), its calldata encoded with eth-abi (not with
signerd's code).

    signerctl --json wallet show WALLET_ID > eth-wallet.json
    .venv/bin/python scripts/demo_nft_tx.py eth-wallet.json --contract 0x... --to 0x... \
        --token-id 7 --nonce 1 --out nft.json

The output is eth-account's dict form of the transaction, as `signerctl transfer submit
--eth-tx` takes it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

SIGNATURE = "safeTransferFrom(address,address,uint256)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wallet_json", help="signerctl --json wallet show of an Ethereum wallet")
    ap.add_argument("--contract", required=True, help="the ERC-721 contract (0x...)")
    ap.add_argument("--to", required=True, help="the recipient (0x...)")
    ap.add_argument("--token-id", required=True, type=int)
    ap.add_argument("--nonce", required=True, type=int, help="the wallet's account nonce")
    ap.add_argument("--chain-id", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    wallet = json.loads(Path(a.wallet_json).read_text())
    if wallet["chain"] != "ethereum":
        sys.exit(f"demo_nft_tx.py: {a.wallet_json} is a {wallet['chain']} wallet, not ethereum")
    sender = to_checksum_address(wallet["address"])
    data = function_signature_to_4byte_selector(SIGNATURE) + encode(
        ["address", "address", "uint256"], [sender, to_checksum_address(a.to), a.token_id])
    tx = {"chainId": a.chain_id, "nonce": a.nonce, "maxPriorityFeePerGas": 1_000_000_000,
          "maxFeePerGas": 30_000_000_000, "gas": 120_000,
          "to": to_checksum_address(a.contract), "value": 0, "data": "0x" + data.hex(),
          "accessList": []}
    Path(a.out).write_text(json.dumps(tx, indent=1) + "\n")
    print(f"{a.out}: {SIGNATURE} of token {a.token_id} from {sender} to "
          f"{to_checksum_address(a.to)} on {to_checksum_address(a.contract)}, nonce {a.nonce}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
