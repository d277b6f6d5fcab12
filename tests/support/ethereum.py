"""Ethereum through the real daemon: a platform wallet, EIP-1559 transaction fields, submission."""
from __future__ import annotations

import json

from tests.support.daemon import Daemon
from tests.support.governance import set_policy
from tests.support.rpc import pb
from tests.unit.eth_oracle import CHAIN_ID

GWEI = 10**9


def eth_wallet(d: Daemon, chain_ids=(CHAIN_ID,), policy: str = "",
               category: int = pb.SEIZED) -> pb.Wallet:
    """A platform wallet (default template); with ``policy``, that text becomes its policy
    version 2 through a proposal the demo governance quorum approves."""
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=list(chain_ids), category=category, case_ref="CASE-ETH"))
    if policy:
        set_policy(d, w.id, policy)
        w = d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))
    return w


def tx_fields(nonce: int = 0, **over) -> dict:
    f = {"chainId": CHAIN_ID, "nonce": nonce, "maxPriorityFeePerGas": 1 * GWEI,
         "maxFeePerGas": 2 * GWEI, "gas": 21000,
         "to": "0x000000000000000000000000000000000000dEaD", "value": 10**15, "data": "0x",
         "accessList": []}
    f.update(over)
    return f


def submit(d: Daemon, wallet_id: str, fields: dict) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=wallet_id, ethereum=pb.EthereumTransaction(json=json.dumps(fields))))
