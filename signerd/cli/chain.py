"""``signerctl chain``: the governance-approved EVM chain registry."""
from __future__ import annotations

from signerd.cli.args import Commands, command, group, uint
from signerd.cli.context import Context
from signerd.cli.documents import to_dict
from signerd.cli.render import Output, proposal_output, table
from signerd.v1 import signerd_pb2 as pb


def cmd_chain_set(ctx: Context) -> Output:
    a = ctx.args
    return proposal_output(ctx.call(ctx.admin().SetChain, pb.SetChainRequest(
        chain_id=a.chain_id, name=a.name, symbol=a.symbol, decimals=a.decimals)))


def cmd_chain_list(ctx: Context) -> Output:
    resp = ctx.call(ctx.admin().ListChains, pb.ListChainsRequest(chain_id=ctx.args.chain_id or 0))
    cs = [to_dict(c) for c in resp.chains]
    return Output({"chains": cs}, lambda: table(
        ["CHAIN ID", "NAME", "SYMBOL", "DECIMALS"],
        [[c["chain_id"], c["name"], c["symbol"], c["decimals"]] for c in cs]))


def register(commands: Commands) -> None:
    g = group(commands, "chain", "the governance-approved EVM chain registry (signerd signs only "
              "on a registered chain id; its native coin is named by the entry's symbol)")
    sp = command(g, "set", cmd_chain_set, "propose a new or changed chain entry (a chain.set "
                 "proposal: the governance quorum approves it)", "admin")
    sp.add_argument("--chain-id", required=True, type=uint, metavar="N",
                    help="the EVM chain id (EIP-155), e.g. 56")
    sp.add_argument("--name", required=True, metavar="NAME",
                    help="the name operators are shown, e.g. 'BNB Smart Chain' (one chain per "
                    "name)")
    sp.add_argument("--symbol", required=True, metavar="S",
                    help="the native coin's symbol, upper-case, e.g. BNB; policies name the "
                    "coin BNB (any chain whose coin is BNB) or BNB@56 (this chain's only)")
    sp.add_argument("--decimals", required=True, type=uint, metavar="D",
                    help="the native coin's decimals (18 for every common EVM chain)")
    sp = command(g, "list", cmd_chain_list, "list the registered chains", "admin", ids=False)
    sp.add_argument("--chain-id", type=uint, metavar="N", help="only this chain id's entry")
