"""jcurate: train."""
