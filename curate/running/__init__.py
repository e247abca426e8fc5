"""Running the stages: the pipeline (``pipeline``: stages built from the config), one pool of workers for every
stage (``stage_pool``, ``worker_server``), Parquet outputs, progress and the run report.
"""
