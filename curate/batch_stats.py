"""datatrove's per-document statistics, recorded a batch at a time.

datatrove's filters and writers call ``stat_update`` three to five times per document (total,
forwarded, the output file, ``doc_len``); each is a Python ``MetricStats.update``: about a tenth of
the filter stage. Here a batch's values are summarised in numpy and merged with datatrove's own
parallel formula (``MetricStats.__add__``), so ``stats.json`` holds the same totals, counts, means,
minima, maxima and variances (up to float rounding) as with one update per document.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.utils.batching import batched
from datatrove.utils.stats import MetricStats
from datatrove.utils.typeshelper import StatHints


def record_values(step, label: str, values, unit: str | None = None) -> None:
    """As ``step.stat_update(label, value=v, unit=unit)`` for every ``v`` of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return
    mean = float(values.mean())
    batch = MetricStats(total=_number(values.sum()), n=int(values.size), mean=mean, min=_number(values.min()),
                        max=_number(values.max()), _running_variance=float(((values - mean) ** 2).sum()),
                        unit=unit or "doc")
    step.stats[label] = step.stats[label] + batch


def _number(x) -> int | float:
    """An int where the value is whole (``update`` with int values keeps ints: ``stats.json`` says 3, not 3.0)."""
    x = float(x)
    return int(x) if x.is_integer() else x


def count(step, label: str, n: int) -> None:
    """As ``step.stat_update(label)`` ``n`` times."""
    if n:
        record_values(step, label, np.ones(n))


def record_doc_stats(step, docs: Iterable[Document]) -> None:
    """As ``step.update_doc_stats(doc)`` for every document (``doc_len``; ``doc_len_tokens`` where counted)."""
    docs = list(docs)
    record_values(step, "doc_len", [len(d.text) for d in docs], "doc")
    tokens = [t for d in docs if (t := d.metadata.get("token_count"))]
    record_values(step, "doc_len_tokens", tokens, "doc")


class BatchStatsFilter(BaseFilter):
    """``BaseFilter.run`` with its per-document statistics recorded per batch; the same decisions,
    order, exclusion writes and statistics."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for batch in batched(data, self.batch_size):
                if self.batch_size > 1:
                    self.stat_update("batches")
                with self.track_time("batch" if self.batch_size > 1 else None):
                    results = self.filter_batch(batch)
                kept, dropped, reasons = [], [], {}
                for doc, result in zip(batch, results):
                    keep, reason = get_filter_result(result)
                    if keep:
                        kept.append(doc)
                        continue
                    if reason:
                        reasons[reason] = reasons.get(reason, 0) + 1
                        doc.metadata["filter_reason"] = reason
                    dropped.append(doc)
                if writer is not None and dropped:
                    if hasattr(writer, "write_documents"):  # curate.running.outputs.RecordWriter: the batch at once
                        writer.write_documents(dropped, rank)
                    else:
                        for doc in dropped:
                            writer.write(doc, rank)
                count(self, StatHints.total, len(batch))
                count(self, StatHints.forwarded, len(kept))
                count(self, StatHints.dropped, len(batch) - len(kept))
                for reason, n in reasons.items():
                    count(self, f"dropped_{reason}", n)
                record_doc_stats(self, kept)
                yield from kept
