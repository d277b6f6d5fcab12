"""Layer 1, the core: pure logic (model, policy, approvals, the chain of authority, the audit
hash chain, chain codecs). It imports nothing of the other layers and no I/O edge (store, HSM,
gRPC, sockets); tests/unit/test_architecture.py enforces this."""
