"""Policies over the chain registry's native coins, shared by the registry's unit tests and the
daemon's EVM-chain tests."""
from __future__ import annotations

# An ETH amount tier and a BNB tier for chain 56: the BNB one needs a judge on top.
TIERS = """
name = "tiers"
max_fee = { ETH = 50000000000000000, BNB = 10000000000000000 }

[[rule]]
name = "ether"
asset = "ETH"
approvers = 2
roles = { investigator = 1, custody_officer = 1 }

[[rule]]
name = "bnb"
asset = "BNB@56"
approvers = 3
roles = { investigator = 1, custody_officer = 1, judge = 1 }
"""
# TIERS without its BNB rule (still named "tiers").
ETHER_RULES = TIERS.split("[[rule]]\nname = \"bnb\"")[0]
