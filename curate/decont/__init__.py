"""Decontamination: drop training records whose prompt copies an eval prompt, whole, nearly, or by a shared
n-gram (``decontaminate``).
"""
