"""License rules: effective license of a record, the use ladder, and what a subset obliges.

The effective license of a record is the most restrictive of its source's license and the
license of the model that generated it. "Most restrictive" orders by use level first
(commercial < non-commercial < academic-only < unspecified), then by the obligations a
license adds (no-derivatives, share-alike, training restriction, terms on derivatives,
notice). Every license that governs a record still applies; the effective one is the one
that decides the use level. ``record_license`` in the store is the SQL twin of
``effective_license`` (the tests check they agree on every pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from licenses.catalogue import License

USE_RANK = {"commercial": 0, "non-commercial": 1, "academic-only": 2, "unspecified": 3}
# the Data Provenance Initiative ladder: commercial ⊂ non-commercial ⊂ academic
LADDER = {"commercial": 0, "non-commercial": 1, "academic": 2}
# share-alike licenses whose adaptations may be released under a later version
UPGRADES = {"CC-BY-SA-3.0": "CC-BY-SA-4.0", "CC-BY-NC-SA-3.0": "CC-BY-NC-SA-4.0"}


def restrictiveness(lic: License) -> int:
    return (USE_RANK[lic.use] * 100 + lic.no_derivatives * 16 + lic.share_alike * 8
            + lic.restricts_training_other_models * 4 + lic.derivative_terms * 2 + lic.notice_required)


def effective_license(source: License, model: License | None) -> License:
    """The most restrictive of the two; the source's on a tie."""
    if model is not None and restrictiveness(model) > restrictiveness(source):
        return model
    return source


def admitted(lic: License, level: str) -> bool:
    """May a record under ``lic`` enter a subset for ``level`` use? Unspecified never does."""
    return lic.use != "unspecified" and USE_RANK[lic.use] <= LADDER[level]


@dataclass
class Verdict:
    commercial: bool = True
    redistribute: bool = True
    training_restricted: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"commercial": self.commercial, "redistribute": self.redistribute,
                "training_restricted": self.training_restricted, "reasons": self.reasons}


def _terms_families(licenses: list[License]) -> dict[str, list[str]]:
    """Licenses that impose their own terms on derivatives, grouped after version upgrades."""
    families: dict[str, list[str]] = {}
    for lic in licenses:
        if lic.derivative_terms:
            families.setdefault(UPGRADES.get(lic.id, lic.id), []).append(lic.id)
    return families


def _named(lic: License, data_ids: set[str]) -> str:
    """How a reason names a license: the data's (a source's license, or the terms of a model that generated
    records), or the base model's."""
    if lic.id not in data_ids:
        return f"base model terms {lic.id}"
    if lic.kind == "model-terms":
        return f"model terms {lic.id} (of a model that generated records)"
    return f"data license {lic.id}"


def check(data_licenses: list[License], base: License | None = None) -> Verdict:
    """May the data (and a model fine-tuned on it from ``base``) be used commercially and redistributed?
    ``data_licenses``: every license that governs the records, their sources' and their generating models'."""
    v = Verdict()
    data_ids = {lic.id for lic in data_licenses}
    everything = sorted({lic.id: lic for lic in data_licenses + ([base] if base else [])}.values(), key=lambda x: x.id)
    for lic in everything:
        what = _named(lic, data_ids)
        if lic.use == "unspecified":
            v.commercial = v.redistribute = False
            v.reasons.append(f"{what}: the license is unknown; resolve it before any use ({lic.url or 'no URL'})")
        elif lic.use != "commercial":
            v.commercial = False
            v.reasons.append(f"{what} allows {lic.use} use only ({lic.url})")
        if lic.no_derivatives:
            v.redistribute = False
            v.reasons.append(f"{what} forbids sharing adaptations (no-derivatives): a filtered subset or a "
                             f"fine-tuned model is an adaptation ({lic.url})")
        if lic.restricts_training_other_models:
            v.training_restricted = True
            v.reasons.append(f"{what} restricts using its outputs to train other models ({lic.url}): check that "
                             f"your use is allowed before training on this data")
    families = _terms_families(everything)
    if len(families) > 1:
        v.redistribute = False
        names = ", ".join(sorted(i for ids in families.values() for i in ids))
        v.reasons.append(f"conflicting terms on derivatives: {names} each require derivatives to carry their own "
                         f"terms, which cannot all hold at once")
    elif families:
        (ids,) = families.values()
        v.reasons.append(f"derivatives must be released under the terms of {', '.join(sorted(set(ids)))}")
    for lic in everything:
        if lic.attribution or lic.notice_required:
            v.reasons.append(f"{lic.id}: redistribution must carry "
                             f"{'attribution' if lic.attribution else ''}"
                             f"{' and ' if lic.attribution and lic.notice_required else ''}"
                             f"{'the license notice' if lic.notice_required else ''}")
    if v.commercial and v.redistribute:
        v.reasons.insert(0, "no license in the subset forbids commercial use or redistribution")
    return v
