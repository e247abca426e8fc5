"""jcurate: eval."""
