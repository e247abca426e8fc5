"""Text primitives the stages share: character n-grams hashed in numpy, and word tokenizers (fugashi) that plug
into datatrove.
"""
