"""A Hugging Face dataset card (``README.md``) for an exported subset.

YAML front matter in the hub's format (license, language, task_categories, size_categories,
source_datasets, pretty_name) and a body that says how the subset was selected (criteria, the
scorer and its version, counts), where its records come from, and what their licenses oblige
(the subset's NOTICE). The front matter's ``license`` lists every license that applies to the
records, their sources' data licenses and the terms of the models that generated them (a hub user
reads the card, not each record): one hub id, or a list of them; terms the hub does not know are
``other``, named by ``license_name`` (and ``license_link`` where there is one set of them).
"""

from __future__ import annotations

import json

import yaml

from licenses.catalogue import Catalogue, License
from licenses.notice import subset_licenses, subset_notice, subset_size_note, subset_sources

# license ids the hub knows; anything else is `license: other` with license_name / license_link
HUB_LICENSES = {"apache-2.0", "mit", "cc0-1.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
                "cc-by-nc-4.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "odc-by", "gemma", "llama3",
                "llama3.1", "llama3.2", "llama3.3"}
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
FIELDS = [("record_id", "the record's id in the jcurate store (`<source_id>:<row or id>`)"),
          ("source_id", "the source it was read from"), ("license", "its effective license"),
          ("source_license", "the source's license"), ("model_license", "the generating model's terms, if any"),
          ("generated_by", "the model that generated it, if any"), ("instruction", ""), ("input", ""),
          ("output", ""), ("messages", "the turns of a conversation, as a JSON string"),
          ("score", "the score it was ranked by"), ("rank", "its rank in the subset")]


def size_category(n: int) -> str:
    """The hub's size bucket.

    >>> size_category(999), size_category(1000), size_category(250_000)
    ('n<1K', '1K<n<10K', '100K<n<1M')
    """
    return next((label for bound, label in SIZES if n < bound), "n>100M")


def hub_id(license_id: str, catalogue: Catalogue) -> str | None:
    """The hub's id of a catalogue license (``unknown`` is the hub's too); None for terms the hub does not know."""
    if license_id == "unknown":
        return "unknown"
    return next((k for k, v in catalogue.card_licenses.items() if v == license_id and k in HUB_LICENSES), None)


def hub_license_keys(licenses: list[License], catalogue: Catalogue) -> dict:
    """The front matter's license keys for every license that applies: ``license`` one hub id or a list
    (``other`` standing for the terms the hub does not know), and for those ``license_name`` (their ids) and
    ``license_link`` (where there is one set of them).

    >>> from licenses.catalogue import load_catalogue
    >>> cat = load_catalogue()
    >>> hub_license_keys([cat.get("CC-BY-4.0")], cat)
    {'license': 'cc-by-4.0'}
    >>> hub_license_keys([cat.get("Apache-2.0"), cat.get("OpenAI-ToU")], cat)
    {'license': ['apache-2.0', 'other'], 'license_name': 'openai-tou', 'license_link': 'https://openai.com/policies/row-terms-of-use/'}
    """
    ids = [hub_id(lic.id, catalogue) for lic in licenses]
    others = [lic for lic, hub in zip(licenses, ids) if hub is None]
    values = list(dict.fromkeys(hub for hub in ids if hub)) + (["other"] if others else [])
    keys: dict = {"license": values[0] if len(values) == 1 else values}
    if others:
        keys["license_name"] = ", ".join(lic.id.lower() for lic in others)
        if len(others) == 1 and others[0].url:
            keys["license_link"] = others[0].url
    return keys


def _kinds(licenses: list[License], sources: list[dict]) -> str:
    """``Apache-2.0 (data), OpenAI-ToU (terms of gpt-3.5-turbo, which generated records)``"""
    models: dict[str, list[str]] = {}
    for s in sources:
        if s["generated_by_model"]:
            models.setdefault(s["generated_by_license"], []).append(s["generated_by_model"])
    data = {s["license_id"] for s in sources}
    parts = []
    for lic in licenses:
        roles = ["data"] if lic.id in data else []
        if lic.id in models:
            roles.append(f"terms of {', '.join(sorted(set(models[lic.id])))}, which generated records")
        parts.append(f"{lic.id} ({'; '.join(roles)})")
    return ", ".join(parts)


def _source_dataset(src: dict, hub: dict) -> str:
    """A hub source's id (its revision goes in the body), else its URL or id."""
    if src["source_id"] in hub:
        return hub[src["source_id"]][0]
    url = src["url"] or ""
    prefix = "https://huggingface.co/datasets/"
    return url[len(prefix):].strip("/") if url.startswith(prefix) else (url or src["source_id"])


def dataset_card(con, subset: str, catalogue: Catalogue) -> str:
    run_id, criteria, n = con.execute("SELECT run_id, criteria, n_records FROM subsets WHERE name = ?",
                                      [subset]).fetchone()
    criteria = json.loads(criteria)
    effective = [r[0] for r in con.execute(
        """SELECT rl.license, count(*) FROM subset_members m JOIN record_license rl USING (record_id)
           WHERE m.subset = ? GROUP BY ALL ORDER BY 2 DESC, 1""", [subset]).fetchall()]
    governing = subset_licenses(con, subset, catalogue)
    sources = subset_sources(con, subset)
    hub = {r[0]: (r[1], r[2]) for r in con.execute(
        """SELECT source_id, hub_id, hub_revision FROM current_sources
           WHERE hub_id IS NOT NULL AND source_id IN (SELECT unnest(?))""", [[s["source_id"] for s in sources]]
    ).fetchall()}
    front = {**hub_license_keys(governing, catalogue), "language": ["ja"], "task_categories": ["text-generation"],
             "size_categories": [size_category(n)],
             "source_datasets": list(dict.fromkeys(_source_dataset(s, hub) for s in sources)),
             "pretty_name": subset, "tags": ["jcurate", "instruction-tuning", "sft", "japanese"]}
    scorer_models = []
    if criteria.get("score"):
        scorer_models = [r[0] for r in con.execute(
            """SELECT DISTINCT s.model FROM scores s JOIN subset_members m USING (record_id)
               WHERE m.subset = ? AND s.scorer = ? ORDER BY 1""", [subset, criteria["score"]]).fetchall()]
    if criteria.get("top_k") is not None:
        how = (f"the top {n} kept records by the `{criteria['score']}` scorer "
               f"({', '.join(scorer_models) or 'no model recorded'}), ties broken by a hash of the record id")
        if criteria.get("per_source") and criteria.get("quota_min_score") is not None:
            how += (f", taken from each source in proportion to its share of the eligible records scoring at least "
                    f"{criteria['quota_min_score']}")
        elif criteria.get("per_source"):
            how += ", taken from each source in proportion to its share of the eligible records"
    elif criteria.get("random") is not None:
        how = f"{n} kept records drawn at random (seed {criteria['seed']}): a baseline arm"
    else:
        how = "every kept record that passes the license criteria"
    if criteria.get("diversity") is not None:
        how += (f", skipping a record within cosine distance {criteria['diversity']} of one already selected "
                f"({criteria['embedding_backend']} embeddings)")
    filters = [f"license use: {criteria['license_use']}" if criteria.get("license_use") else "license use: any",
               "no share-alike licenses" if criteria.get("no_share_alike") else None,
               f"excluding records generated by / under {', '.join(criteria['exclude_generated_by'])}"
               if criteria.get("exclude_generated_by") else None]
    notice = subset_notice(con, subset, catalogue).split("\n", 2)[2]  # without its title
    lines = [f"# {subset}", "",
             f"{n} Japanese instruction records curated with jcurate from curation run "
             f"`{run_id}`: read, filtered (quality, Japanese), deduplicated (exact and near), decontaminated "
             f"against evaluation sets, and every record's source and license tracked.", "",
             "## How the records were selected", "",
             f"- Selection: {how}.", *[f"- {f}" for f in filters if f],
             *([f"- Size: {note}."] if (note := subset_size_note(con, subset)) else []),
             *[f"- Source `{sid}`: hub dataset `{hub_id}` at revision `{rev}`" for sid, (hub_id, rev) in hub.items()],
             "",
             "## Licenses and obligations", "",
             f"Licenses that apply to the records: {_kinds(governing, sources)}. Each record carries its "
             f"effective `license` ({', '.join(effective)} here: the most restrictive of its source's and its "
             f"generating model's) and both of those, `source_license` and `model_license`.", "",
             notice.strip(), "", "## Fields", "",
             *[f"- `{name}`" + (f": {what}" if what else "") for name, what in FIELDS], ""]
    return "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n\n" + "\n".join(lines)
