"""Safe v1.4.1 on anvil for tests and the walkthrough: the singleton, the proxy factory and the
fallback handler at their canonical addresses, with the runtime code of Safe's published build
artifacts, a test ERC-20 compiled with
OpenZeppelin, and contract calls encoded with eth-abi from the artifacts' ABI (never with
signerd's own Safe code, which the contracts judge)."""
from __future__ import annotations

import functools
import json
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.messages import encode_typed_data
from eth_utils import function_abi_to_4byte_selector, keccak, to_checksum_address

from tests.support import evm

ETHER = 10**18
ZERO_ADDRESS = "0x" + "00" * 20

TOKEN_SOURCE = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
import "@openzeppelin/contracts/token/ERC20/ERC20.sol";
contract CustodyTestToken is ERC20 {
    constructor(address holder, uint256 supply) ERC20("Custody Test Token", "CTT") {
        _mint(holder, supply);
    }
}
"""


class Contract:
    """A deployed contract spoken to through its ABI (eth-abi encodes and decodes)."""

    def __init__(self, node: evm.Anvil, address: str, abi: list[dict[str, Any]]):
        self.node, self.address, self.abi = node, to_checksum_address(address), abi
        self.raw = bytes.fromhex(self.address[2:])

    def _fn(self, name: str) -> dict[str, Any]:
        (fn,) = [f for f in self.abi if f.get("type") == "function" and f["name"] == name]
        return fn

    def calldata(self, name: str, *args: Any) -> str:
        fn = self._fn(name)
        types = [str(i["type"]) for i in fn["inputs"]]
        return "0x" + (function_abi_to_4byte_selector(fn) + abi_encode(types, list(args))).hex()

    def call(self, name: str, *args: Any) -> Any:
        fn = self._fn(name)
        out = bytes.fromhex(self.node.call(self.address, self.calldata(name, *args))[2:])
        values = abi_decode([str(o["type"]) for o in fn["outputs"]], out)
        return values[0] if len(values) == 1 else values


@functools.cache
def _token_build() -> tuple[list[dict[str, Any]], str]:
    token = evm.compile_solidity({"CustodyTestToken.sol": TOKEN_SOURCE})["CustodyTestToken"]
    return token["abi"], token["bytecode"]


def deploy_token(node: evm.Anvil, holder: str, supply: int) -> Contract:
    """The test ERC-20 (CTT, 18 decimals), ``supply`` of it minted to ``holder``."""
    abi, code = _token_build()
    args = abi_encode(["address", "uint256"], [holder, supply]).hex()
    return Contract(node, node.deploy(code + args), abi)


# Safe v1.4.1's canonical deployment (github.com/safe-global/safe-deployments, v1.4.1).
CANONICAL_SINGLETON = "0x41675C099F32341bf84BFc5382aF534df5C7461a"
CANONICAL_FACTORY = "0x4e1DCf7AD4e460CfD30791CCC4F9c8a4f820ec67"
CANONICAL_FALLBACK_HANDLER = "0xfd0732Dc9E303f09fCEf3a7388Ad10A83459Ec99"


def safe_artifacts() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Safe v1.4.1's build artifacts: the singleton, the proxy factory, the fallback handler."""
    return (evm.safe_artifact("Safe.sol/Safe.json"),
            evm.safe_artifact("proxies/SafeProxyFactory.sol/SafeProxyFactory.json"),
            evm.safe_artifact(
                "handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler.json"))


def place(node: evm.Anvil, address: str, runtime_code: str) -> str:
    """Runtime code at a fixed address (anvil_setCode), as a deployment there would leave it."""
    node.rpc("anvil_setCode", address, runtime_code)
    return address


class SafeDeployment:
    """Safe v1.4.1's singleton, proxy factory and fallback handler on one node."""

    def __init__(self, node: evm.Anvil):
        self.node = node
        self.deployer = node.accounts[0]
        safe_art, factory_art, handler_art = safe_artifacts()
        self.safe_abi = safe_art["abi"]
        # At the canonical v1.4.1 addresses (safe-deployments), the only ones signerd records a
        # Safe wallet for: the artifacts' runtime code put there (none of the three has a
        # constructor argument or an immutable).
        self.singleton = place(node, CANONICAL_SINGLETON, safe_art["deployedBytecode"])
        self.factory = Contract(node, place(node, CANONICAL_FACTORY,
                                            factory_art["deployedBytecode"]),
                                factory_art["abi"])
        self.handler = place(node, CANONICAL_FALLBACK_HANDLER, handler_art["deployedBytecode"])

    def setup_json(self, owners: list[str], threshold: int, salt: int) -> dict[str, Any]:
        """A SafeSetup document (what ``signerctl wallet create --kind safe --setup`` reads)."""
        return {"owners": [to_checksum_address(o) for o in owners], "threshold": threshold,
                "fallbackHandler": to_checksum_address(self.handler),
                "singleton": to_checksum_address(self.singleton),
                "factory": self.factory.address, "saltNonce": salt}

    def initializer(self, setup: dict[str, Any]) -> str:
        """``Safe.setup(...)`` encoded from the artifact's ABI."""
        single = Contract(self.node, setup["singleton"], self.safe_abi)
        return single.calldata("setup", setup["owners"], setup["threshold"], ZERO_ADDRESS,
                               b"", setup["fallbackHandler"], ZERO_ADDRESS, 0, ZERO_ADDRESS)

    def deploy_safe(self, setup: dict[str, Any], data: str = "") -> Contract:
        """Deploy through the factory (``createProxyWithNonce``: with ``data`` as signerd built
        it, else encoded here) and return the Safe at the address the factory emitted."""
        if not data:
            data = self.factory.calldata("createProxyWithNonce", setup["singleton"],
                                         bytes.fromhex(self.initializer(setup)[2:]),
                                         int(setup["saltNonce"]))
        rec = self.node.send(self.deployer, self.factory.address, data)
        assert int(rec["status"], 16) == 1, rec
        topic = "0x" + function_topic("ProxyCreation(address,address)")
        (log,) = [lg for lg in rec["logs"] if lg["topics"][0] == topic]
        address = "0x" + log["topics"][1][-40:]
        return Contract(self.node, address, self.safe_abi)

    def deploy_token(self, holder: str, supply: int) -> Contract:
        return deploy_token(self.node, holder, supply)


def function_topic(signature: str) -> str:
    return keccak(text=signature).hex()


def safe_tx(to: str, *, value: int = 0, data: str = "0x", operation: int = 0, nonce: int,
            gas_price: int = 0, gas_token: str = ZERO_ADDRESS,
            refund_receiver: str = ZERO_ADDRESS) -> dict[str, Any]:
    """A SafeTx document (``signerctl transfer submit WALLET --safe-tx FILE``)."""
    return {"to": to_checksum_address(to), "value": value, "data": data,
            "operation": operation, "safeTxGas": 0, "baseGas": 0, "gasPrice": gas_price,
            "gasToken": to_checksum_address(gas_token),
            "refundReceiver": to_checksum_address(refund_receiver), "nonce": nonce}


def safe_tx_hash_onchain(safe: Contract, tx: dict[str, Any]) -> bytes:
    """``Safe.getTransactionHash`` of the deployed Safe: the contract's own EIP-712 hash."""
    return bytes(safe.call("getTransactionHash", tx["to"], tx["value"],
                           bytes.fromhex(tx["data"][2:]), tx["operation"], tx["safeTxGas"],
                           tx["baseGas"], tx["gasPrice"], tx["gasToken"],
                           tx["refundReceiver"], tx["nonce"]))


def safe_tx_hash_eip712(chain_id: int, safe: str, tx: dict[str, Any]) -> bytes:
    """The hash of the SafeTx document ``tx`` for the Safe at ``safe`` on ``chain_id``, by
    eth-account's own EIP-712 encoder (no node, no signerd code)."""
    typed = {
        "types": {"EIP712Domain": [{"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "SafeTx": [{"name": n, "type": t} for n, t in (
                      ("to", "address"), ("value", "uint256"), ("data", "bytes"),
                      ("operation", "uint8"), ("safeTxGas", "uint256"), ("baseGas", "uint256"),
                      ("gasPrice", "uint256"), ("gasToken", "address"),
                      ("refundReceiver", "address"), ("nonce", "uint256"))]},
        "primaryType": "SafeTx", "domain": {"chainId": chain_id, "verifyingContract": safe},
        "message": {**tx, "data": bytes.fromhex(tx["data"][2:])}}
    msg = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + msg.version + msg.header + msg.body)


def exec_calldata_by_hand(safe: Contract, tx: dict[str, Any], signatures: bytes) -> str:
    """``execTransaction`` encoded here from the ABI (for calls signerd refuses to build)."""
    return safe.calldata("execTransaction", tx["to"], tx["value"], bytes.fromhex(tx["data"][2:]),
                         tx["operation"], tx["safeTxGas"], tx["baseGas"], tx["gasPrice"],
                         tx["gasToken"], tx["refundReceiver"], signatures)


MOVES_POLICY = """name = "{name}"
expiry = "1h"

[[rule]]
name = "moves"
asset = "*"
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
"""


def moves_policy(name: str) -> str:
    """A policy named ``name`` of one rule, "moves": any asset, approved by an investigator and
    a custody officer within the hour."""
    return MOVES_POLICY.format(name=name)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True)
