"""``POST /v1/score``: what the pipeline would decide about new records, one batch at a time.

The filters, thresholds and MinHash parameters come from the configuration of the store's
latest run (``runs.config``), so the service and ``jcurate run`` agree; the shipped scorer
gives the score ``jcurate run`` stores as ``shipped``; the classifier is the latest one in
``classifier_models``; the duplicate index covers every record that run read. Nothing is
written to the store: the service opens it read-only.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import duckdb
from datatrove.utils.logging import logger

from core.config import from_dict
from core.errors import JcurateError, first_line
from curate.config import PipelineConfig
from curate.dedup.near_duplicates import RecordParts
from curate.filters.record_filters import JapaneseLanguageFilter, JapaneseQualityFilter
from curate.reading.readers import RowError, record_fields
from curate.records import make_document
from curate.scoring.shipped_scorer import ShippedScorer
from jcurate.service.near_index import DuplicateIndex
from jcurate.service.store_access import StoreBusy, read_only
from store.connection import LOCK_WAIT_S
from store.runs import latest_run_id, resolve_run


class JudgeUnavailable(JcurateError):
    """judge=true was asked and the judge's server does not answer (the service answers 503)."""


class RecordScorer:
    def __init__(self, db: str | Path, config: PipelineConfig | None = None, run_id: str | None = None):
        self.db = str(db)
        if not Path(db).is_file():
            raise JcurateError(f"no store at {db}: run `jcurate run` first (or pass --db)")
        with read_only(db, wait=LOCK_WAIT_S) as con:
            self.run_id = resolve_run(con, run_id)
            stored = con.execute("SELECT config FROM runs WHERE run_id = ?", [self.run_id]).fetchone()[0]
            self.decont_note = None
            if config is None:
                config = from_dict(PipelineConfig, json.loads(stored) if stored else {})
                missing = [f for f in config.decontamination.eval_files if not Path(f).is_file()]
                if config.decontamination.enabled and missing:
                    # the run's eval files are relative to where it ran: score on, without this stage
                    config.decontamination.enabled = False
                    self.decont_note = (f"decontamination skipped: the run's eval file {missing[0]} is not found "
                                        f"from {Path.cwd()} (start the service where the run ran, or pass --config)")
                config.validate()
            self.config = config
            self.quality = JapaneseQualityFilter(self.config.quality)
            self.language = JapaneseLanguageFilter(self.config.language)
            self.classifier, self.classifier_id, self.classifier_note = self._load_classifier(con)
            # the score `jcurate run` gives every kept record (scorer 'shipped'), with the run's model
            self.shipped = ShippedScorer(self.config.scoring.shipped_model)
            self.decont = self._decont_filter()
            logger.info(f"building the duplicate index over the records of run {self.run_id}")
            rows = con.execute(
                """SELECT r.record_id, r.source_id, r.text, r.content_hash, f.kept, f.dropped_at,
                          r.instruction, r.input, r.output, r.messages
                   FROM records r JOIN record_fate f ON f.record_id = r.record_id AND f.run_id = ?
                   WHERE r.text IS NOT NULL AND coalesce(f.dropped_at, '') <> 'read'
                   ORDER BY r.record_id""", [self.run_id]).fetchall()
        self.index = DuplicateIndex(self.config.near_dedup).build(rows)
        logger.info(f"duplicate index: {len(self.index.records)} records in {self.index.seconds:.1f} s")
        self._judge = None
        self._judge_cache: dict[str, dict] = {}
        self._lock = threading.Lock()  # fugashi and fastText objects are shared; one batch at a time
        self._judge_lock = threading.Lock()  # judge calls wait on the network: they do not hold up scoring

    @staticmethod
    def _load_classifier(con):
        from curate.scoring.classifier import QualityClassifier, find_classifier

        row = find_classifier(con)
        if row is None:
            return None, None, "no classifier in the store: run `jcurate classifier train`"
        if not Path(row[1]).is_file():
            return None, row[0], f"classifier {row[0]}: model file {row[1]} is missing"
        return QualityClassifier(row[1]), row[0], None

    def _decont_filter(self):
        """The run's decontamination filter, its index rebuilt from the eval files in a temporary folder (removed once loaded)."""
        c = self.config.decontamination
        if not c.enabled:
            self.decont_note = self.decont_note or "decontamination is off in the config"
            return None
        from curate.decont.decontaminate import loaded_decont_filter

        return loaded_decont_filter(c.eval_files, c)

    @property
    def judge_configured(self) -> bool:
        return bool(self.config.judge.model)

    def describe(self) -> dict:
        return {
            "run_id": self.run_id,
            "indexed_records": len(self.index.records),
            "index_seconds": round(self.index.seconds, 2),
            "classifier": self.classifier_id if self.classifier else None,
            "shipped_scorer": self.shipped.model_id,
            "classifier_note": self.classifier_note,
            "decontamination": self.decont is not None,
            "decontamination_note": self.decont_note,
            "judge": self.config.judge.model if self.judge_configured else None,
        }

    def score(self, records: list[dict], judge: bool = False, near_limit: int = 10) -> list[dict]:
        """One result per input record, in order; a record that cannot be parsed is dropped at ``read``."""
        with self._lock:
            parsed_docs = [self._parse(i, r) for i, r in enumerate(records)]
            docs = [doc for _, doc in parsed_docs if doc is not None]
            near = iter(self.index.near_hits_batch([
                (d.text, RecordParts.of(d.metadata["instruction"], d.metadata["input"], d.metadata["output"],
                                        d.metadata["messages"]), d.metadata["content_hash"]) for d in docs],
                max(near_limit, 1)))  # at least one hit is looked for: near_duplicates=0 hides the list, not the decision
            results = []
            for result, doc in parsed_docs:
                if doc is not None:
                    self._decide(result, doc, near_limit, next(near))
                results.append(result)
            parsed = [r for r in results if r["decisions"][0]["kept"]]
            if parsed:
                scores = self.shipped.score([r["normalised"] for r in parsed])
                for r, s in zip(parsed, scores):
                    r["shipped"] = {"score": round(float(s), 4), "model": self.shipped.model_id}
            if self.classifier is not None and parsed:
                scores = self.classifier.score([r["normalised"]["text"] for r in parsed])
                for r, s in zip(parsed, scores):
                    r["classifier"] = {"score": round(float(s), 4), "model_id": self.classifier_id}
        if judge:
            with self._judge_lock:
                self._judge_batch(parsed)
        return results

    def _parse(self, index: int, raw: dict):
        """(result, document): the document None where the record cannot be read (decided at ``read``)."""
        record_id = raw.get("id") or f"request:{index}"
        result = {"index": index, "id": record_id, "normalised": None, "decisions": [], "verdict": None,
                  "shipped": None, "classifier": None, "duplicates": {"exact": [], "near": []}, "judge": None}
        obj = {k: v for k, v in raw.items() if v is not None}
        try:
            fields = record_fields(obj, {"messages": "messages"} if "messages" in obj else
                                   {"instruction": "instruction", "input": "input", "output": "output"},
                                   multi_turn="messages" in obj)
        except RowError as e:
            result["decisions"].append({"stage": "read", "kept": False, "reason": "malformed_record",
                                        "value": f"records[{index}]: {e}"})
            result["verdict"] = {"kept": False, "dropped_at": "read", "reason": "malformed_record"}
            return result, None
        return result, make_document(record_id=record_id, source_id="request", **fields)

    def _decide(self, result: dict, doc, near_limit: int, near_hits: list) -> None:
        """Every stage's decision on a read record (``near_hits``: its verified near duplicates in the store)."""
        meta = doc.metadata
        result["normalised"] = {"instruction": meta["instruction"], "input": meta["input"], "output": meta["output"],
                                "messages": meta["messages"], "text": doc.text, "content_hash": meta["content_hash"]}
        decisions = [{"stage": "read", "kept": True, "reason": None, "value": None}]
        # every stage is evaluated (not only up to the first drop), so a caller sees all reasons at once
        decisions += [_filter_decision("quality", self.quality, doc), _filter_decision("language", self.language, doc)]
        signals = {k: meta[k] for k in ("compression_ratio", "symbol_ratio", "kana_ratio", "lid_ja", "language")
                   if k in meta}
        exact = [_hit(rec) for rec in self.index.exact(meta["content_hash"])]
        near = [_hit(rec, sim) for rec, sim in near_hits]
        decisions.append({"stage": "exact_dedup", "kept": not exact, "reason": "duplicate_of_stored" if exact else None,
                          "value": exact[0]["record_id"] if exact else None})
        decisions.append({"stage": "near_dedup", "kept": not near, "reason": "near_duplicate_of_stored" if near else None,
                          "value": f"{near[0]['record_id']} jaccard={near[0]['jaccard']}" if near else None})
        if self.decont is not None:
            decisions.append(_filter_decision("decontamination", self.decont, doc))
        first_drop = next((d for d in decisions if not d["kept"]), None)
        result.update(decisions=decisions, signals=signals, duplicates={"exact": exact, "near": near[:near_limit]},
                      verdict={"kept": first_drop is None, "dropped_at": first_drop and first_drop["stage"],
                               "reason": first_drop and first_drop["reason"]})

    def _judge_batch(self, results: list[dict]) -> None:
        from curate.scoring.judge import PROMPT_VERSION, build_prompt, make_judge

        if self._judge is None:
            self._judge = make_judge(self.config.judge)
        self._judge_cache.update(self._stored_judgements(
            [r["normalised"]["content_hash"] for r in results], self._judge.model, PROMPT_VERSION))
        todo = [r for r in results if r["normalised"]["content_hash"] not in self._judge_cache]
        if todo:
            self._check_judge_answers()
            start = time.perf_counter()
            prompts = [build_prompt(r["normalised"]["instruction"], r["normalised"]["output"]) for r in todo]
            for r, j in zip(todo, self._judge.judge(prompts)):
                entry = {"score": j.score, "model": self._judge.model, "prompt_version": PROMPT_VERSION,
                         "error": j.error}
                if j.error is None:  # failures are retried on the next request, not cached
                    self._judge_cache[r["normalised"]["content_hash"]] = entry
                r["judge"] = entry
            logger.info(f"judge: {len(todo)} records in {time.perf_counter() - start:.1f} s")
        for r in results:
            r["judge"] = r["judge"] or self._judge_cache.get(r["normalised"]["content_hash"])

    def _check_judge_answers(self) -> None:
        """A judge server that stopped after the service started: one look (``GET /models``: a millisecond
        on a local server, one round trip to a remote one) before a batch that needs the judge, so the
        request fails at once with the server named instead of after every record's retries (~8 s each)."""
        from curate.scoring.judge import OpenAIJudge

        if isinstance(self._judge, OpenAIJudge) and (reason := self._judge.unreachable()):
            raise JudgeUnavailable(f"the judge server at {self._judge.base_url} does not answer ({reason}); "
                                   f"nothing was judged. Scores without the judge: send judge=false")

    def _stored_judgements(self, hashes: list[str], model: str, prompt_version: str) -> dict[str, dict]:
        """Judgements already in the store's judge cache (from `jcurate judge` or earlier runs). The service
        never writes the store (a run may be writing it): what it judges itself is kept in memory."""
        from store.cache import cached_scores

        todo = [h for h in hashes if h not in self._judge_cache]
        if not todo:
            return {}
        try:
            with read_only(self.db) as con:
                found = cached_scores(con, model, prompt_version, todo)
        except (StoreBusy, duckdb.CatalogException):  # busy, or a store from before the judge cache
            return {}
        return {h: {"score": s, "model": model, "prompt_version": prompt_version, "error": None, "cached": "store"}
                for h, s in found.items()}


def _filter_decision(stage: str, step, doc) -> dict:
    """A pipeline filter's decision on one document, with the value that decided a drop."""
    outcome = step.filter(doc)
    kept = outcome is True
    return {"stage": stage, "kept": kept, "reason": None if kept else outcome[1],
            "value": None if kept else doc.metadata.pop("drop_value", None)}


def _hit(rec, jaccard: float | None = None) -> dict:
    hit = {"record_id": rec.record_id, "source_id": rec.source_id, "kept_in_run": rec.kept,
           "dropped_at": rec.dropped_at}
    if jaccard is not None:
        hit["jaccard"] = jaccard
    return hit


class LiveScorer:
    """The scorer for the store's latest run, rebuilt in the background when a newer run or classifier lands.

    At most every ``reload_interval`` seconds a request triggers a look at the store; while a
    new scorer is built (index included) the old one keeps answering, then they are swapped.
    A store locked by a writer is simply looked at again later.
    """

    def __init__(self, db: str | Path, config: PipelineConfig | None = None, reload_interval: float = 60.0):
        self.db, self.config, self.reload_interval = str(db), config, reload_interval
        self.scorer = RecordScorer(db, config)
        self._checked = time.monotonic()
        self._reloading = threading.Lock()
        self.last_error: str | None = None
        self.reloads = 0

    def get(self) -> RecordScorer:
        if self.reload_interval > 0 and time.monotonic() - self._checked >= self.reload_interval:
            if self._reloading.acquire(blocking=False):
                self._checked = time.monotonic()
                threading.Thread(target=self._reload, daemon=True, name="jcurate-scorer-reload").start()
        return self.scorer

    def latest(self) -> tuple[str | None, str | None]:
        from curate.scoring.classifier import find_classifier

        with read_only(self.db) as con:
            clf = find_classifier(con)
            return latest_run_id(con), (clf[0] if clf else None)

    def _reload(self) -> None:
        try:
            if self.latest() != (self.scorer.run_id, self.scorer.classifier_id):
                logger.info(f"store {self.db} has a newer run or classifier: rebuilding the scorer")
                self.scorer = RecordScorer(self.db, self.config)
                self.reloads += 1
                logger.info(f"now scoring against run {self.scorer.run_id}")
            self.last_error = None
        except Exception as e:  # noqa: BLE001 - a busy or half-written store is retried at the next interval
            self.last_error = f"{type(e).__name__}: {first_line(e)}"
            logger.warning(f"scorer reload skipped: {self.last_error}")
        finally:
            self._reloading.release()

    def describe(self) -> dict:
        return {**self.scorer.describe(), "reload_interval_s": self.reload_interval, "reloads": self.reloads,
                "last_reload_error": self.last_error}
