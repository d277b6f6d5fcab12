#!/usr/bin/env python3
"""Safe walkthrough: a 2-of-3 Safe (v1.4.1) owned by two signerd daemons (two state folders,
two SoftHSM tokens, two institutions) and one outside key, on a local anvil node, to a mined
``execTransaction``.

Run from the checkout (it uses anvil and the Safe artifacts pinned in tests/node):

    python scripts/safe_walkthrough.py --work safe-demo

Every signerd step is a ``signerctl`` command, printed before it runs:

 1. anvil starts; Safe 1.4.1's singleton, proxy factory and fallback handler are placed at
    their canonical addresses (the only ones signerd records a Safe of) from the npm
    artifacts' runtime code, with a test ERC-20.
 2. Each institution makes its owner key in its HSM: ``wallet create --kind safe`` (no --safe)
    prints the owner address.
 3. The setup (three owners, threshold 2) is written to setup.json; ``wallet safe-deploy``
    prints the factory call, which any account sends.
 4. Each institution records the Safe: ``wallet create --kind safe --safe ADDRESS --setup
    setup.json --key-share ID`` (checked: the address is the setup's, of the canonical
    factory, singleton and handler, the owner key is an owner); outside owners make it a
    governance act, approved by two admins; its policy too.
 5. The same SafeTx (1 ETH out) is submitted to both daemons and approved by each one's
    quorum (signerctl rebuilds each statement from the SafeTx before signing it).
 6. B's owner signature goes to A (``transfer combine --signature --owner``): the threshold is
    met and A builds the execTransaction calldata.
 7. An ordinary Ethereum wallet of A (the executor, funded with gas) sends it: ``transfer
    execute`` submits an EIP-1559 transaction to the Safe with value 0 and that calldata,
    decided by the executor wallet's own quorum and policy (a rule for this contract call);
    the raw transaction goes to anvil and is mined.

The last line printed is a JSON summary (the test runs this script and reads it).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# signerd and signerctl run as `python -m` from other folders: this checkout's code first.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

from tests.support import evm  # noqa: E402
from tests.support.daemon import Daemon, init_state, signerctl_cmd  # noqa: E402
from tests.support.safe import ETHER, SafeDeployment, moves_policy, safe_tx  # noqa: E402

CHAIN_ID = 31337
CASE = "CASE-SAFE-WALKTHROUGH"
DEST = "0x000000000000000000000000000000000000dEaD"
SAFE_POLICY = moves_policy("safe")
EXECUTOR_POLICY = """name = "executor"
expiry = "1h"
allow_contract_calls = true
allowlist = ["{safe}"]

[[rule]]
name = "exec"
asset = "ETH"
max_amount = "0"
destination = ["allowlisted"]
contract_call = true
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
"""


class Institution:
    def __init__(self, name: str, daemon: Daemon, work: Path):
        self.name, self.d, self.work = name, daemon, work

    def ctl(self, *args: str, who: str = "") -> Any:
        cmd = ["--config", str(self.d.config), "--server", f"127.0.0.1:{self.d.port}", "--json"]
        if who:
            cmd += ["--as", who]
        shown = " ".join(shlex.quote(a) for a in ("signerctl", *(["--as", who] if who else []),
                                                 *args))
        print(f"[{self.name}] $ {shown}", flush=True)
        r = subprocess.run(signerctl_cmd(*cmd, *args), capture_output=True, text=True,
                           timeout=120, cwd=self.work)
        if r.returncode != 0:
            raise SystemExit(f"[{self.name}] signerctl failed ({r.returncode}): {r.stderr}")
        return json.loads(r.stdout) if r.stdout.strip() else None

    def key(self, op: str) -> str:
        return str(self.d.state / "operators" / f"{op}.key")

    def approve_proposal(self, proposal_id: str) -> None:
        for op in ("admin1", "admin2"):
            self.ctl("proposal", "approve", proposal_id, "--key", self.key(op), "--yes", who=op)

    def approve_transfer(self, transfer_id: str) -> Any:
        self.ctl("transfer", "approve", transfer_id, "--key", self.key("inv1"), "--yes",
                 who="inv1")
        return self.ctl("transfer", "approve", transfer_id, "--key", self.key("cust1"), "--yes",
                        who="cust1")

    def set_policy(self, wallet_id: str, text: str) -> None:
        path = self.work / f"policy-{wallet_id}.toml"
        path.write_text(text)
        p = self.ctl("policy", "set", wallet_id, str(path))
        self.approve_proposal(p["id"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path, help="a folder for both state folders")
    work = ap.parse_args().work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    node = evm.Anvil.start(CHAIN_ID)
    daemons: list[Daemon] = []
    try:
        print("1. anvil and Safe 1.4.1 (singleton, factory, fallback handler)", flush=True)
        dep = SafeDeployment(node)
        from eth_account import Account

        outside = Account.create()
        insts = []
        for name in ("A", "B"):
            d = Daemon(init_state(work / f"state-{name}")).start()
            daemons.append(d)
            insts.append(Institution(name, d, work))
        a, b = insts

        print("2. each institution makes its owner key in its HSM", flush=True)
        made = [i.ctl("wallet", "create", "--kind", "safe", "--chain", "ethereum", "--chain-id",
                      str(CHAIN_ID), "--category", "seized", "--case", CASE) for i in insts]
        owners = [m["owner"] for m in made] + [outside.address]

        print("3. the setup, and the Safe deployed through its factory", flush=True)
        setup = dep.setup_json(owners, 2, salt=42)
        setup_file = work / "setup.json"
        setup_file.write_text(json.dumps(setup, indent=2))
        call = a.ctl("wallet", "safe-deploy", "--setup", str(setup_file))
        safe = dep.deploy_safe(setup, call["data"])
        assert safe.address == call["safe"], (safe.address, call["safe"])
        node.fund(safe.address, 5 * ETHER)

        print("4. each institution records the Safe (checked), under governance", flush=True)
        wallets = []
        for inst, m in zip(insts, made):
            w = inst.ctl("wallet", "create", "--kind", "safe", "--chain", "ethereum",
                         "--chain-id", str(CHAIN_ID), "--category", "seized", "--case", CASE,
                         "--safe", safe.address, "--setup", str(setup_file), "--key-share",
                         m["key_share"])
            assert w["status"] == "awaiting_approval" or w["status"].upper() == \
                "AWAITING_APPROVAL", w["status"]
            inst.approve_proposal(w["proposal_id"])
            inst.set_policy(w["id"], SAFE_POLICY)
            wallets.append(w)

        print("5. one SafeTx, approved by each daemon's quorum", flush=True)
        tx = safe_tx(DEST, value=ETHER, nonce=int(safe.call("nonce")))
        tx_file = work / "safetx.json"
        tx_file.write_text(json.dumps(tx, indent=2))
        transfers = []
        for inst, w in zip(insts, wallets):
            t = inst.ctl("transfer", "submit", w["id"], "--safe-tx", str(tx_file))
            t = inst.approve_transfer(t["id"])
            assert t["state"] == "SIGNED", t["state"]
            transfers.append(t["id"])

        print("6. B's owner signature to A: the threshold is met", flush=True)
        rb = b.ctl("transfer", "result", transfers[1])
        done = a.ctl("transfer", "combine", transfers[0], "--signature", rb["owner_signature"],
                     "--owner", rb["owner"])
        assert done["complete"], done

        print("7. A's executor wallet sends execTransaction (its own quorum)", flush=True)
        ex = a.ctl("wallet", "create", "--chain", "ethereum", "--chain-id", str(CHAIN_ID),
                   "--category", "seized", "--case", CASE)
        a.set_policy(ex["id"], EXECUTOR_POLICY.format(safe=safe.address))
        node.fund(ex["address"], ETHER)
        t = a.ctl("transfer", "execute", transfers[0], "--executor", ex["id"], "--nonce",
                  str(node.nonce(ex["address"])), "--gas", "300000", "--max-fee-per-gas",
                  str(50 * 10**9), "--max-priority-fee-per-gas", str(10**9))
        t = a.approve_transfer(t["id"])
        raw = a.ctl("transfer", "result", t["id"])["raw_tx"]
        before = node.balance(DEST)
        receipt = node.send_raw(raw)
        mined = int(receipt["status"], 16) == 1
        moved = node.balance(DEST) - before
        print(json.dumps({"safe": safe.address, "safe_tx_hash": done["safe_tx_hash"],
                          "exec_tx": receipt["transactionHash"], "mined": mined,
                          "moved_wei": moved, "safe_nonce": int(safe.call("nonce"))}))
        return 0 if mined and moved == ETHER else 1
    finally:
        for d in daemons:
            d.stop()
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
