"""jcurate: licenses."""
