"""``signerctl wallet``: custody wallets."""
from __future__ import annotations

import json
import os
from typing import Any

from signerd.cli.args import (CATEGORIES, CHAINS, NETWORKS, SCRIPT_TYPES, TRON_NETWORKS,
                              Commands, command, group, uint)
from signerd.cli.context import Context
from signerd.cli.documents import wallet_json
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_text
from signerd.cli.render import Output, kv, proposal_output, table, wallet_text
from signerd.core import safe_wallet
from signerd.core.errors import SignerError
from signerd.core.ethereum import safe as SAFE
from signerd.core.ethereum.address import address_from_pubkey, to_checksum
from signerd.v1 import signerd_pb2 as pb


def cmd_wallet_create(ctx: Context) -> Output:
    a = ctx.args
    if a.kind == "safe":
        return safe_create(ctx)
    if a.safe or a.setup or a.key_share:
        raise CliError("wallet create: --safe, --setup and --key-share are for --kind safe")
    if a.chain == "bitcoin" and not a.network:
        raise CliError("wallet create: --network is required for bitcoin "
                       "(mainnet, testnet, signet or regtest)")
    if a.chain == "ethereum" and not a.chain_id:
        raise CliError("wallet create: --chain-id is required for ethereum")
    if a.chain == "tron" and a.network not in TRON_NETWORKS:
        raise CliError("wallet create: --network is required for tron (" + ", ".join(
            TRON_NETWORKS) + ")")
    script_type = a.script_type or ("p2wsh-sortedmulti" if a.multisig else None)
    template = wallet_template(ctx, a.policy, a.template)
    req = pb.CreateWalletRequest(
        chain=CHAINS[a.chain], network=a.network or "", chain_ids=a.chain_id or [],
        script_type=SCRIPT_TYPES[script_type] if script_type else pb.SCRIPT_TYPE_UNSPECIFIED,
        category=CATEGORIES[a.category], case_ref=a.case, legal_basis=a.legal_basis or "",
        template=template, threshold=a.multisig or 0, hsm_keys=a.hsm_keys or 0,
        cosigners=a.cosigner or [], label=a.label or "")
    return _create(ctx, req, "this wallet holds an outside key")


def _create(ctx: Context, req: pb.CreateWalletRequest, pending: str) -> Output:
    """CreateWallet; a wallet that waits for the governance quorum's approval is shown with
    ``pending`` (why it waits), its state and the proposal."""
    w = wallet_json(ctx.call(ctx.custody().CreateWallet, req))
    note = ""
    if w["proposal_id"]:
        note = (f"{pending}: it is {w['status']} until the governance quorum approves proposal "
                f"{w['proposal_id']}\n")
    return Output(w, lambda: wallet_text(w) + note)


def _setup(path: str) -> tuple[str, Any]:
    text = read_text(path, "Safe setup file")
    try:
        return text, SAFE.SafeSetup.from_json(json.loads(text))
    except (json.JSONDecodeError, ValueError, SignerError) as e:
        raise CliError(f"--setup {path}: not a Safe setup ({e})") from None


def safe_create(ctx: Context) -> Output:
    """A Safe wallet in two steps. Without --safe: an owner key made in the HSM (a key share),
    whose owner address the other institutions put in the Safe's owner list. With --safe,
    --setup and --key-share: the Safe recorded, once signerd checked that the setup deploys to
    that address and names the key share's owner address."""
    a = ctx.args
    if a.chain != "ethereum" or not a.chain_id or len(a.chain_id) != 1:
        raise CliError("wallet create --kind safe: --chain ethereum and one --chain-id")
    if a.multisig or a.hsm_keys or a.cosigner or a.script_type:
        raise CliError("wallet create --kind safe: the owners and threshold come from --setup "
                       "(no --multisig, --hsm-keys, --cosigner or --script-type)")
    if not a.safe:
        if a.setup or a.key_share:
            raise CliError("wallet create --kind safe: --setup and --key-share go with --safe")
        k = ctx.call(ctx.custody().CreateKeyShare, pb.CreateKeyShareRequest(
            category=CATEGORIES[a.category], case_ref=a.case))
        owner = address_from_pubkey(bytes(k.public_key))
        doc = {"key_share": k.key_id, "public_key": bytes(k.public_key).hex(), "owner": owner}
        return Output(doc, lambda: kv([("key share", k.key_id), ("owner address", owner)]) + (
            "put the owner address in the Safe's owners, deploy it (signerctl wallet "
            "safe-deploy --setup FILE), then: signerctl wallet create --kind safe --safe "
            f"ADDRESS --setup FILE --key-share {k.key_id} ...\n"))
    if not a.setup or not a.key_share:
        raise CliError("wallet create --kind safe --safe: --setup FILE and --key-share ID "
                       "(the owner key made by the first step) are required")
    text, _ = _setup(a.setup)
    req = pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=a.chain_id, script_type=pb.SAFE,
        category=CATEGORIES[a.category], case_ref=a.case, legal_basis=a.legal_basis or "",
        template=wallet_template(ctx, a.policy, a.template), hsm_key_ids=[a.key_share],
        safe_address=a.safe, safe_setup=text, label=a.label or "")
    return _create(ctx, req, "this Safe has owners outside this signerd")


def cmd_wallet_safe_deploy(ctx: Context) -> Output:
    """The factory call that deploys a Safe setup (offline): send it from any account. Only a
    setup of Safe v1.4.1's canonical factory, singleton and fallback handler, the only ones
    signerd records, is printed."""
    _, setup = _setup(ctx.args.setup)
    try:
        safe_wallet.check_canonical(setup)
    except SignerError as e:
        raise CliError(f"--setup {ctx.args.setup}: {e}") from None
    doc = {"to": to_checksum(setup.factory),
           "data": "0x" + SAFE.create_proxy_calldata(setup).hex(), "value": 0,
           "safe": to_checksum(SAFE.predicted_address(setup))}
    return Output(doc, lambda: kv([("to (factory)", doc["to"]), ("data", doc["data"]),
                                   ("safe address", doc["safe"])]))


def wallet_template(ctx: Context, policy: str | None, template: str | None) -> str:
    """The template a new wallet starts from. ``--policy`` names one, or a policy file whose
    text must be a governance-approved template (the platform never sends policy text: a
    wallet's own policy is a governance proposal)."""
    if policy and template:
        raise CliError("wallet create: --policy and --template name the same thing; give one")
    if not policy or not os.path.isfile(policy):
        return template or policy or ""
    text = read_text(policy, "policy file")
    for t in ctx.call(ctx.admin().ListTemplates, pb.ListTemplatesRequest()).templates:
        if t.toml == text:
            return str(t.name)
    raise CliError(f"--policy {policy}: this text is not a governance-approved template; name "
                   "one with --template (signerctl template list), or propose this text "
                   "(signerctl template set NAME FILE, or policy set WALLET FILE)")


def cmd_wallet_list(ctx: Context) -> Output:
    a = ctx.args
    cat = CATEGORIES[a.category] if a.category else pb.CATEGORY_UNSPECIFIED
    wallets = [wallet_json(w) for w in ctx.pages(
        ctx.custody().ListWallets,
        lambda page: pb.ListWalletsRequest(category=cat, case_ref=a.case or "", page=page),
        "wallets")]
    rows = [[w["id"], w["chain"],
             w["network"] if w["chain"] != "ethereum" else ",".join(map(str, w["chain_ids"])),
             w["category"], w["status"], w["case_ref"], w["address"]] for w in wallets]
    return Output({"wallets": wallets}, lambda: table(
        ["ID", "CHAIN", "NETWORK", "CATEGORY", "STATUS", "CASE", "ADDRESS"], rows))


def cmd_wallet_show(ctx: Context) -> Output:
    w = wallet_json(ctx.call(ctx.custody().GetWallet, pb.GetWalletRequest(wallet_id=ctx.args.id)))
    return Output(w, lambda: wallet_text(w))


def cmd_wallet_freeze(ctx: Context) -> Output:
    req = pb.FreezeWalletRequest(wallet_id=ctx.args.id, order_ref=ctx.args.order)
    if ctx.args.action == "unfreeze":
        return proposal_output(ctx.call(ctx.admin().UnfreezeWallet, req))
    w = wallet_json(ctx.call(ctx.admin().FreezeWallet, req))
    return Output(w, lambda: wallet_text(w))


def register(commands: Commands) -> None:
    g = group(commands, "wallet", "custody wallets")
    sp = command(g, "create", cmd_wallet_create, "create a wallet with keys made in the HSM")
    sp.add_argument("--chain", required=True, choices=sorted(CHAINS), help="the wallet's chain")
    sp.add_argument("--network", choices=NETWORKS, type=str.lower,
                    help="the Bitcoin network (required for bitcoin) or the Tron network "
                         "(required for tron: mainnet, nile or shasta)")
    sp.add_argument("--chain-id", type=uint, action="append", metavar="N",
                    help="an Ethereum chain id the wallet may sign for (required for ethereum; "
                         "repeat for several)")
    sp.add_argument("--category", required=True, choices=list(CATEGORIES),
                    help="the category of the assets it holds; categories never share a wallet")
    sp.add_argument("--case", required=True, metavar="REF", help="the case reference")
    sp.add_argument("--legal-basis", metavar="REF",
                    help="the court decision: 'COURT; CASE NUMBER; YYYY-MM-DD' (optional)")
    sp.add_argument("--template", metavar="NAME",
                    help="a governance-approved policy template (see: signerctl template list)")
    sp.add_argument("--policy", metavar="FILE_OR_NAME",
                    help="the wallet's initial policy: a template's name, or a file holding a "
                         "template's exact text")
    sp.add_argument("--script-type", choices=[s for s in SCRIPT_TYPES if s != "eoa"],
                    help="Bitcoin output script (default p2wpkh; p2wsh-sortedmulti with "
                         "--multisig)")
    sp.add_argument("--multisig", type=uint, metavar="M",
                    help="Bitcoin multisig: M signatures of the HSM's and the cosigners' keys")
    sp.add_argument("--hsm-keys", type=uint, metavar="K",
                    help="multisig: how many of the keys the HSM makes and holds")
    sp.add_argument("--cosigner", action="append", metavar="PUBKEY_OR_XPUB",
                    help="multisig: an outside cosigner's public key (repeat for several); the "
                         "wallet then waits for the governance quorum")
    sp.add_argument("--label", metavar="TEXT", help="a free-text label")
    sp.add_argument("--kind", choices=["standard", "safe"], default="standard",
                    help="safe: an Ethereum Safe (v1.4.1) one of whose owners is an HSM key: "
                         "first without --safe (makes the owner key, prints its address), then "
                         "with --safe, --setup and --key-share")
    sp.add_argument("--safe", metavar="ADDRESS", help="--kind safe: the Safe's address")
    sp.add_argument("--setup", metavar="FILE.json",
                    help="--kind safe: the Safe's setup (owners, threshold, fallbackHandler, "
                         "singleton, factory, saltNonce); it must deploy to --safe")
    sp.add_argument("--key-share", metavar="ID",
                    help="--kind safe: the owner key the first step made")
    sp = command(g, "safe-deploy", cmd_wallet_safe_deploy,
                 "print the factory call (to, data) that deploys a Safe setup")
    sp.add_argument("--setup", required=True, metavar="FILE.json", help="the Safe's setup")
    sp = command(g, "list", cmd_wallet_list, "list wallets")
    sp.add_argument("--category", choices=list(CATEGORIES), help="only this category")
    sp.add_argument("--case", metavar="REF", help="only this case")
    sp = command(g, "show", cmd_wallet_show, "show a wallet")
    sp.add_argument("id", help="the wallet's id (w_...)")
    for action, what in (("freeze", "freezes it at once"),
                         ("unfreeze", "lifts the freeze; a proposal for the governance quorum")):
        sp = command(g, action, cmd_wallet_freeze, f"{action} a wallet by court order", "admin")
        sp.add_argument("id", help="the wallet's id (w_...)")
        sp.add_argument("--order", required=True, metavar="REF",
                        help=f"the court order that {what}")
        sp.set_defaults(action=action)
