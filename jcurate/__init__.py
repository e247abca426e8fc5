"""The app shell: the ``jcurate`` command line and the HTTP service, the only place that imports every package."""
