"""Tron: addresses, the strict decoder of ``Transaction.raw`` and signing (pure)."""
