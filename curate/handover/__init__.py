"""The hand-over to the store: ingesting a run's shards into DuckDB (``ingest``) and building license-filtered
subsets and their exports (``subsets``).
"""
