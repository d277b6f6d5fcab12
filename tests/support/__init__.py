"""The harness the tests and the benchmarks share (no tests here).

daemon      the state folder (`signerd init`), config edits, the daemon subprocess, its channels
rpc         pb, rpc (generated code) and rpc_error
governance  operators' decisions as signerctl makes them; governance through the demo quorum
fixtures    pytest fixtures (registered by tests/conftest.py): daemon_factory

This file imports nothing: bench/common.py imports tests.support.daemon before it chooses which
checkout signerd is imported from.
"""
