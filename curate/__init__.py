"""jcurate: curate."""
