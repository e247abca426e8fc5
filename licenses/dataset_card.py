"""A Hugging Face dataset card (``README.md``) for an exported subset.

YAML front matter in the hub's format (license, language, task_categories, size_categories,
source_datasets, pretty_name) and a body that says how the subset was selected (criteria, the
scorer and its version, counts), where its records come from, and what their licenses oblige
(the subset's NOTICE). The license is the subset's effective license where every record has
the same one; a subset under several is ``other``, and the body lists them with their
obligations.
"""

from __future__ import annotations

import json

import yaml

from licenses.catalogue import Catalogue
from licenses.notice import subset_notice, subset_size_note, subset_sources

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


def hub_license(license_id: str, catalogue: Catalogue) -> dict:
    """The front matter's license keys for one catalogue license."""
    hub_id = next((k for k, v in catalogue.card_licenses.items() if v == license_id and k in HUB_LICENSES), None)
    if hub_id:
        return {"license": hub_id}
    lic = catalogue.get(license_id)
    return {"license": "other", "license_name": license_id.lower(), "license_link": lic.url}


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
    licenses = [r[0] for r in con.execute(
        """SELECT rl.license, count(*) FROM subset_members m JOIN record_license rl USING (record_id)
           WHERE m.subset = ? GROUP BY ALL ORDER BY 2 DESC, 1""", [subset]).fetchall()]
    sources = subset_sources(con, subset)
    hub = {r[0]: (r[1], r[2]) for r in con.execute(
        """SELECT source_id, hub_id, hub_revision FROM current_sources
           WHERE hub_id IS NOT NULL AND source_id IN (SELECT unnest(?))""", [[s["source_id"] for s in sources]]
    ).fetchall()}
    if len(licenses) == 1:
        license_keys = hub_license(licenses[0], catalogue)
    else:
        license_keys = {"license": "other", "license_name": "mixed: " + ", ".join(licenses)}
    front = {**license_keys, "language": ["ja"], "task_categories": ["text-generation"],
             "size_categories": [size_category(n)], "source_datasets": [_source_dataset(s, hub) for s in sources],
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
             f"Effective licenses of the records: {', '.join(licenses)}. Each record carries its own `license`.", "",
             notice.strip(), "", "## Fields", "",
             *[f"- `{name}`" + (f": {what}" if what else "") for name, what in FIELDS], ""]
    return "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n\n" + "\n".join(lines)
