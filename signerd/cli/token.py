"""``signerctl token``: the governance-approved token registry."""
from __future__ import annotations

from signerd.cli.args import Commands, command, group, uint
from signerd.cli.context import Context
from signerd.cli.documents import to_dict
from signerd.cli.render import Output, proposal_output, table
from signerd.v1 import signerd_pb2 as pb


def cmd_token_set(ctx: Context) -> Output:
    a = ctx.args
    return proposal_output(ctx.call(ctx.admin().SetToken, pb.SetTokenRequest(
        chain_id=a.chain_id, address=a.address, symbol=a.symbol, decimals=a.decimals,
        standard=a.standard)))


def cmd_token_list(ctx: Context) -> Output:
    resp = ctx.call(ctx.admin().ListTokens, pb.ListTokensRequest(chain_id=ctx.args.chain_id or 0))
    ts = [to_dict(t) for t in resp.tokens]
    return Output({"tokens": ts}, lambda: table(
        ["CHAIN ID", "ADDRESS", "STANDARD", "SYMBOL", "DECIMALS"],
        [[t["chain_id"], t["address"], t["standard"], t["symbol"], t["decimals"]] for t in ts]))


def register(commands: Commands) -> None:
    g = group(commands, "token", "the governance-approved token registry")
    sp = command(g, "set", cmd_token_set, "propose a new or changed token entry", "admin")
    sp.add_argument("--chain-id", required=True, type=uint, metavar="N",
                    help="the chain id the contract is on (Ethereum's, or Tron's for trc20)")
    sp.add_argument("--address", required=True, metavar="0x..|T..", help="the token contract")
    sp.add_argument("--symbol", required=True, metavar="S",
                    help="the symbol operators are shown (one contract per symbol and chain; "
                         "for a collection, its name)")
    sp.add_argument("--decimals", required=True, type=uint, metavar="D",
                    help="the token's decimals, for amounts shown to operators")
    sp.add_argument("--standard", default="erc20", choices=["erc20", "erc721", "erc1155", "trc20"],
                    help="the token standard: erc20 (the default), erc721 (decimals 0), "
                         "erc1155 (a collection; decimals apply to every id, usually 0) or trc20 "
                         "(a Tron contract, its T... address, with Tron's chain id: mainnet "
                         "728126428, nile 3448148188, shasta 2494104990)")
    sp = command(g, "list", cmd_token_list, "list the registered tokens", "admin", ids=False)
    sp.add_argument("--chain-id", type=uint, metavar="N", help="only this chain id's")
