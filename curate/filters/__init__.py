"""The per-record filters: read errors, the Japanese quality rules (``japanese``: how a sentence ends, how much
repeats) and the language test (``record_filters``).
"""
