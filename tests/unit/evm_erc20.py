"""A minimal ERC-20 for py-evm (through eth-tester), assembled here so no compiler is needed:
``transfer(address,uint256)`` moves balances (reverting when the caller has too little) and
returns true, ``balanceOf(address)`` reads one; the constructor mints the supply to one holder.
Enough to execute a signed token transfer and see its effect, not a complete token."""

from __future__ import annotations

from typing import Any

import rlp
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak, to_checksum_address

GWEI = 10**9
_OP = {"ADD": 0x01, "SUB": 0x03, "LT": 0x10, "EQ": 0x14, "SHR": 0x1C, "CALLER": 0x33,
       "CALLDATALOAD": 0x35, "CODECOPY": 0x39, "MSTORE": 0x52, "SLOAD": 0x54, "SSTORE": 0x55,
       "JUMPI": 0x57, "JUMPDEST": 0x5B, "DUP1": 0x80, "DUP2": 0x81, "DUP3": 0x82,
       "SWAP1": 0x90, "RETURN": 0xF3, "REVERT": 0xFD}


def _assemble(program: list[Any]) -> bytes:
    """Op names; ("PUSH", bytes); ("JUMP_TO", label) pushes a label's offset (one byte);
    ("LABEL", name) marks the next offset."""
    labels: dict[str, int] = {}
    pc = 0
    for item in program:
        if isinstance(item, tuple) and item[0] == "LABEL":
            labels[item[1]] = pc
        elif isinstance(item, tuple):
            pc += 1 + (len(item[1]) if item[0] == "PUSH" else 1)
        else:
            pc += 1
    code = bytearray()
    for item in program:
        if isinstance(item, tuple) and item[0] == "PUSH":
            code += bytes([0x5F + len(item[1])]) + item[1]
        elif isinstance(item, tuple) and item[0] == "JUMP_TO":
            code += bytes([0x60, labels[item[1]]])
        elif not isinstance(item, tuple):
            code.append(_OP[item])
    return bytes(code)


def _push(n: int) -> tuple[str, bytes]:
    return ("PUSH", n.to_bytes(1, "big"))


RUNTIME = _assemble([
    _push(0), "CALLDATALOAD", _push(0xE0), "SHR",                       # selector
    "DUP1", ("PUSH", bytes.fromhex("a9059cbb")), "EQ", ("JUMP_TO", "transfer"), "JUMPI",
    "DUP1", ("PUSH", bytes.fromhex("70a08231")), "EQ", ("JUMP_TO", "balance"), "JUMPI",
    ("LABEL", "fail"), "JUMPDEST", _push(0), "DUP1", "REVERT",
    ("LABEL", "transfer"), "JUMPDEST",
    _push(0x24), "CALLDATALOAD", "CALLER", "SLOAD",                     # balance, amount
    "DUP2", "DUP2", "LT", ("JUMP_TO", "fail"), "JUMPI",                 # too little: revert
    "DUP2", "SWAP1", "SUB", "CALLER", "SSTORE",                         # debit the caller
    _push(4), "CALLDATALOAD", "DUP1", "SLOAD", "DUP3", "ADD", "SWAP1", "SSTORE",  # credit
    _push(1), _push(0), "MSTORE", _push(0x20), _push(0), "RETURN",      # true
    ("LABEL", "balance"), "JUMPDEST",
    _push(4), "CALLDATALOAD", "SLOAD", _push(0), "MSTORE", _push(0x20), _push(0), "RETURN",
])


def initcode(holder: str, supply: int) -> bytes:
    """Mint ``supply`` to ``holder``, then return the runtime code."""
    mint = (bytes([0x7F]) + supply.to_bytes(32, "big") + bytes([0x73])
            + bytes.fromhex(holder[2:]) + bytes([_OP["SSTORE"]]))

    def tail(offset: int) -> bytes:  # copy the runtime code to memory and return it
        return bytes([0x60, len(RUNTIME), _OP["DUP1"], 0x60, offset, 0x60, 0,
                      _OP["CODECOPY"], 0x60, 0, _OP["RETURN"]])

    return mint + tail(len(mint) + len(tail(0))) + RUNTIME


def deployer() -> str:
    """The pre-funded eth-tester account that deploys the token (its first transaction)."""
    return str(EthereumTester(PyEVMBackend()).get_accounts()[0])


def token_address() -> str:
    """Where the token lands: the deployer's first contract (nonce 0)."""
    sender = bytes.fromhex(deployer()[2:])
    return str(to_checksum_address(keccak(rlp.encode([sender, 0]))[12:]))


def mine_token_transfer(raw: bytes, holder: str, supply: int, fund_wei: int
                        ) -> tuple[dict[str, Any], Any]:
    """On a fresh chain: deploy the token minting ``supply`` to ``holder``, fund ``holder``
    with ``fund_wei`` for gas, send and mine ``raw``. Returns its receipt and a
    ``balance_of(address) -> int`` reader."""
    tester = EthereumTester(PyEVMBackend())
    funder = tester.get_accounts()[0]
    fees = {"max_fee_per_gas": 10 * GWEI, "max_priority_fee_per_gas": GWEI}
    deployed = tester.get_transaction_receipt(tester.send_transaction(
        {"from": funder, "data": "0x" + initcode(holder, supply).hex(), "gas": 500_000, **fees}))
    token = deployed["contract_address"]
    assert deployed["status"] == 1 and token == token_address()
    tester.send_transaction({"from": funder, "to": holder, "value": fund_wei, "gas": 21_000,
                             **fees})
    receipt = dict(tester.get_transaction_receipt(tester.send_raw_transaction("0x" + raw.hex())))

    def balance_of(address: str) -> int:
        data = "0x70a08231" + "00" * 12 + address[2:].lower()
        return int(tester.call({"from": funder, "to": token, "data": data}), 16)

    return receipt, balance_of
