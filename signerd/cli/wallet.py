"""``signerctl wallet``: custody wallets."""
from __future__ import annotations

import os

from signerd.cli.args import (CATEGORIES, CHAINS, NETWORKS, SCRIPT_TYPES, TRON_NETWORKS,
                              Commands, command, group, uint)
from signerd.cli.context import Context
from signerd.cli.documents import wallet_json
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_text
from signerd.cli.render import Output, proposal_output, table, wallet_text
from signerd.v1 import signerd_pb2 as pb


def cmd_wallet_create(ctx: Context) -> Output:
    a = ctx.args
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
    w = wallet_json(ctx.call(ctx.custody().CreateWallet, req))
    note = ""
    if w["proposal_id"]:
        note = (f"this wallet holds an outside key: it is {w['status']} until the governance "
                f"quorum approves proposal {w['proposal_id']}\n")
    return Output(w, lambda: wallet_text(w) + note)


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
