"""Deduplication: the near-duplicate rule (``near_duplicates``: prompt and answer both similar), MinHash
signatures and LSH buckets (``minhash``), the part shingles the filter tasks write (``part_shingles``) and the
plan that decides every duplicate (``plan``).
"""
