"""``signerctl key``: HSM keys."""
from __future__ import annotations

from signerd.cli.args import (CHAINS, NETWORKS, SCRIPT_TYPES, Commands, command, group,
                              uint)
from signerd.cli.context import Context
from signerd.cli.documents import to_dict
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_passphrase, read_text
from signerd.cli.render import Output, kv, proposal_output
from signerd.v1 import signerd_pb2 as pb


def cmd_key_import(ctx: Context) -> Output:
    a = ctx.args
    case = a.case or a.wallet_spec
    if a.case and a.wallet_spec and a.case != a.wallet_spec:
        raise CliError("key import: the positional case reference and --case differ")
    if not case:
        raise CliError("key import: a case reference is required (--case REF)")
    if a.mnemonic and not a.path:
        raise CliError("key import: --mnemonic needs --path (e.g. m/84'/0'/0'/0/0)")
    if a.path and not a.mnemonic:
        raise CliError("key import: --path goes with --mnemonic")
    if a.passphrase_file and not a.mnemonic:
        raise CliError("key import: --passphrase-file is the BIP-39 passphrase of --mnemonic")
    req = pb.ImportKeyRequest(
        chain=CHAINS[a.chain], network=a.network or "", chain_ids=a.chain_id or [],
        script_type=SCRIPT_TYPES[a.script_type] if a.script_type else pb.SCRIPT_TYPE_UNSPECIFIED,
        case_ref=case, seizure_record=a.seizure_record, legal_basis=a.legal_basis or "",
        template=a.template or "")
    if a.wif:
        req.wif = read_text(a.wif, "WIF file").strip()
    elif a.hex:
        req.hex = read_text(a.hex, "hex key file").strip()
    else:
        req.mnemonic = " ".join(read_text(a.mnemonic, "mnemonic file").split())
        req.derivation_path = a.path
        if a.passphrase_file:
            req.passphrase = read_passphrase(a.passphrase_file).decode("utf-8", "strict")
    try:
        p = ctx.call(ctx.admin().ImportKey, req)
    finally:
        req.Clear()  # drop the secret from the message as soon as it is sent
    return proposal_output(p)


def cmd_key_status(ctx: Context) -> Output:
    s = to_dict(ctx.call(ctx.admin().KeyStatus, pb.KeyStatusRequest()))
    return Output(s, lambda: kv([(k.replace("_", " "), v) for k, v in s.items()]))


def register(commands: Commands) -> None:
    g = group(commands, "key", "HSM keys")
    sp = command(g, "import", cmd_key_import, "import a seized key into the HSM (its wallet "
                 "waits for the governance quorum)", "admin")
    sp.add_argument("wallet_spec", nargs="?", metavar="CASE_REF",
                    help="the case reference (same as --case)")
    sp.add_argument("--chain", required=True, choices=sorted(CHAINS), help="the key's chain")
    sp.add_argument("--network", choices=NETWORKS, type=str.lower,
                    help="the Bitcoin network (required for bitcoin) or the Tron network "
                         "(required for tron: mainnet, nile or shasta; a mnemonic's path is "
                         "then usually m/44'/195'/0'/0/0)")
    sp.add_argument("--chain-id", type=uint, action="append", metavar="N",
                    help="an Ethereum chain id the wallet may sign for (repeat for several)")
    sp.add_argument("--case", metavar="REF", help="the case reference")
    sp.add_argument("--seizure-record", required=True, metavar="REF",
                    help="the record of the seizure the key comes from")
    sp.add_argument("--legal-basis", metavar="REF",
                    help="the court decision: 'COURT; CASE NUMBER; YYYY-MM-DD' (optional)")
    sp.add_argument("--script-type", choices=["p2wpkh", "p2sh-p2wpkh", "eoa"],
                    help="the single-key wallet it makes (default: p2wpkh for bitcoin, eoa for "
                         "ethereum)")
    sp.add_argument("--template", metavar="NAME", help="policy template (default: seized-sweep)")
    secret = sp.add_mutually_exclusive_group(required=True)
    secret.add_argument("--wif", metavar="FILE", help="a file holding the key as WIF")
    secret.add_argument("--hex", metavar="FILE", help="a file holding the key as 64 hex digits")
    secret.add_argument("--mnemonic", metavar="FILE",
                        help="a file holding a BIP-39 mnemonic (with --path)")
    sp.add_argument("--path", metavar="PATH", help="BIP-32 derivation path for --mnemonic")
    sp.add_argument("--passphrase-file", metavar="FILE",
                    help="a file holding the mnemonic's BIP-39 passphrase")
    command(g, "status", cmd_key_status, "HSM and token status", "admin", ids=False)
