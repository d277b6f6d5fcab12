"""``signerctl transfer``: transfers. Show, approve and reject rebuild the statement here from
the raw transaction (``verify``) and show and sign only the rebuilt one."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from signerd.core import approval
from signerd.cli.args import (STATES, Commands, command, decision_commands, group,
                              transfer_state, uint)
from signerd.cli.context import Context
from signerd.cli.deciding import confirm_shown, start_decision
from signerd.cli.documents import movement_json, to_dict, transfer_json
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_file
from signerd.cli.render import (Output, fmt_time, kv, proposal_output, safe, table,
                                transfer_text)
from signerd.cli.verify import Rebuilt, accepted_sighash, rebuild_statement
from signerd.core.model import Decision
from signerd.core.policy import CATEGORY_CHANGES, SIGHASH_TYPES
from signerd.core.tron import tx as tron_tx
from signerd.v1 import signerd_pb2 as pb


FINAL_STATES = frozenset({pb.SIGNED, pb.REJECTED, pb.EXPIRED, pb.CANCELLED, pb.FAILED})


def transfer_summary(t: dict[str, Any]) -> str:
    line = f"transfer {safe(t['id'])}: {t['state']}"
    if t["remaining"] and t["state"] == "PENDING_APPROVAL":
        line += f"; remaining: {safe(t['remaining'])}"
    return line + "\n"


def _looks_like_psbt(data: bytes) -> bool:
    """BIP-174's magic, binary (``psbt\\xff``) or base64 (``cHNidP``)."""
    return data.startswith(b"psbt\xff") or data.lstrip().startswith(b"cHNidP")


def _read_psbt(path: str) -> bytes:
    data = read_file(path, "PSBT file")
    if data.lstrip()[:1] in (b"{", b"["):
        raise CliError(f"--psbt {path}: this file looks like an Ethereum transaction (JSON), "
                       f"not a PSBT; an Ethereum transaction goes in with transfer submit WALLET "
                       f"--eth-tx {path}")
    return data


def _read_tx_json(flag: str, path: str, what: str) -> str:
    """A transaction file given as ``flag`` (``what``: "a Tron transaction", ...), as text."""
    data = read_file(path, "transaction file")
    if _looks_like_psbt(data):
        raise CliError(f"{flag} {path}: this file looks like a Bitcoin PSBT, not {what} (JSON); "
                       f"submit it with --psbt {path}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"transaction file {path} is not UTF-8 text") from None


def cmd_transfer_submit(ctx: Context) -> Output:
    a = ctx.args
    req = pb.SubmitTransferRequest(wallet_id=a.wallet, replaces=a.replaces or "",
                                   legal_basis=a.legal_basis or "",
                                   category_change=a.category_change or "",
                                   idempotency_key=a.idempotency_key or "")
    if a.psbt:
        req.psbt = _read_psbt(a.psbt)
    elif a.tron_tx:
        req.tron.json = _read_tx_json("--tron-tx", a.tron_tx, "a Tron transaction")
    elif a.safe_tx:
        try:
            req.safe_tx = read_file(a.safe_tx, "SafeTx file").decode("utf-8")
        except UnicodeDecodeError:
            raise CliError(f"SafeTx file {a.safe_tx} is not UTF-8 text") from None
    else:
        req.ethereum.json = _read_tx_json("--eth-tx", a.eth_tx, "an Ethereum transaction")
    t = transfer_json(ctx.call(ctx.custody().SubmitTransfer, req))
    return Output(t, lambda: transfer_text(t))


def cmd_transfer_list(ctx: Context) -> Output:
    a = ctx.args
    state = pb.TransferState.Value(a.state) if a.state else pb.TRANSFER_STATE_UNSPECIFIED
    if ctx.is_operator:  # an operator sees what waits for them
        found = ctx.pages(ctx.approval().ListPending,
                          lambda page: pb.ListPendingRequest(page=page), "transfers")
        found = (t for t in found if (not a.wallet or t.wallet_id == a.wallet)
                 and (not a.state or t.state == state))
    else:
        found = ctx.pages(ctx.custody().ListTransfers, lambda page: pb.ListTransfersRequest(
            wallet_id=a.wallet or "", state=state, page=page), "transfers")
    ts = [transfer_json(t) for t in found]
    return Output({"transfers": ts}, lambda: table(
        ["ID", "WALLET", "CHAIN", "STATE", "CREATED", "EXPIRES", "REMAINING"],
        [[t["id"], t["wallet_id"], t["chain"], t["state"], fmt_time(t["created_at"]),
          fmt_time(t["expires_at"]), t["remaining"] if t["state"] == "PENDING_APPROVAL" else ""]
         for t in ts]))


def _verified(ctx: Context, decision: Decision, allowed_sighash: frozenset[int]
              ) -> tuple[pb.Statement, Rebuilt]:
    a = ctx.args
    st = ctx.call(ctx.approval().GetStatement, pb.GetStatementRequest(
        transfer_id=a.id, decision=pb.Decision.Value(decision.value)))
    instance = ctx.config.instance_id if ctx.config is not None else None
    rebuilt = rebuild_statement(st, a.id, decision, limits=ctx.limits, instance_id=instance,
                                allowed_sighash=allowed_sighash)
    return st, rebuilt


def cmd_transfer_show(ctx: Context) -> Output:
    a = ctx.args
    if ctx.is_operator:
        # Showing signs nothing: every standard sighash type decodes, and the movement shows
        # each input's type with a WARNING for any but ALL. Approving one but ALL still needs
        # --allow-sighash.
        st, rebuilt = _verified(ctx, Decision.APPROVE, frozenset(SIGHASH_TYPES.values()))
        t = transfer_json(st.transfer)
        t["movement"] = movement_json(rebuilt.movement)
        t["statement_verified"] = True
        address = st.wallet.address
    else:
        tr = ctx.call(ctx.custody().GetTransfer, pb.GetTransferRequest(transfer_id=a.id))
        t = transfer_json(tr)
        address = ctx.call(ctx.custody().GetWallet,
                           pb.GetWalletRequest(wallet_id=tr.wallet_id)).address
    t["from_address"] = address
    return Output(t, lambda: transfer_text(t, address)
                  + ("statement:        rebuilt here from the raw transaction; it matches\n"
                     if t.get("statement_verified") else ""))


def cmd_transfer_decide(ctx: Context) -> Output:
    a = ctx.args
    decision, key = start_decision(ctx, "transfer")
    try:
        _, rebuilt = _verified(ctx, decision, accepted_sighash(a.allow_sighash))
    except CliError as e:
        raise CliError(f"{e}; refusing to sign") from None
    shown = approval.render(rebuilt.context, rebuilt.movement, decision)
    confirm_shown(ctx, shown, decision)
    signature = key.sign_digest(approval.statement_digest(rebuilt.statement))
    t = transfer_json(ctx.call(ctx.approval().SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=a.id, operator_id=ctx.principal,
        decision=pb.Decision.Value(decision.value), signature=signature,
        reason=a.reason or "", statement_sha256=approval.statement_digest(rebuilt.statement))))
    verb = "approved" if decision is Decision.APPROVE else "rejected"
    return Output(t, lambda: f"{verb} as {ctx.principal}; " + transfer_summary(t))


def cmd_transfer_cancel(ctx: Context) -> Output:
    t = transfer_json(ctx.call(ctx.custody().CancelTransfer, pb.CancelTransferRequest(
        transfer_id=ctx.args.id, reason=ctx.args.reason or "")))
    return Output(t, lambda: transfer_summary(t))


def safe_text(doc: dict[str, Any]) -> str:
    pairs: list[tuple[str, object]] = [
        ("transfer", doc["transfer_id"]), ("state", doc["state"]),
        ("safe", f"{doc['safe']} on chain {doc['chain_id']}"),
        ("safe tx hash", doc["safe_tx_hash"]), ("safe nonce", doc["safe_nonce"]),
        ("owner", doc["owner"]), ("owner signature", doc["owner_signature"] or "-"),
        ("signatures", f"{len(doc['signatures'])} of the threshold of {doc['threshold']}")]
    pairs += [(f"  {s['owner']}", s["signature"]) for s in doc["signatures"]]
    pairs += [(f"  refused {r['owner']}", r["reason"]) for r in doc["refused"]]
    if doc["complete"]:
        pairs += [("execTransaction to", doc["exec_to"]), ("calldata", doc["exec_calldata"])]
    return kv(pairs)


def cmd_transfer_result(ctx: Context) -> Output:
    t = transfer_json(ctx.call(ctx.custody().GetTransfer,
                               pb.GetTransferRequest(transfer_id=ctx.args.id)))
    wallet = ctx.call(ctx.custody().GetWallet, pb.GetWalletRequest(wallet_id=t["wallet_id"]))
    if wallet.script_type == pb.SAFE:
        doc = to_dict(ctx.call(ctx.custody().GetSafeSignatures,
                                 pb.GetTransferRequest(transfer_id=ctx.args.id)))
        if not doc["owner_signature"]:
            raise CliError(f"transfer {safe(t['id'])} has no owner signature yet (state "
                           f"{t['state']})", doc=doc)
        return Output(doc, safe_text(doc), quiet=doc["exec_calldata"] or doc["owner_signature"])
    if not (t["raw_tx"] or t["psbt"]):
        raise CliError(f"transfer {safe(t['id'])} has no signed result (state {t['state']})",
                       doc=t)
    if t["chain"] == "tron" and t["raw_tx"]:
        # The signed transaction as /wallet/broadcasttransaction takes it; raw_tx (hex of the
        # signed Transaction message) is what /wallet/broadcasthex takes.
        t["tron_transaction"] = tron_tx.signed_json(t["raw_tx"])
    return Output(t, result_text(t), quiet=t["raw_tx"] or t["psbt"])


def result_text(t: dict[str, Any]) -> str:
    """A signed transfer's result, one labelled line each: the PSBT (Bitcoin; partially signed
    while a multisig wallet's threshold is not met), the raw transaction and its hash."""
    pairs: list[tuple[str, object]] = []
    if t["psbt"]:
        pairs.append(("signed PSBT" if t["raw_tx"] else "partially signed PSBT", t["psbt"]))
    if t["raw_tx"]:
        pairs.append(("raw transaction", t["raw_tx"]))
    if t.get("tron_transaction"):
        pairs.append(("signed transaction (JSON, /wallet/broadcasttransaction)",
                      json.dumps(t["tron_transaction"], sort_keys=True)))
    if t["tx_hash"]:
        pairs.append(("tx hash" if t["chain"] == "ethereum" else "txid", t["tx_hash"]))
    return kv(pairs)


def cmd_transfer_watch(ctx: Context) -> Output:
    stream = ctx.custody().WatchTransfer(pb.WatchTransferRequest(transfer_id=ctx.args.id))
    last: pb.Transfer | None = None
    seen: tuple[int, str] | None = None
    try:
        for t in stream:
            last = t
            if not ctx.machine_output and (t.state, t.remaining) != seen:
                sys.stdout.write(f"{fmt_time(t.updated_at_unix)} " + transfer_summary(
                    transfer_json(t)))
                sys.stdout.flush()
            seen = (t.state, t.remaining)
            if t.state in FINAL_STATES:
                break
    finally:
        stream.cancel()
    if last is None or last.state not in FINAL_STATES:
        raise CliError("the daemon ended the watch before the transfer reached a final state",
                       doc=None if last is None else transfer_json(last))
    doc = transfer_json(last)
    if last.state != pb.SIGNED:
        why = f": {safe(last.failure)}" if last.failure else ""
        raise CliError(f"transfer {safe(last.id)} ended {doc['state']}{why}", doc=doc)
    return Output(doc)  # the lines above were the text


def cmd_transfer_combine(ctx: Context) -> Output:
    a = ctx.args
    if a.signature or a.owner:
        if a.psbt or not (a.signature and a.owner):
            raise CliError("transfer combine: a Safe owner's signature takes --signature HEX "
                           "and --owner ADDRESS (and no --psbt)")
        text = a.signature[2:] if a.signature.startswith("0x") else a.signature
        try:
            sig = bytes.fromhex(text)
        except ValueError:
            raise CliError("--signature: not hex") from None
        doc = to_dict(ctx.call(ctx.custody().CombineSafeSignature,
                                 pb.CombineSafeSignatureRequest(transfer_id=a.id, owner=a.owner,
                                                                signature=sig)))
        return Output(doc, lambda: safe_text(doc))
    if not a.psbt:
        raise CliError("transfer combine: --psbt FILE (Bitcoin) or --signature and --owner "
                       "(a Safe owner's signature)")
    t = transfer_json(ctx.call(ctx.custody().CombinePsbt, pb.CombinePsbtRequest(
        transfer_id=ctx.args.id, psbt=_read_psbt(ctx.args.psbt))))
    return Output(t, lambda: transfer_summary(t))


def cmd_transfer_execute(ctx: Context) -> Output:
    """A Safe transfer whose owners' signatures meet the threshold, sent by an ordinary
    Ethereum wallet of this signerd (the executor): an EIP-1559 transaction to the Safe with
    value 0 and the execTransaction calldata, submitted as the executor wallet's own transfer
    (its quorum and policy decide it, as any contract call)."""
    a = ctx.args
    r = ctx.call(ctx.custody().GetSafeSignatures, pb.GetTransferRequest(transfer_id=a.id))
    if not r.complete:
        raise CliError(f"transfer {safe(a.id)}: {len(r.signatures)} owner signature(s) of the "
                       f"threshold of {r.threshold}; combine more first (transfer combine)")
    fields = {"chainId": int(r.chain_id), "nonce": a.nonce, "gas": a.gas,
              "maxFeePerGas": a.max_fee_per_gas,
              "maxPriorityFeePerGas": a.max_priority_fee_per_gas, "to": r.exec_to, "value": 0,
              "data": r.exec_calldata, "accessList": []}
    req = pb.SubmitTransferRequest(wallet_id=a.executor, ethereum=pb.EthereumTransaction(
        json=json.dumps(fields)))
    t = transfer_json(ctx.call(ctx.custody().SubmitTransfer, req))
    return Output(t, lambda: transfer_text(t))


def cmd_transfer_safe_owners(ctx: Context) -> Output:
    return proposal_output(ctx.call(ctx.admin().ProposeSafeOwners,
                                    pb.ProposeSafeOwnersRequest(transfer_id=ctx.args.id)))


def register(commands: Commands) -> None:
    g = group(commands, "transfer", "transfers")
    sp = command(g, "submit", cmd_transfer_submit, "submit a transaction to be signed")
    sp.add_argument("wallet", help="the id of the wallet that signs (w_...)")
    tx = sp.add_mutually_exclusive_group(required=True)
    tx.add_argument("--psbt", metavar="FILE", help="a Bitcoin PSBT, binary or base64")
    tx.add_argument("--eth-tx", metavar="FILE.json",
                    help="an Ethereum EIP-1559 transaction as JSON (eth-account's dict form)")
    tx.add_argument("--tron-tx", metavar="FILE.json",
                    help='an unsigned Tron transaction as JSON ({"raw_data_hex": ..., "txID": '
                         '...} as TronWeb or tronpy write it)')
    tx.add_argument("--safe-tx", metavar="FILE.json",
                    help="a Safe wallet's SafeTx as JSON (to, value, data, operation, "
                         "safeTxGas, baseGas, gasPrice, gasToken, refundReceiver, nonce)")
    sp.add_argument("--replaces", metavar="ID",
                    help="the transfer this one replaces (a fee bump of the same nonce or "
                         "outpoints)")
    sp.add_argument("--legal-basis", metavar="REF",
                    help="the court decision: 'COURT; CASE NUMBER; YYYY-MM-DD' (required with "
                         "--category-change)")
    changes = sorted(CATEGORY_CHANGES)
    sp.add_argument("--category-change", choices=changes, metavar="KIND",
                    help="declare a movement between categories: " + ", ".join(changes)
                         + " (default none); it goes to a wallet of this signerd of the target "
                           "category")
    sp.add_argument("--idempotency-key", metavar="K",
                    help="a retry with the same key for the wallet returns the transfer the "
                         "first one made instead of a new one")
    sp = command(g, "list", cmd_transfer_list, "list transfers (an operator: those waiting)")
    sp.add_argument("--state", type=transfer_state, metavar="STATE",
                    help="only this state: " + ", ".join(STATES))
    sp.add_argument("--wallet", metavar="ID", help="only this wallet's")
    sp = command(g, "show", cmd_transfer_show, "show a transfer and what it moves")
    sp.add_argument("id", help="the transfer's id (t_...)")
    # Accepted as before; show decodes every standard sighash type and warns of any but ALL.
    sp.add_argument("--allow-sighash", action="append", choices=sorted(SIGHASH_TYPES),
                    help=argparse.SUPPRESS)
    for sp in decision_commands(g, "transfer", cmd_transfer_decide):
        sp.add_argument("--allow-sighash", action="append", choices=sorted(SIGHASH_TYPES),
                        metavar="TYPE", help="also accept this Bitcoin sighash type (repeat for "
                                             "several): " + ", ".join(sorted(SIGHASH_TYPES)))
    sp = command(g, "cancel", cmd_transfer_cancel, "cancel a live transfer")
    sp.add_argument("id", help="the transfer's id (t_...)")
    sp.add_argument("--reason", metavar="TEXT", help="why, kept in the audit trail")
    sp = command(g, "result", cmd_transfer_result, "print the signed transaction, labelled "
                 "(-q: the raw transaction alone)")
    sp.add_argument("id", help="the transfer's id (t_...)")
    sp = command(g, "watch", cmd_transfer_watch, "follow a transfer until it ends")
    sp.add_argument("id", help="the transfer's id (t_...)")
    sp = command(g, "combine", cmd_transfer_combine, "add cosigners' signatures from a PSBT")
    sp.add_argument("id", help="the transfer's id (t_...)")
    sp.add_argument("--psbt", metavar="FILE",
                    help="the PSBT with the cosigners' signatures, binary or base64")
    sp.add_argument("--signature", metavar="HEX",
                    help="Safe: another owner's signature of the SafeTx hash (65 bytes; v "
                         "27/28 EIP-712, 31/32 eth_sign)")
    sp.add_argument("--owner", metavar="ADDRESS", help="Safe: the owner who made --signature")
    sp = command(g, "execute", cmd_transfer_execute,
                 "submit a complete Safe transfer's execTransaction from an executor wallet")
    sp.add_argument("id", help="the Safe transfer's id (t_...)")
    sp.add_argument("--executor", required=True, metavar="WALLET",
                    help="an ordinary Ethereum wallet of this signerd that pays the gas")
    sp.add_argument("--nonce", required=True, type=uint, metavar="N",
                    help="the executor's account nonce")
    sp.add_argument("--gas", required=True, type=uint, metavar="G", help="the gas limit")
    sp.add_argument("--max-fee-per-gas", required=True, type=uint, metavar="WEI",
                    help="EIP-1559 maxFeePerGas")
    sp.add_argument("--max-priority-fee-per-gas", required=True, type=uint, metavar="WEI",
                    help="EIP-1559 maxPriorityFeePerGas")
    sp = command(g, "safe-owners", cmd_transfer_safe_owners,
                 "propose the governance approval a Safe transfer changing its Safe needs",
                 "admin")
    sp.add_argument("id", help="the transfer's id (t_...)")
