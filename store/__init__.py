"""The DuckDB provenance store: schema, connections, transactions, ids, row writes, the judge cache.

Everything above (licenses, curate, train, eval, the app shell) reads and writes the store
through this package; it imports nothing of the project but ``core``.
"""

# here, not in ``store.connection``: the command line's parser names it, and importing DuckDB there (0.1 s)
# delayed the start of a run's worker server
DEFAULT_DB = "jcurate.duckdb"
# rows ``jcurate sql`` shows in a table by default (``--max-rows``): the rest are counted, not shown
TABLE_ROWS = 1000
