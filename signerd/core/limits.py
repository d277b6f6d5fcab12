"""The daemon's ``[limits]``: the one definition of the bounds on what a client sends.

The configuration (signerd.adapters.config) reads them from the TOML file; the chain adapters,
the PSBT parser and the EIP-1559 decoder apply them (and take their defaults from here)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_psbt_bytes: int = 4_000_000
    max_psbt_inputs: int = 5_000
    max_psbt_outputs: int = 5_000
    max_calldata_bytes: int = 131_072
    rate_per_second: float = 200.0
    rate_burst: int = 400
    # Open server streams (WatchTransfer, StreamEvents, Export): each holds a thread of the
    # stream pool, never one of [server] workers, while it is open.
    max_streams: int = 128
    max_streams_per_principal: int = 32
