"""Layer 3, the services: the use cases (ledger, proposals, transfers, the sign step, wallets,
admin acts, reports) over the core and the adapters."""
