"""Scoring: the shipped scorer (``shipped_scorer``, its features in ``quality_features``, its models in
``models/``), the store's classifier, the LLM judge, embeddings, and the one loop that stores a scorer's
scores (``kept_scores``).
"""
