"""Layer 2, the adapters: the edges of signerd (HSM, store, configuration, PKI, logs, metrics,
process lifecycle). They may import the core only."""
