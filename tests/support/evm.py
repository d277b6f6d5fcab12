"""A real EVM for the tests: an ``anvil`` node on loopback (npm ``@foundry-rs/anvil-linux-amd64``
in tests/node) spoken to over JSON-RPC, and Solidity compiled by solc-js (npm ``solc``, the
compiler shipped inside the package: nothing is downloaded at run time).

``Anvil.start()`` runs a fresh chain on a free port (chain id 31337 unless asked), with the node's
ten funded development accounts; ``deploy`` sends creation code from one of them, ``send`` a call,
``send_raw`` a signed transaction; ``call`` is eth_call. ``compile_solidity`` returns each
contract's ABI and creation bytecode; ``safe_artifact`` reads Safe v1.4.1's published build.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE = Path(__file__).resolve().parents[1] / "node"
ANVIL = NODE / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
SAFE_BUILD = NODE / "node_modules" / "@safe-global" / "safe-contracts" / "build" / "artifacts"
OPENZEPPELIN = NODE / "node_modules" / "@openzeppelin" / "contracts"
CONTRACTS = NODE / "contracts"


def available() -> bool:
    return ANVIL.exists() and (NODE / "node_modules" / "solc").exists()


def needs_evm() -> Any:
    """The mark for tests that need anvil and solc-js: skipped, with the reason, where
    tests/node is not installed -- except under ``SIGNERD_CI=1`` (.ci/run), where they run and
    fail, so CI can never pass without having run them."""
    import os

    import pytest

    in_ci = os.environ.get("SIGNERD_CI") == "1"
    return pytest.mark.skipif(not available() and not in_ci,
                              reason="anvil / solc-js not installed in tests/node "
                                     "(scripts/install.sh --test)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]):
        super().__init__(f"{error.get('code')}: {error.get('message')} {error.get('data', '')}")
        self.error = error


@dataclass
class Anvil:
    url: str
    proc: subprocess.Popen[bytes]
    chain_id: int

    @classmethod
    def start(cls, chain_id: int = 31337) -> "Anvil":
        port = _free_port()
        proc = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
             "--silent", "--hardfork", "cancun"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        node = cls(f"http://127.0.0.1:{port}", proc, chain_id)
        deadline = time.monotonic() + 30
        while True:
            try:
                node.rpc("eth_chainId")
                return node
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    proc.kill()
                    raise RuntimeError(f"anvil did not start: {err}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Anvil":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rpc(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": list(params)}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            doc = json.loads(r.read())
        if "error" in doc:
            raise RpcError(doc["error"])
        return doc["result"]

    @property
    def accounts(self) -> list[str]:
        return list(self.rpc("eth_accounts"))

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        for _ in range(600):
            rec = self.rpc("eth_getTransactionReceipt", tx_hash)
            if rec is not None:
                return dict(rec)
            time.sleep(0.05)
        raise TimeoutError(f"no receipt for {tx_hash}")

    def send(self, sender: str, to: str | None, data: str = "0x", value: int = 0,
             gas: int = 8_000_000) -> dict[str, Any]:
        """A transaction from one of anvil's unlocked accounts; its receipt (status checked
        by the caller)."""
        tx: dict[str, Any] = {"from": sender, "data": data, "value": hex(value), "gas": hex(gas)}
        if to is not None:
            tx["to"] = to
        return self.receipt(self.rpc("eth_sendTransaction", tx))

    def deploy(self, creation_code: str, sender: str | None = None) -> str:
        rec = self.send(sender or self.accounts[0], None, creation_code)
        if int(rec["status"], 16) != 1:
            raise RuntimeError("deployment reverted")
        return str(rec["contractAddress"])

    def send_raw(self, raw_hex: str) -> dict[str, Any]:
        raw = raw_hex if raw_hex.startswith("0x") else "0x" + raw_hex
        return self.receipt(self.rpc("eth_sendRawTransaction", raw))

    def call(self, to: str, data: str, sender: str | None = None) -> str:
        tx = {"to": to, "data": data}
        if sender:
            tx["from"] = sender
        return str(self.rpc("eth_call", tx, "latest"))

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)

    def nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", address, "latest"), 16)

    def fund(self, address: str, wei: int) -> None:
        rec = self.send(self.accounts[0], address, value=wei)
        assert int(rec["status"], 16) == 1


_COMPILE_JS = r"""
const solc = require('solc');
const fs = require('fs');
const path = require('path');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const roots = input.roots; delete input.roots;
function findImports(p) {
  for (const r of roots) {
    const f = path.join(r, p);
    if (fs.existsSync(f)) return { contents: fs.readFileSync(f, 'utf8') };
  }
  return { error: 'not found: ' + p };
}
process.stdout.write(solc.compile(JSON.stringify(input), { import: findImports }));
"""


def compile_solidity(sources: dict[str, str], optimize: bool = True) -> dict[str, dict[str, Any]]:
    """{contract name: {"abi": [...], "bytecode": "0x..."}} for every contract in ``sources``
    ({file name: Solidity text}); imports ``@openzeppelin/contracts/...`` resolve in tests/node.
    Raises RuntimeError with solc's messages on an error."""
    doc = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": {"optimizer": {"enabled": optimize, "runs": 200}, "evmVersion": "cancun",
                     "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
        "roots": [str(NODE / "node_modules"), str(CONTRACTS)],
    }
    out = subprocess.run(["node", "-e", _COMPILE_JS], input=json.dumps(doc).encode(),
                         capture_output=True, cwd=NODE, check=True, timeout=300)
    result = json.loads(out.stdout)
    errors = [e["formattedMessage"] for e in result.get("errors", [])
              if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("solc: " + "\n".join(errors))
    contracts: dict[str, dict[str, Any]] = {}
    for file_contracts in result["contracts"].values():
        for name, c in file_contracts.items():
            contracts[name] = {"abi": c["abi"], "bytecode": "0x" + c["evm"]["bytecode"]["object"]}
    return contracts


def safe_artifact(relative: str) -> dict[str, Any]:
    """A Safe v1.4.1 build artifact, e.g. ``proxies/SafeProxyFactory.sol/SafeProxyFactory.json``
    (keys ``abi``, ``bytecode``, ``deployedBytecode``)."""
    return dict(json.loads((SAFE_BUILD / "contracts" / relative).read_text()))
