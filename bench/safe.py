"""Safe transfers: latency from the quorum-making approval to the owner signature.

A real ``signerd run`` daemon over mTLS with a Safe wallet (a 2-of-2 Safe: this daemon's HSM
owner key and an outside owner, approved by the demo governance quorum; no chain is needed, the
Safe's address is the setup's CREATE2 address). For each of N SafeTx transfers (nonces 0..N-1,
one at a time): SubmitTransfer, inv1's approval, then cust1's quorum-making SubmitApproval is
timed from sending it to holding the owner signature (GetSafeSignatures returns it; the
approval returns once the sign step signed, so the second call only reads it back). The same
is measured for an ordinary EIP-1559 transfer in the same run for comparison, and the
execTransaction build (CombineSafeSignature with the outside owner's signature: recovery,
packing, calldata) is timed too. Prints a Markdown table and writes the JSON (``--json``).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ROOT, Daemon, log, part_args, percentiles, set_config,  # noqa: E402
                    signerd_init, workdir, write_json)

sys.path.insert(0, str(ROOT))

from tests.support.governance import decide, govern, set_policy  # noqa: E402
from tests.support.rpc import pb  # noqa: E402
from tests.support.safe import moves_policy  # noqa: E402

CHAIN_ID = 31337
POLICY = moves_policy("bench")
DEST = "0x000000000000000000000000000000000000dEaD"
ZERO = "0x" + "00" * 20


def safe_wallet(d: Daemon, outside: str) -> pb.Wallet:
    from signerd.core.ethereum.address import address_from_pubkey
    from signerd.core.ethereum.safe import (CANONICAL_FACTORY, CANONICAL_FALLBACK_HANDLER,
                                            CANONICAL_SINGLETON, SafeSetup, predicted_address)
    from eth_utils import to_checksum_address

    share = d.custody().CreateKeyShare(pb.CreateKeyShareRequest(category=pb.SEIZED,
                                                                case_ref="BENCH-SAFE"))
    owner = address_from_pubkey(bytes(share.public_key))
    doc = {"owners": [owner, outside], "threshold": 2,
           "fallbackHandler": to_checksum_address(CANONICAL_FALLBACK_HANDLER),
           "singleton": to_checksum_address(CANONICAL_SINGLETON),
           "factory": to_checksum_address(CANONICAL_FACTORY), "saltNonce": 1}
    address = to_checksum_address(predicted_address(SafeSetup.from_json(doc)))
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], script_type=pb.SAFE, category=pb.SEIZED,
        case_ref="BENCH-SAFE", hsm_key_ids=[share.key_id], safe_address=address,
        safe_setup=json.dumps(doc)))
    p = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=w.proposal_id))
    assert govern(d, p).state == "APPROVED"
    set_policy(d, w.id, POLICY)
    return w


def safe_tx(nonce: int) -> str:
    return json.dumps({"to": DEST, "value": 1000, "data": "0x", "operation": 0, "safeTxGas": 0,
                       "baseGas": 0, "gasPrice": 0, "gasToken": ZERO, "refundReceiver": ZERO,
                       "nonce": nonce})


def eth_tx(nonce: int) -> str:
    return json.dumps({"chainId": CHAIN_ID, "nonce": nonce, "maxPriorityFeePerGas": 10**9,
                       "maxFeePerGas": 2 * 10**9, "gas": 21000, "to": DEST, "value": 1000,
                       "data": "0x", "accessList": []})


def measure(d: Daemon, n: int, outside: Any) -> dict[str, Any]:
    wallet = safe_wallet(d, outside.address)
    eoa = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], category=pb.SEIZED, case_ref="BENCH-SAFE"))
    set_policy(d, eoa.id, POLICY)
    safe_lat, safe_rpc, eoa_lat, combine_lat = [], [], [], []
    for i in range(n):
        t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=wallet.id,
                                                                safe_tx=safe_tx(i)))
        decide(d, t.id, "inv1")
        st = d.approval("cust1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
        t0 = time.perf_counter()
        got = decide(d, t.id, "cust1", statement=st.statement)
        t1 = time.perf_counter()
        r = d.custody().GetSafeSignatures(pb.GetTransferRequest(transfer_id=t.id))
        t2 = time.perf_counter()
        assert got.state == pb.SIGNED and r.owner_signature, (got.state, r)
        safe_rpc.append(t1 - t0)
        safe_lat.append(t2 - t0)
        digest = bytes.fromhex(r.safe_tx_hash[2:])
        sig = bytes(outside.unsafe_sign_hash(digest).signature)
        t3 = time.perf_counter()
        done = d.custody().CombineSafeSignature(pb.CombineSafeSignatureRequest(
            transfer_id=t.id, owner=outside.address, signature=sig))
        combine_lat.append(time.perf_counter() - t3)
        assert done.complete and done.exec_calldata
        e = d.custody().SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=eoa.id, ethereum=pb.EthereumTransaction(json=eth_tx(i))))
        decide(d, e.id, "inv1")
        st = d.approval("cust1").GetStatement(pb.GetStatementRequest(transfer_id=e.id,
                                                                     decision=pb.APPROVE))
        t0 = time.perf_counter()
        got = decide(d, e.id, "cust1", statement=st.statement)
        eoa_lat.append(time.perf_counter() - t0)
        assert got.state == pb.SIGNED and got.raw_tx
    return {"transfers": n,
            "safe_approval_to_owner_signature_ms": percentiles(safe_lat),
            "safe_quorum_making_approval_rpc_ms": percentiles(safe_rpc),
            "eoa_approval_to_signed_tx_ms": percentiles(eoa_lat),
            "combine_to_exec_calldata_ms": percentiles(combine_lat)}


def table(res: dict[str, Any]) -> str:
    rows = [("SafeTx: quorum-making approval -> owner signature read back",
             res["safe_approval_to_owner_signature_ms"]),
            ("SafeTx: the quorum-making SubmitApproval alone",
             res["safe_quorum_making_approval_rpc_ms"]),
            ("EIP-1559 (same daemon): quorum-making approval -> signed tx",
             res["eoa_approval_to_signed_tx_ms"]),
            ("CombineSafeSignature -> execTransaction calldata",
             res["combine_to_exec_calldata_ms"])]
    out = ["| path (ms) | n | p50 | p90 | p99 | max | mean |", "|---|---|---|---|---|---|---|"]
    for name, p in rows:
        out.append(f"| {name} | {p['n']} | {p['p50']} | {p['p90']} | {p['p99']} | {p['max']} | "
                   f"{p['mean']} |")
    return "\n".join(out)


def main() -> None:
    args = part_args(__doc__ or "")
    n = 20 if args.quick else 200
    from eth_account import Account

    with workdir(args.workdir) as wd:
        cfg = signerd_init(wd / "state-safe")
        set_config(cfg, "limits", rate_per_second=0)
        d = Daemon(cfg).start()
        try:
            log(f"safe: {n} SafeTx transfers and {n} EIP-1559 transfers, one at a time")
            res = measure(d, n, Account.create())
        finally:
            d.stop()
    res["table"] = table(res)
    print(res["table"])
    write_json(args.json, res)


if __name__ == "__main__":
    main()
