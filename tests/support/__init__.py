"""The harness the tests and the benchmarks share (no tests here).

daemon      the state folder (`signerd init`), config edits, the daemon subprocess, its channels
rpc         pb, rpc (generated code) and rpc_error
governance  operators' decisions as signerctl makes them; governance through the demo quorum
fixtures    pytest fixtures (tests/conftest.py imports them): daemon_factory; in_process_app, a
            module's in-process App
bitcoin     wallets, PSBTs, submission, and python-bitcointx's check of a final transaction
ethereum    wallets, EIP-1559 fields, submission
attacks     the store-writer attacks, run on SQLite and on PostgreSQL, and their helpers
hsm         the health service and the SoftHSM token taken away and given back
matrix      the access matrix and a raw call of any method by name
rpc_raw     hand-made protobuf bytes sent to any method
authority   a governance ledger in process (pure core), for the unit tests
audit       audit chains made in memory, export documents edited line by line (unit tests)
cli         signerctl against a running daemon
pg          a throwaway PostgreSQL cluster
evm         a local anvil node over JSON-RPC, Solidity compiled by solc-js, Safe's build artifacts

This file imports nothing: bench/common.py imports tests.support.daemon before it chooses which
checkout signerd is imported from.
"""
