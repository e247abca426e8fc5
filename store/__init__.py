"""The DuckDB provenance store: schema, connections, transactions, ids, row writes, the judge cache.

Everything above (licenses, curate, train, eval, the app shell) reads and writes the store
through this package; it imports nothing of the project but ``core``.
"""
