"""The domain core: catalog rules, invoices and payments. Routes call in here; this calls
the stores (metadata tables, usage SQL) and the pure rating functions."""

__all__: list[str] = []
