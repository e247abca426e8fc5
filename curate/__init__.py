"""jcurate: curate. The DataTrove pipeline, one subpackage per stage of the data flow:

``reading`` (manifest, readers) -> ``filters`` (Japanese rules, language) -> ``dedup`` (exact and near)
-> ``decont`` -> ``scoring`` (shipped scorer, classifier, judge); ``running`` runs the stages and
``handover`` loads their shards into the store and builds subsets. ``text`` holds what several stages
share; ``config``, ``records``, ``columns`` and ``batch_stats`` sit under all of them.

Importing ``curate`` applies ``curate.datatrove_patch`` (a faster dependency check in datatrove), which
must be in place before datatrove unpickles our steps in a worker.
"""

from curate.datatrove_patch import patch_distribution_check as _patch

_patch()
