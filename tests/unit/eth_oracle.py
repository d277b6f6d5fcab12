"""py-evm (through eth-tester) as an independent oracle: does a raw transaction execute?

Each call starts a fresh in-memory chain, so callers need not coordinate nonces or balances.
"""

from __future__ import annotations

from typing import Any

from eth_tester import EthereumTester, PyEVMBackend

CHAIN_ID = 131277322940537  # eth-tester's py-evm chain id
GWEI = 10**9


def mine_raw_tx(raw: bytes, fund_address: str, fund_wei: int) -> dict[str, Any]:
    """Fund ``fund_address`` from a pre-funded account, then send and mine ``raw``.

    Returns the receipt of ``raw`` (``status`` 1 on success); a transaction the chain refuses
    raises eth-tester's validation error.
    """
    tester = EthereumTester(PyEVMBackend())
    if fund_wei:
        funder = tester.get_accounts()[0]
        tester.send_transaction(
            {
                "from": funder,
                "to": fund_address,
                "value": fund_wei,
                "gas": 21000,
                "max_fee_per_gas": 10 * GWEI,
                "max_priority_fee_per_gas": GWEI,
            }
        )
    tx_hash = tester.send_raw_transaction("0x" + raw.hex())
    return dict(tester.get_transaction_receipt(tx_hash))
