"""Transfer policies: what a movement needs before it may be signed, and whether votes meet it.

Pure: no I/O, no clock. The service classifies destinations (``chains.classify_outputs``),
asks ``Policy.requirement_for`` what a transfer needs (raised to the floor by ``with_floor``),
and calls ``evaluate`` on every vote.

Policy document (TOML; unknown keys, wrong types and out-of-range values are rejected with
``InvalidPolicy`` naming the key and the rule)::

    name = "two-key"                      # required
    expiry = "24h"                        # default wait for approvals: <n>s|m|h|d, 1s..365d;
                                          # default 24h
    allowlist = ["0xabc...", "bc1q..."]   # destinations of class 'allowlisted'
    max_fee = 0                           # fee bound in base units of the fee asset; 0 = none;
                                          # or a table by fee asset, e.g.
                                          # max_fee = { BTC = 1000000, ETH = "50000000000000000",
                                          #             TRX = 30000000 }  (TRX: sun; Tron's
                                          #             fee is the transaction's fee_limit)
                                          # (sat and wei: one number cannot suit both); a fee
                                          # asset the table does not name has no bound, but for
                                          # the native coin of an EVM chain whose symbol is not
                                          # ETH (BNB, POL, ...), which must be named (BNB or
                                          # "BNB@56") or is refused
    max_fee_rate = 0                      # sat/vB (integer or float), Bitcoin only; 0 = none
    sighash = ["ALL"]                     # allowed Bitcoin sighash types (ALL, NONE, SINGLE, each
                                          # optionally "|ANYONECANPAY") for rules that do not
                                          # name their own; default ["ALL"]
    allow_contract_creation = false
    allow_contract_calls = false          # undecoded calldata also needs a matching rule with
                                          # contract_call = true
    floor_waiver = "..."                  # only in a policy the governance quorum set for one
                                          # wallet (never in a template): lifts the floor below

    [[rule]]                              # at least one
    name = "small"                        # required, unique
    asset = "*"                           # "*", "BTC", "ETH", "TRX", or a registered token's
                                          # asset: "ERC20:0x<40 hex>", "ERC20-APPROVE:0x..",
                                          # "ERC20-INCREASE:0x..", "ERC721:0x..",
                                          # "ERC721-APPROVE:0x..", "ERC721-APPROVE-ALL:0x..",
                                          # "ERC1155:0x..", "ERC1155-APPROVE-ALL:0x.."
                                          # (address case-insensitive), "TRC20:T<base58>"
                                          # (Tron contract, case-sensitive); "*" never covers
                                          # an ERC721* or ERC1155* asset; or an EVM chain's
                                          # native coin by its chain registry symbol: "BNB"
                                          # (every chain whose coin is BNB) or "BNB@56" (chain
                                          # 56's only); "ETH" matches the chains whose
                                          # registry symbol is ETH, never BNB or POL
    min_amount = "0"                      # base units: TOML integer or string of decimal digits
    max_amount = "1000000"                # inclusive; absent = unbounded
    destination = ["own_wallet", "allowlisted", "external"]   # default: all three
    category_change = ["any"]             # none, seized_to_confiscated, confiscated_to_strategic,
                                          # seized_to_returned, sale_proceeds, or any (default,
                                          # matches every movement including "none")
    contract_call = false                 # rule also covers undecoded calldata / creation
    grant = false                         # rule also covers grants of everything: only a rule
                                          # with grant = true covers one
    spend_allowance = false               # rule also covers tokens moved from another address
                                          # than the wallet (a transferFrom under an allowance)
    delegatecall = false                  # Safe wallets: rule also covers operation = 1
                                          # (DELEGATECALL), refused otherwise
    gas_refund = false                    # Safe wallets: rule also covers a SafeTx whose
                                          # gasPrice/gasToken/refundReceiver pay a refund
    approvers = 2                         # m distinct approvers, 1..100; raised to at least the
                                          # sum of the role minimums
    roles = { investigator = 1, custody_officer = 1 }   # per-role minimums, distinct operators
    group = ["inv1", "cust1"]             # optional: only these operators count
    veto = ["judge"]                      # a REJECT from one of these roles ends the transfer
    expiry = "4h"                         # optional override of the policy expiry
    require_legal_basis = false
    sighash = ["ALL", "NONE"]             # optional: the sighash types this rule allows (else
                                          # the policy's); any type but ALL must be allowed by
                                          # every rule the transfer matches

Matching: the non-change outputs are summed per asset; each asset's total, with the worst
destination class among its outputs (external > allowlisted > own_wallet), must fall within at
least one rule, else the transfer is denied. The highest matching requirement applies, and where
two rules match, their demands add up to the strictest of each: the most approvers, the highest
minimum per role, every veto role, the shortest expiry, the intersection of named groups, and a
legal basis if any rule asks for one.

Tokens (registered by the governance, see ``signerd.core.tokens``): an ERC-721 output's amount
is 1 (one token, its id in the output), an ERC-1155 output's the count of that id, and a
batch is one output per id, so a rule's amounts bound the number of tokens of the collection
the transfer moves (summed over ids). A collection's tokens are not interchangeable, so a rule
covers an ERC721* or ERC1155* asset only when it names it: ``asset = "*"`` does not.

Grants: ``setApprovalForAll(operator, true)`` (asset ``ERC721-APPROVE-ALL:`` or
``ERC1155-APPROVE-ALL:``, amount 1) gives the operator every token of the collection the
wallet holds, now and later; an ERC-20 ``approve`` or ``increaseAllowance`` of at least
2**96-1 base units (no real allowance comes near: this is the "unlimited" allowance, 2**256-1
for most tokens, 2**96-1 for those that keep allowances in 96 bits, COMP, UNI and their forks)
gives the spender the whole balance. Such an output is a grant and only a matching
rule with ``grant = true`` covers it, whatever its asset and amounts say. A revocation,
``setApprovalForAll(operator, false)``, is amount 0 of the same asset and no grant: a rule
naming the asset covers it like any other movement (it moves nothing, yet it is a transaction
from the wallet and pays a fee, so it still needs approval).

Allowances spent: a ``transferFrom`` (or ``safeTransferFrom``) whose ``from`` is not the
wallet moves tokens another address holds, under an allowance or operator approval that
address gave the wallet. The output names that address (``source``) and only a matching rule
with ``spend_allowance = true`` covers it: taking tokens from someone else's address is a
different act from spending the wallet's own, even to one of signerd's wallets.

The floor (``with_floor``): whatever a policy says, a movement to any destination outside
signerd's own wallets (or a contract call or creation) needs at least two distinct people of two
different roles, unless the wallet's policy carries a ``floor_waiver`` that the governance quorum
approved for that wallet alone.
"""
from __future__ import annotations

import functools
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import reduce
from typing import Any

from signerd.core.errors import InvalidArgument, InvalidPolicy, PolicyDenied
from signerd.core.errors import echo
from signerd.core.model import Chain, Decision, DestinationClass, Movement, registry_address
from signerd.core.tron import address as tron_address

CATEGORY_CHANGES = frozenset(
    {"none", "seized_to_confiscated", "confiscated_to_strategic", "seized_to_returned",
     "sale_proceeds"}
)
SIGHASH_TYPES = {
    "ALL": 0x01, "NONE": 0x02, "SINGLE": 0x03,
    "ALL|ANYONECANPAY": 0x81, "NONE|ANYONECANPAY": 0x82, "SINGLE|ANYONECANPAY": 0x83,
}
MAX_DOCUMENT_CHARS = 64 * 1024
MAX_APPROVERS = 100
MAX_EXPIRY = 365 * 86400
DEFAULT_EXPIRY = 86400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_DIGITS = re.compile(r"[0-9]{1,78}")
_ASSET = re.compile(r"\*|BTC|ETH|TRX|(?:ERC20|ERC20-APPROVE|ERC20-INCREASE|ERC721|"
                    r"ERC721-APPROVE|ERC721-APPROVE-ALL|ERC1155|ERC1155-APPROVE-ALL):0x[0-9A-F]{40}"
                    r"|[A-Z][A-Z0-9]{0,15}(?:@[1-9][0-9]{0,19})?", re.IGNORECASE)
# Kinds of asset that "*" does not cover: tokens of a collection are not interchangeable.
_NAMED_ONLY = ("ERC721", "ERC1155")
# A TRC-20 asset names its Tron contract in base58check, which is case-sensitive: the kind may
# be written in any case, the address only as it is (checked by its checksum).
_TRC20_ASSET = re.compile(r"(?i:TRC20):(T[1-9A-HJ-NP-Za-km-z]{33})")
# A native coin's name in a max_fee table: a chain registry symbol, optionally @chain id.
_FEE_ASSET = re.compile(r"[A-Z][A-Z0-9]{0,15}(?:@[1-9][0-9]{0,19})?")
# Fee assets a max_fee table may leave unnamed (no bound), as before the chain registry.
_UNBOUNDED_UNNAMED = frozenset({"BTC", "ETH"})
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_RANK = {DestinationClass.OWN_WALLET: 0, DestinationClass.ALLOWLISTED: 1,
         DestinationClass.EXTERNAL: 2}

_POLICY_KEYS = frozenset({"name", "expiry", "allowlist", "max_fee", "max_fee_rate", "sighash",
                          "allow_contract_creation", "allow_contract_calls", "floor_waiver",
                          "rule"})
FLOOR_APPROVERS = 2
FLOOR_ROLES = 2
_RULE_KEYS = frozenset({"name", "asset", "min_amount", "max_amount", "destination",
                        "category_change", "contract_call", "approvers", "roles", "group",
                        "veto", "expiry", "require_legal_basis", "sighash", "grant",
                        "spend_allowance", "delegatecall", "gas_refund"})


def sighash_numbers(names: Iterable[str]) -> frozenset[int]:
    """The Bitcoin sighash types named (``SIGHASH_TYPES`` keys) as the numbers a PSBT decode
    accepts: a policy's ``sighash`` and its rules' (the daemon decodes with the policy's
    ``sighash_types``), and what signerctl's ``--allow-sighash`` adds to ALL."""
    return frozenset(SIGHASH_TYPES[n] for n in names)


# --- requirements ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """What a transfer needs: ``approvers`` distinct operators, among them per-role minimums.

    Normalised on construction: roles sorted with zero minimums dropped, and ``approvers``
    raised to at least the sum of the role minimums (each role slot needs its own operator).
    """

    approvers: int
    roles: tuple[tuple[str, int], ...] = ()
    group: frozenset[str] | None = None
    veto: frozenset[str] = frozenset()
    expiry: int = DEFAULT_EXPIRY
    rules: tuple[str, ...] = ()
    require_legal_basis: bool = False
    distinct_roles: int = 0  # counted approvers must hold at least this many different roles

    def __post_init__(self) -> None:
        roles = tuple(sorted((r, n) for r, n in dict(self.roles).items() if n > 0))
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "approvers", max(1, self.approvers, sum(n for _, n in roles),
                                                  self.distinct_roles))

    @property
    def role_minimums(self) -> dict[str, int]:
        return dict(self.roles)

    def at_least_as_strict_as(self, other: Requirement) -> bool:
        """True when every demand of ``other`` is met or exceeded here (rule names aside)."""
        mine = self.role_minimums
        return (
            self.approvers >= other.approvers
            and all(mine.get(r, 0) >= n for r, n in other.roles)
            and (other.group is None or (self.group is not None and self.group <= other.group))
            and self.veto >= other.veto
            and self.expiry <= other.expiry
            and self.require_legal_basis >= other.require_legal_basis
            and self.distinct_roles >= other.distinct_roles
        )

    def describe(self) -> str:
        """One line for people, e.g. ``2 approvers (investigator x1, custody_officer x1)``."""
        text = _count(self.approvers, "approver")
        if self.roles:
            text += " (" + ", ".join(f"{r} x{n}" for r, n in self.roles) + ")"
        if self.group is not None:
            text += " from " + ", ".join(sorted(self.group))
        if self.distinct_roles > max(1, len(self.roles)):  # else the role minimums say it
            text += f" of {self.distinct_roles} different roles"
        if self.veto:
            text += "; veto: " + ", ".join(sorted(self.veto))
        return text


def is_stricter_or_equal(new: Requirement, old: Requirement) -> bool:
    """Whether ``new`` demands at least everything ``old`` does (a policy change may apply)."""
    return new.at_least_as_strict_as(old)


def merge(a: Requirement, b: Requirement) -> Requirement:
    """The strictest of each demand of ``a`` and ``b``.

    ``merge(old, new)`` is what a pending transfer keeps after a policy change: equal in its
    demands to whichever of the two dominates, and stricter than both when neither does.
    """
    roles = a.role_minimums
    for r, n in b.roles:
        roles[r] = max(roles.get(r, 0), n)
    if a.group is None or b.group is None:
        group = a.group if b.group is None else b.group
    else:
        group = a.group & b.group
    return Requirement(
        approvers=max(a.approvers, b.approvers),
        roles=tuple(roles.items()),
        group=group,
        veto=a.veto | b.veto,
        expiry=min(a.expiry, b.expiry),
        rules=a.rules + tuple(r for r in b.rules if r not in a.rules),
        require_legal_basis=a.require_legal_basis or b.require_legal_basis,
        distinct_roles=max(a.distinct_roles, b.distinct_roles),
    )


def leaves_own_wallets(movement: Movement) -> bool:
    """Whether anything goes outside signerd's own wallets: a non-change output to an
    allowlisted or external destination, or a contract call or creation."""
    return movement.contract_call != "" or any(
        o.destination_class is not DestinationClass.OWN_WALLET or o.address == ""
        for o in movement.external_outputs())


def with_floor(requirement: Requirement, movement: Movement, *, waived: bool) -> Requirement:
    """The requirement raised to the floor no policy goes below: two distinct people of two
    different roles for anything leaving signerd's own wallets, unless ``waived`` (a
    ``floor_waiver`` the governance quorum set for this wallet)."""
    if waived or not leaves_own_wallets(movement):
        return requirement
    if requirement.approvers >= FLOOR_APPROVERS and len(requirement.roles) >= FLOOR_ROLES:
        # Minimums of two roles are filled by two people of two roles: the floor holds as it
        # is; say so, so that comparing requirements sees the floor on both sides.
        return replace(requirement, distinct_roles=max(requirement.distinct_roles, FLOOR_ROLES))
    floor = Requirement(approvers=FLOOR_APPROVERS, distinct_roles=FLOOR_ROLES,
                        expiry=requirement.expiry, rules=("floor",))
    if requirement.at_least_as_strict_as(floor):
        return requirement
    return merge(requirement, floor)


# --- policies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: which movements it matches and the requirement it imposes."""

    name: str
    asset: str  # "*" or a normalised asset key (see _asset_key)
    min_amount: int
    max_amount: int | None
    destinations: frozenset[DestinationClass]
    category_changes: frozenset[str]  # may contain "any"
    contract_call: bool
    requirement: Requirement
    sighash: frozenset[int] | None = None  # Bitcoin sighash types it allows; None: the policy's
    grant: bool = False  # covers grants of everything
    spend_allowance: bool = False  # covers tokens taken from another address than the wallet
    delegatecall: bool = False  # Safe: covers a SafeTx with operation 1 (DELEGATECALL)
    gas_refund: bool = False  # Safe: covers a SafeTx that pays a gas refund from the Safe

    def matches(self, asset: str, amount: int, worst: DestinationClass,
                category_change: str, chain_id: int = 0, *, grant: bool = False,
                spend_allowance: bool = False) -> bool:
        """``chain_id``: the EVM chain the asset is on (0 for none), so that a rule naming a
        native coin ``SYMBOL@CHAIN_ID`` matches it on that chain only."""
        return (
            (self.asset == asset
             or (self.asset == "*" and not asset.partition(":")[0].startswith(_NAMED_ONLY))
             or (chain_id > 0 and ":" not in asset and self.asset == f"{asset}@{chain_id}"))
            and (self.grant or not grant)
            and (self.spend_allowance or not spend_allowance)
            and self.min_amount <= amount
            and (self.max_amount is None or amount <= self.max_amount)
            and worst in self.destinations
            and ("any" in self.category_changes or category_change in self.category_changes)
        )


_DECIMALS = {"BTC": (8, "sat"), "ETH": (18, "wei"), "TRX": (6, "sun")}


def units(amount: int, asset: str) -> str:
    """An amount in an asset's base units, named, with the whole coin beside it for BTC and
    ETH: ``495000000 sat (4.95 BTC)``, ``21000 wei (0.000000000000021 ETH)``, ``5 base units of
    ERC20:0x...``."""
    if asset.upper() in _DECIMALS:
        places, unit = _DECIMALS[asset.upper()]
        coins = (Decimal(amount).scaleb(-places)).normalize()
        return f"{amount} {unit} ({coins:f} {asset.upper()})"
    return f"{amount} base units of {asset}"


@dataclass(frozen=True)
class Policy:
    """A parsed, valid policy document. Build it with ``parse_policy``."""

    name: str
    expiry: int
    allowlist: frozenset[str]  # normalised with normalize_address
    max_fee: int  # the bound for every fee asset the table below does not name; 0 = none
    max_fee_rate: Decimal
    sighash_types: frozenset[int]
    allow_contract_creation: bool
    allow_contract_calls: bool
    rules: tuple[Rule, ...]
    floor_waiver: str = ""
    max_fees: tuple[tuple[str, int], ...] = ()  # (fee asset, bound) from a max_fee table
    # The policy's own ``sighash``: what a rule without its own allows. ``sighash_types`` is
    # what may be decoded at all (this and every rule's).
    default_sighash: frozenset[int] = frozenset({0x01})

    def fee_bound(self, fee_asset: str, chain_id: int = 0) -> int:
        """The fee bound for ``fee_asset`` (on EVM chain ``chain_id``) in its base units (sat,
        wei); 0 = none. A table entry ``SYMBOL@CHAIN_ID`` comes before ``SYMBOL``."""
        return self._fee_entry(fee_asset, chain_id)[1]

    def _fee_entry(self, fee_asset: str, chain_id: int) -> tuple[str, int]:
        """(the key that bounds ``fee_asset``: ``max_fee.SYMBOL@ID``, ``max_fee.SYMBOL``,
        ``max_fee`` for the single bound, "" when a table names none of it; the bound)."""
        table = dict(self.max_fees)
        for key in (f"{fee_asset}@{chain_id}" if chain_id else "", fee_asset):
            if key and key in table:
                return "max_fee." + key, table[key]
        return ("" if table else "max_fee"), self.max_fee

    def names(self) -> tuple[frozenset[str], frozenset[str]]:
        """(roles, operator ids) this policy names in its rules' minimums, vetoes and groups."""
        roles: set[str] = set()
        operators: set[str] = set()
        for r in self.rules:
            roles |= {name for name, _ in r.requirement.roles} | r.requirement.veto
            operators |= r.requirement.group or frozenset()
        return frozenset(roles), frozenset(operators)

    def native_assets(self) -> frozenset[str]:
        """The native coins of chain-registry chains this policy's rules name (``BNB``,
        ``BNB@56``): every asset but *, BTC, ETH, TRX and tokens. (Its max_fee table may name coins
        of chains not registered: a bound for a coin nothing moves is harmless, and a coin the
        table leaves unnamed is refused, see ``_check_fee``.)"""
        names = {r.asset for r in self.rules}
        return frozenset(n for n in names if n not in ("*", "BTC", "ETH", "TRX") and ":" not in n)

    def check_sighash(self, sighash_type: int) -> None:
        """Raise PolicyDenied unless the policy allows this Bitcoin sighash type."""
        if sighash_type not in self.sighash_types:
            allowed = ", ".join(n for n, v in SIGHASH_TYPES.items() if v in self.sighash_types)
            raise PolicyDenied(f"sighash type 0x{sighash_type:02x} is not allowed by the policy "
                               f"(sighash = [{allowed}])")

    def requirement_for(self, movement: Movement, *, category_change: str = "none") -> Requirement:
        """The merged requirement of every rule matching ``movement``.

        Outputs must already carry their destination class (``chains.classify_outputs`` with
        this policy's allowlist). Raises PolicyDenied naming the asset and amount no rule covers, or
        the fee, fee-rate or contract bound the movement breaks.
        """
        if category_change not in CATEGORY_CHANGES:
            raise InvalidArgument(f"unknown category change {echo(category_change)}")
        self._check_fee(movement)
        creates = any(o.address == "" for o in movement.external_outputs())
        # The bytes a safeTransferFrom hands to the recipient's onERC721Received /
        # onERC1155Received hook are code input too: a recipient contract may act on them
        # (deliver the token elsewhere), so they need what any undecoded call needs.
        hook_data = movement.details.get("token_call_data", "")
        hook = hook_data not in ("", "0x")
        calls = movement.contract_call != "" or hook
        if creates and not self.allow_contract_creation:
            raise PolicyDenied("contract creation is not allowed by the policy "
                               "(allow_contract_creation = false)")
        if calls and not self.allow_contract_calls:
            raise PolicyDenied("undecoded contract calls are not allowed by the policy "
                               "(allow_contract_calls = false)" + (
                                   f"; the token transfer hands data {hook_data[:74]} to the "
                                   "recipient's hook, which counts as one" if hook else ""))

        # Summed per asset, grants and allowances spent apart from the rest (each needs its own
        # kind of rule).
        totals: dict[tuple[str, bool, bool], tuple[int, DestinationClass]] = {}
        for out in movement.external_outputs():
            if out.amount < 0:
                raise PolicyDenied(f"negative amount {out.amount} of {out.asset}")
            key = (_asset_key(out.asset), out.grant, out.source != "")
            total, worst = totals.get(key, (0, DestinationClass.OWN_WALLET))
            worst = max(worst, out.destination_class, key=_RANK.__getitem__)
            totals[key] = (total + out.amount, worst)
        if not totals:  # everything goes to change: still a movement that needs approval
            worst = DestinationClass.EXTERNAL if calls or creates else DestinationClass.OWN_WALLET
            totals[(_asset_key(movement.fee_asset), False, False)] = (0, worst)

        matched: set[str] = set()
        evm_chain = movement.chain_id if movement.chain is Chain.ETHEREUM else 0
        for (asset, grant, spend), (total, worst) in totals.items():
            hits = {r.name for r in self.rules
                    if r.matches(asset, total, worst, category_change, evm_chain, grant=grant,
                                 spend_allowance=spend)}
            if not hits:
                article = "an" if worst.value[0] in "aeiou" else "a"
                hint = self._star_hint(asset)
                if grant:
                    raise PolicyDenied(
                        f"no policy rule with grant = true covers a grant of everything "
                        f"({asset}) to {article} {worst.value} destination (category change "
                        f"{category_change}){hint}")
                what = units(total, asset) + (" taken from another address than the wallet "
                                              "(no rule with spend_allowance = true covers it)"
                                              if spend else "")
                raise PolicyDenied(
                    f"no policy rule covers {what} to {article} {worst.value} "
                    f"destination (category change {category_change}){hint}")
            matched |= hits
        rules = [r for r in self.rules if r.name in matched]
        if (calls or creates) and not any(r.contract_call for r in rules):
            raise PolicyDenied("a contract call or creation needs a matching rule with "
                               "contract_call = true; matched: " + ", ".join(sorted(matched)))
        self._check_rule_sighash(movement, rules)
        self._check_safe(movement, rules, matched)
        req = reduce(merge, (r.requirement for r in rules))
        if req.group is not None and len(req.group) < req.approvers:
            raise PolicyDenied(f"matching rules {', '.join(req.rules)} leave a group of "
                               f"{len(req.group)} operators for {req.approvers} approvers")
        return req

    def _star_hint(self, asset: str) -> str:
        """Why a rule with ``asset = "*"`` did not cover a collection's asset, when the policy
        has one and no rule naming the asset (else ""): the refusal then names the rule a
        policy needs."""
        if not asset.partition(":")[0].startswith(_NAMED_ONLY):
            return ""
        if not any(r.asset == "*" for r in self.rules) or any(r.asset == asset
                                                               for r in self.rules):
            return ""
        return (f"; asset = \"*\" never covers a collection's tokens or approvals (ERC-721, "
                f"ERC-1155): a rule must name the collection, asset = \"{asset}\"")

    @staticmethod
    def _check_safe(movement: Movement, rules: list[Rule], matched: set[str]) -> None:
        """A Safe transaction's DELEGATECALL and gas refund each need a matching rule that
        names them (``delegatecall = true``, ``gas_refund = true``)."""
        if not movement.safe:
            return
        fields = dict(movement.safe)
        names = ", ".join(sorted(matched))
        delegatecall = fields.get("operation", "").startswith("1")
        if delegatecall and not any(r.delegatecall for r in rules):
            raise PolicyDenied("operation: the SafeTx is a DELEGATECALL (operation 1), which "
                               "needs a matching rule with delegatecall = true; matched: "
                               + names)
        if fields.get("gas_refund", "none") != "none" and not any(r.gas_refund for r in rules):
            raise PolicyDenied("gasPrice: the SafeTx pays a gas refund from the Safe "
                               f"({fields['gas_refund']}), which needs a matching rule with "
                               "gas_refund = true; matched: " + names)

    def _check_rule_sighash(self, movement: Movement, rules: list[Rule]) -> None:
        """Any sighash type but ALL must be allowed by every rule the transfer matches (a
        rule's own ``sighash``, else the policy's)."""
        odd = sorted({s for s in movement.sighash if s != "ALL"})
        for r in rules:
            allowed = r.sighash if r.sighash is not None else self.default_sighash
            bad = [s for s in odd if SIGHASH_TYPES.get(s) not in allowed]
            if bad:
                names = ", ".join(n for n, v in SIGHASH_TYPES.items() if v in allowed)
                raise PolicyDenied(f"sighash {', '.join(bad)} is not allowed by matching rule "
                                   f"{r.name} (sighash = [{names}])")

    def _check_fee(self, movement: Movement) -> None:
        chain_id = movement.chain_id if movement.chain is Chain.ETHEREUM else 0
        key, bound = self._fee_entry(movement.fee_asset, chain_id)
        if not key and movement.fee and movement.fee_asset not in _UNBOUNDED_UNNAMED:
            # A native coin added by the chain registry (BNB, POL): a table written for BTC and
            # ETH bounds it by neither number, so it must name it.
            raise PolicyDenied(f"the policy's max_fee table names no bound for fee asset "
                               f"{movement.fee_asset} (chain {chain_id}); name it "
                               f"(max_fee = {{ {movement.fee_asset} = ... }})")
        if bound and movement.fee > bound:
            raise PolicyDenied(f"fee {units(movement.fee, movement.fee_asset)} exceeds {key} "
                               f"{units(bound, movement.fee_asset)}")
        if self.max_fee_rate and movement.chain is Chain.BITCOIN:
            if not movement.vsize:
                raise PolicyDenied("fee rate cannot be checked against max_fee_rate: "
                                   "transaction size unknown")
            if Decimal(movement.fee) > self.max_fee_rate * movement.vsize:
                rate = Decimal(movement.fee) / movement.vsize
                raise PolicyDenied(f"fee rate {rate:.2f} sat/vB exceeds max_fee_rate "
                                   f"{self.max_fee_rate}")


def normalize_address(address: str) -> str:
    """Case-fold addresses whose encoding is case-insensitive (0x hex, bech32); keep base58."""
    low = address.lower()
    if low.startswith(("0x", "bc1", "tb1", "bcrt1")):
        return low
    return address


def parse_policy(text: str) -> Policy:
    """Parse a policy document (cached: a Policy is immutable and parsing is pure)."""
    if not isinstance(text, str):
        raise InvalidPolicy("policy document must be text")
    return _parse_policy_cached(text)


@functools.lru_cache(maxsize=256)
def _parse_policy_cached(text: str) -> Policy:
    """Parse and validate a policy document; raise InvalidPolicy naming the offending key."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidPolicy(f"policy document exceeds {MAX_DOCUMENT_CHARS} characters")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidPolicy(f"policy is not valid TOML: {exc}") from None
    except ValueError:  # an integer literal beyond Python's limit on digits
        raise InvalidPolicy("policy is not valid TOML: a number has too many digits") from None
    except RecursionError:
        raise InvalidPolicy("policy is not valid TOML: arrays or tables nested too deeply") from None
    _no_unknown(doc, _POLICY_KEYS, "policy")
    if "name" not in doc:
        raise InvalidPolicy("policy: missing key 'name'")
    name = _text(doc["name"], "policy key 'name'")
    expiry = _duration(doc.get("expiry", "24h"), "policy key 'expiry'")
    allowlist = frozenset(normalize_address(a) for a in
                          _names(doc.get("allowlist", []), "policy key 'allowlist'", _text))
    sighash = _choices(doc.get("sighash", ["ALL"]), "policy key 'sighash'", SIGHASH_TYPES,
                       fold=lambda t: t.upper().replace(" ", ""))
    raw_rules = doc.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise InvalidPolicy("policy: needs at least one [[rule]]")
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules, 1):
        rule = _rule(raw, i, expiry)
        if any(r.name == rule.name for r in rules):
            raise InvalidPolicy(f"rule {echo(rule.name)}: name used by another rule")
        rules.append(rule)
    return Policy(
        name=name,
        expiry=expiry,
        allowlist=allowlist,
        max_fee=0 if isinstance(doc.get("max_fee"), dict) else _amount(
            doc.get("max_fee", 0), "policy key 'max_fee'"),
        max_fees=_fee_table(doc.get("max_fee")),
        max_fee_rate=_rate(doc.get("max_fee_rate", 0), "policy key 'max_fee_rate'"),
        sighash_types=sighash_numbers(sighash).union(
            *(r.sighash for r in rules if r.sighash is not None)),
        default_sighash=sighash_numbers(sighash),
        allow_contract_creation=_flag(doc.get("allow_contract_creation", False),
                                      "policy key 'allow_contract_creation'"),
        allow_contract_calls=_flag(doc.get("allow_contract_calls", False),
                                   "policy key 'allow_contract_calls'"),
        rules=tuple(rules),
        floor_waiver=(_text(doc["floor_waiver"], "policy key 'floor_waiver'")
                      if "floor_waiver" in doc else ""),
    )


def _rule(raw: Any, index: int, default_expiry: int) -> Rule:
    if not isinstance(raw, dict):
        raise InvalidPolicy(f"rule #{index}: must be a table")
    if "name" not in raw:
        raise InvalidPolicy(f"rule #{index}: missing key 'name'")
    name = _text(raw["name"], f"rule #{index}: key 'name'")
    where = f"rule {echo(name)}:"
    _no_unknown(raw, _RULE_KEYS, f"rule {echo(name)}")

    asset = _text(raw.get("asset", "*"), f"{where} key 'asset'")
    trc20 = _TRC20_ASSET.fullmatch(asset)
    if trc20 is not None and not tron_address.is_address(trc20[1]):
        raise InvalidPolicy(f"{where} key 'asset': {echo(asset)} does not name a Tron address "
                            "(bad base58check checksum)")
    if trc20 is None and not _ASSET.fullmatch(asset):
        raise InvalidPolicy(f"{where} key 'asset': {echo(asset)} is not *, BTC, ETH, TRX, "
                            "ERC20:<address>, ERC20-APPROVE:<address>, "
                            "ERC20-INCREASE:<address>, ERC721:<address>, "
                            "ERC721-APPROVE:<address>, ERC721-APPROVE-ALL:<address>, "
                            "ERC1155:<address>, ERC1155-APPROVE-ALL:<address>, "
                            "TRC20:<T address> or an EVM chain's native coin (SYMBOL or "
                            "SYMBOL@CHAIN_ID, e.g. BNB@56)")
    low = _amount(raw.get("min_amount", 0), f"{where} key 'min_amount'")
    high = (_amount(raw["max_amount"], f"{where} key 'max_amount'")
            if "max_amount" in raw else None)
    if high is not None and high < low:
        raise InvalidPolicy(f"{where} key 'max_amount' is below min_amount")
    destinations = _choices(raw.get("destination", [d.value for d in DestinationClass]),
                            f"{where} key 'destination'", {d.value for d in DestinationClass})
    categories = _choices(raw.get("category_change", ["any"]), f"{where} key 'category_change'",
                          CATEGORY_CHANGES | {"any"})
    return Rule(
        name=name,
        asset="*" if asset == "*" else _asset_key(asset),  # BNB@56 -> "BNB@56"
        min_amount=low,
        max_amount=high,
        destinations=frozenset(DestinationClass(d) for d in destinations),
        category_changes=frozenset(categories),
        contract_call=_flag(raw.get("contract_call", False), f"{where} key 'contract_call'"),
        grant=_flag(raw.get("grant", False), f"{where} key 'grant'"),
        spend_allowance=_flag(raw.get("spend_allowance", False),
                              f"{where} key 'spend_allowance'"),
        requirement=requirement_from_table(raw, name, default_expiry),
        sighash=(sighash_numbers(_choices(
            raw["sighash"], f"{where} key 'sighash'", SIGHASH_TYPES,
            fold=lambda t: t.upper().replace(" ", ""))) if "sighash" in raw else None),
        delegatecall=_flag(raw.get("delegatecall", False), f"{where} key 'delegatecall'"),
        gas_refund=_flag(raw.get("gas_refund", False), f"{where} key 'gas_refund'"),
    )


def requirement_from_table(raw: Mapping[str, Any], name: str, default_expiry: int) -> Requirement:
    """The requirement of one rule table: ``approvers``, ``roles``, ``group``, ``veto``,
    ``expiry`` and ``require_legal_basis`` (shared by transfer and governance policies)."""
    where = f"rule {echo(name)}:"
    if "approvers" not in raw:
        raise InvalidPolicy(f"{where} missing key 'approvers'")
    approvers = _int(raw["approvers"], f"{where} key 'approvers'", 1, MAX_APPROVERS)
    roles_raw = raw.get("roles", {})
    if not isinstance(roles_raw, dict):
        raise InvalidPolicy(f"{where} key 'roles' must be a table of role = minimum")
    roles = {_ident(r, f"{where} key 'roles'"): _int(n, f"{where} key 'roles.{r}'", 1,
                                                      MAX_APPROVERS)
             for r, n in roles_raw.items()}
    if sum(roles.values()) > MAX_APPROVERS:
        raise InvalidPolicy(f"{where} key 'roles': minimums add up to more than {MAX_APPROVERS}")
    group = (frozenset(_names(raw["group"], f"{where} key 'group'", _ident))
             if "group" in raw else None)
    requirement = Requirement(
        approvers=approvers,
        roles=tuple(roles.items()),
        group=group,
        veto=frozenset(_names(raw.get("veto", []), f"{where} key 'veto'", _ident)),
        expiry=(_duration(raw["expiry"], f"{where} key 'expiry'") if "expiry" in raw
                else default_expiry),
        rules=(name,),
        require_legal_basis=_flag(raw.get("require_legal_basis", False),
                                  f"{where} key 'require_legal_basis'"),
    )
    if group is not None and len(group) < requirement.approvers:
        raise InvalidPolicy(f"{where} key 'group' names {len(group)} operators but the rule "
                            f"needs {requirement.approvers} approvers")
    return requirement


def _asset_key(asset: str) -> str:
    """Canonical asset name: kind upper-case, contract address lower-case (a Tron contract's
    base58check address as it is: base58 is case-sensitive)."""
    kind, sep, address = asset.partition(":")
    return kind.upper() + sep + registry_address(address)


def _no_unknown(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidPolicy(f"{where}: unknown key {echo(unknown[0])}"
                            + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:]
                               else ""))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPolicy(f"{where} must be a non-empty string")
    if not value.isprintable() or len(value) > 256:
        raise InvalidPolicy(f"{where} must be printable and at most 256 characters")
    return value


def _ident(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise InvalidPolicy(f"{where}: {echo(value)} is not a valid role or operator id")
    return value


def _names(value: Any, where: str, item: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidPolicy(f"{where} must be a list")
    return [item(v, where) for v in value]


def _choices(value: Any, where: str, allowed: Iterable[str],
             fold: Callable[[str], str] = str) -> list[str]:
    """A non-empty list drawn from ``allowed`` (after ``fold``)."""
    items = [fold(v) for v in _names(value, where, _text)]
    names = sorted(allowed)
    if not items:
        raise InvalidPolicy(f"{where} must list at least one of " + ", ".join(names))
    for item in items:
        if item not in names:
            raise InvalidPolicy(f"{where}: {echo(item)} is not one of " + ", ".join(names))
    return items


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidPolicy(f"{where} must be true or false")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPolicy(f"{where} must be an integer from {low} to {high}")
    return value


def _amount(value: Any, where: str) -> int:
    """Base units: a non-negative TOML integer, or a string of decimal digits (beyond 2^63)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise InvalidPolicy(f"{where} must be a non-negative integer or a string of decimal digits")


FEE_ASSETS = ("BTC", "ETH", "TRX")  # the fee assets of chains outside the EVM chain registry


def _fee_table(value: Any) -> tuple[tuple[str, int], ...]:
    """``max_fee`` as a table of fee asset -> bound in its base units (sat for BTC, wei for
    ETH, sun for TRX); () when it is a single number."""
    if not isinstance(value, dict):
        return ()
    if not value:
        raise InvalidPolicy("policy key 'max_fee' must name at least one fee asset "
                            f"({', '.join(FEE_ASSETS)})")
    out = []
    for asset, bound in sorted(value.items()):
        if not isinstance(asset, str) or not _FEE_ASSET.fullmatch(asset):
            raise InvalidPolicy(f"policy key 'max_fee': {asset!r} is not a fee asset "
                                f"({', '.join(FEE_ASSETS)}, or an EVM chain's native coin by "
                                "its registry symbol: BNB or \"BNB@56\")")
        out.append((asset, _amount(bound, f"policy key 'max_fee.{asset}'")))
    return tuple(out)


def _rate(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidPolicy(f"{where} must be a number")
    rate = Decimal(str(value))
    if not rate.is_finite() or rate < 0:
        raise InvalidPolicy(f"{where} must be a finite non-negative number")
    return rate


def _duration(value: Any, where: str) -> int:
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidPolicy(f"{where} must be a duration like '30m', '4h' or '2d'")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > MAX_EXPIRY:
        raise InvalidPolicy(f"{where} exceeds 365 days")
    return seconds


# --- quorum ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorView:
    """What the quorum check needs to know about a registered operator."""

    id: str
    roles: frozenset[str]
    active: bool


@dataclass(frozen=True)
class Vote:
    """A decision whose signature over the current statement has already been verified."""

    operator_id: str
    decision: Decision

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.decision))  # "REJECT" stays a reject


@dataclass(frozen=True)
class QuorumResult:
    met: bool
    rejected: bool
    reason: str
    counted: tuple[str, ...]  # approvers that count, in vote order
    remaining: str  # e.g. "1 more approver: custody_officer x1"; "" when met or rejected
    veto: tuple[str, str] | None = None  # (operator, role) of the veto that rejected it


def evaluate(requirement: Requirement, votes: list[Vote], operators: dict[str, OperatorView],
             submitter: str) -> QuorumResult:
    """Count ``votes`` toward ``requirement``.

    Only known, active operators count, each once, never the submitter, and only members of the
    group when the requirement names one; role minimums are filled by distinct operators. An
    operator who rejected does not count as an approver even if they also approved. A REJECT
    from any active operator holding a veto role (in the group or not) rejects the transfer, as
    does a requirement that the operators still able to approve can no longer meet.
    """
    def active(op_id: str) -> OperatorView | None:
        op = operators.get(op_id)
        return op if op is not None and op.active else None

    def may_count(op_id: str) -> bool:
        return (op_id != submitter and active(op_id) is not None
                and (requirement.group is None or op_id in requirement.group))

    approved: list[str] = []
    rejecters: set[str] = set()
    vetoed_by = ""
    veto_of: tuple[str, str] | None = None
    for vote in votes:
        op = active(vote.operator_id)
        if op is None:
            continue
        if vote.decision is Decision.REJECT:
            rejecters.add(vote.operator_id)
            veto = sorted(op.roles & requirement.veto)
            if veto and not vetoed_by:
                vetoed_by = f"{vote.operator_id} ({veto[0]})"
                veto_of = (vote.operator_id, veto[0])
        elif vote.operator_id not in approved:
            approved.append(vote.operator_id)
    counted = tuple(a for a in approved if a not in rejecters and may_count(a))

    def holders_of(ids: tuple[str, ...]) -> list[frozenset[str]]:
        return [operators[a].roles for a in ids]

    if vetoed_by:
        return QuorumResult(False, True, f"rejected by veto of {vetoed_by}", counted, "",
                            veto_of)
    more, unfilled = _shortfall(requirement, holders_of(counted))
    if more == 0:
        return QuorumResult(True, False, "quorum met by " + ", ".join(counted), counted, "")
    able = [o for o in operators if may_count(o) and o not in rejecters]
    if _shortfall(requirement, [operators[o].roles for o in able])[0]:
        needed = {role for role, _ in requirement.roles}
        if needed:
            holders = sorted(o for o in able if operators[o].roles & needed)
            who = (f"{_count(len(holders), 'operator')} who may still approve "
                   f"{'holds' if len(holders) == 1 else 'hold'} "
                   f"{' or '.join(sorted(needed))}"
                   + (f" ({', '.join(holders)})" if holders else ""))
        else:
            who = f"{_count(len(able), 'operator')} may still approve"
        return QuorumResult(False, True,
                            f"quorum can no longer be met: {requirement.describe()} needed, "
                            f"and {who} (the submitter and those who rejected do not count)",
                            counted, "")
    remaining = _count(more, "more approver")
    if unfilled:
        remaining += ": " + ", ".join(f"{r} x{n}" for r, n in unfilled.items())
    elif _distinct_roles(holders_of(counted)) < requirement.distinct_roles:
        remaining += " of another role"
    return QuorumResult(False, False, "waiting for " + remaining, counted, remaining)


def _shortfall(requirement: Requirement, holders: list[frozenset[str]]) -> tuple[int, Counter[str]]:
    """(how many more approvers are needed, unfilled role slots) for these distinct approvers."""
    slots = [role for role, n in requirement.roles for _ in range(n)]
    filled = _fill_slots(slots, holders)
    unfilled = Counter(slots[i] for i, h in enumerate(filled) if h is None)
    distinct = requirement.distinct_roles - _distinct_roles(holders)
    return max(requirement.approvers - len(holders), sum(unfilled.values()), distinct), unfilled


def can_be_met(requirement: Requirement, holders: Iterable[frozenset[str]]) -> bool:
    """Whether distinct people holding these role sets could meet ``requirement`` (group
    membership aside: pass only the members)."""
    return _shortfall(requirement, list(holders))[0] == 0


def _distinct_roles(holders: list[frozenset[str]]) -> int:
    """How many different roles these approvers can represent, one role per person."""
    roles = sorted(set().union(*holders)) if holders else []
    return sum(h is not None for h in _fill_slots(roles, holders))


def _fill_slots(slots: list[str], holders: list[frozenset[str]]) -> list[int | None]:
    """Give each role slot a distinct holder of that role: maximum bipartite matching (Kuhn)."""
    slot_holder: list[int | None] = [None] * len(slots)
    holder_slot: dict[int, int] = {}

    def augment(slot: int, seen: set[int]) -> bool:
        for h, roles in enumerate(holders):
            if slots[slot] in roles and h not in seen:
                seen.add(h)
                if h not in holder_slot or augment(holder_slot[h], seen):
                    holder_slot[h] = slot
                    slot_holder[slot] = h
                    return True
        return False

    for slot in range(len(slots)):
        augment(slot, set())
    return slot_holder


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
