"""The license catalogue, effective licenses, subsets with license filters, NOTICE.md, license checks."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import duckdb
import pytest

from licenses.catalogue import load_catalogue, sync_licenses
from licenses.dataset_card import hub_id
from licenses.rules import USE_RANK, admitted, check, effective_license
from store.connection import connect
from tests.conftest import ROOT, run_cli

CAT = load_catalogue()
ROOT_DATA = ROOT / "data/sources"
REQUIRED = ["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0",
            "CC-BY-NC-ND-4.0", "Apache-2.0", "MIT", "ODC-BY-1.0", "unknown", "Gemma", "Llama-3.1", "Qwen",
            "Qwen-Research", "OpenAI-ToU"]


def test_catalogue_has_the_required_licenses_with_urls():
    for lid in REQUIRED:
        assert lid in CAT, lid
        assert CAT.get(lid).url.startswith("https://") or lid == "unknown"
    assert CAT.resolve_model("google/gemma-2-2b-it").id == "Gemma"
    assert CAT.resolve_model("Qwen/Qwen2.5-0.5B-Instruct").id == "Apache-2.0"
    assert CAT.resolve_model("CC-BY-4.0").id == "CC-BY-4.0"


# one license per use level; academic-only has no catalogue entry, so the test makes one
BY_LEVEL = {
    "commercial": CAT.get("CC-BY-4.0"),
    "non-commercial": CAT.get("CC-BY-NC-4.0"),
    "academic-only": replace(CAT.get("CC-BY-NC-4.0"), id="TEST-ACADEMIC", use="academic-only"),
    "unspecified": CAT.get("unknown"),
}


@pytest.mark.parametrize("source_use, model_use", list(itertools.product(BY_LEVEL, [None, *BY_LEVEL])))
def test_effective_license_takes_the_more_restrictive_use(source_use, model_use):
    source = BY_LEVEL[source_use]
    model = BY_LEVEL[model_use] if model_use else None
    eff = effective_license(source, model)
    expected = source_use if model_use is None else max(source_use, model_use, key=USE_RANK.get)
    assert eff.use == expected
    for level in ("commercial", "non-commercial", "academic"):
        # a record enters a subset only if every license governing it is admitted
        assert admitted(eff, level) == all(admitted(x, level) for x in (source, model) if x is not None)


def test_sql_view_agrees_with_python_on_every_catalogue_pair(tmp_path):
    con = connect(tmp_path / "pairs.duckdb")
    sync_licenses(con, CAT)
    con.execute("INSERT INTO runs (run_id, finished_at) VALUES ('r', now())")
    ids = sorted(CAT.licenses)
    expected = {}
    for i, (src, gen) in enumerate(itertools.product(ids, [None, *ids])):
        sid = f"s{i}"
        con.execute("INSERT INTO sources (run_id, source_id, license_id, generated_by_license) VALUES ('r', ?, ?, ?)",
                    [sid, src, gen])
        con.execute("INSERT INTO records (record_id, source_id) VALUES (?, ?)", [f"{sid}:0", sid])
        expected[f"{sid}:0"] = effective_license(CAT.get(src), CAT.get(gen) if gen else None).id
    got = dict(con.execute("SELECT record_id, license FROM record_license").fetchall())
    assert got == expected


def test_rules_answer_the_questions_that_matter():
    sa_gemma = check([CAT.get("CC-BY-SA-4.0")], CAT.resolve_model("google/gemma-2-9b-it"))
    assert sa_gemma.redistribute is False and sa_gemma.commercial is True
    assert any("conflicting terms on derivatives" in r and "Gemma" in r and "CC-BY-SA-4.0" in r
               for r in sa_gemma.reasons)
    nc = check([CAT.get("CC-BY-NC-SA-4.0")])
    assert nc.commercial is False and any("non-commercial" in r for r in nc.reasons)
    openai = check([CAT.get("CC-BY-4.0"), CAT.get("OpenAI-ToU")])
    assert openai.training_restricted is True and any("OpenAI-ToU" in r for r in openai.reasons)
    nd = check([CAT.get("CC-BY-NC-ND-4.0")])
    assert nd.redistribute is False and nd.commercial is False
    assert check([CAT.get("CC-BY-SA-3.0"), CAT.get("CC-BY-SA-4.0")]).redistribute is True  # 3.0 -> 4.0 upgrade
    assert check([CAT.get("unknown")]).commercial is False
    free = check([CAT.get("CC0-1.0"), CAT.get("MIT")], CAT.resolve_model("Qwen/Qwen2.5-0.5B-Instruct"))
    assert free.commercial and free.redistribute


@pytest.fixture(scope="module")
def store(default_run, tmp_path_factory):
    """A copy of the default run's store, so subsets made here do not leak into other tests."""
    import shutil

    db = tmp_path_factory.mktemp("subsets") / "store.duckdb"
    shutil.copy(default_run[1], db)
    return db


def _members(db, name):
    con = duckdb.connect(str(db), read_only=True)
    return con.execute(
        """SELECT m.record_id, m.rank, s.license_id, s.generated_by_license, ls.use, lm.use, ls.share_alike
           FROM subset_members m JOIN records r USING (record_id) JOIN current_sources s USING (source_id)
           JOIN licenses ls ON ls.license_id = s.license_id LEFT JOIN licenses lm ON lm.license_id = s.generated_by_license
           WHERE m.subset = ? ORDER BY m.rank""", [name]).fetchall()


def test_commercial_subset_never_holds_a_non_commercial_record(store, tmp_path):
    out = tmp_path / "com.jsonl"
    assert run_cli("subset", "--name", "com", "--license-use", "commercial", "--out", str(out), "--db", str(store)) == 0
    rows = _members(store, "com")
    assert rows and all(r[4] == "commercial" and r[5] in (None, "commercial") for r in rows)
    assert {r[2] for r in rows} == {"CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0"}
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(exported) == len(rows)
    assert all({"record_id", "source_id", "license"} <= set(e) for e in exported)
    assert {e["license"] for e in exported if e["source_id"] == "jcurate-synthetic"} == {"Gemma"}
    notice = (tmp_path / "com.NOTICE.md").read_text(encoding="utf-8")
    present = {e["source_id"] for e in exported}
    for sid in ("jcurate-alpaca", "jcurate-labelled", "jcurate-chat", "jcurate-code", "jcurate-synthetic"):
        assert (f"| {sid} |" in notice) == (sid in present), sid
    assert "jcurate-chat" not in present and "Share-alike" in notice and "Gemma" in notice


def test_filters_share_alike_generated_by_and_academic(store):
    assert run_cli("subset", "--name", "nosa", "--no-share-alike", "--exclude-generated-by", "google/gemma-3-270m",
                   "--db", str(store)) == 0
    rows = _members(store, "nosa")
    assert {r[2] for r in rows} == {"CC-BY-4.0", "Apache-2.0"} and not any(r[6] for r in rows)
    assert all(r[3] is None for r in rows)
    assert run_cli("subset", "--name", "nogemma", "--exclude-generated-by", "Gemma", "--db", str(store)) == 0
    assert all(r[3] is None for r in _members(store, "nogemma"))
    assert run_cli("subset", "--name", "acad", "--license-use", "academic", "--db", str(store)) == 0
    assert run_cli("subset", "--name", "nc", "--license-use", "non-commercial", "--db", str(store)) == 0
    assert len(_members(store, "acad")) == len(_members(store, "nc")) > len(_members(store, "nosa"))


def test_top_k_and_random_baseline(store):
    assert run_cli("subset", "--name", "top", "--top-k", "40", "--score", "label", "--db", str(store)) == 0
    con = duckdb.connect(str(store), read_only=True)
    scores = [r[0] for r in con.execute("SELECT score FROM subset_members WHERE subset='top' ORDER BY rank").fetchall()]
    assert len(scores) == 40 and scores == sorted(scores, reverse=True) and scores[0] == 5
    con.close()
    assert run_cli("subset", "--name", "r1", "--random", "40", "--seed", "3", "--db", str(store)) == 0
    assert run_cli("subset", "--name", "r2", "--random", "40", "--seed", "3", "--db", str(store)) == 0
    assert run_cli("subset", "--name", "r3", "--random", "40", "--seed", "4", "--db", str(store)) == 0
    r1, r2, r3 = ([r[0] for r in _members(store, n)] for n in ("r1", "r2", "r3"))
    assert r1 == r2 and r1 != r3 and len(r1) == 40


def test_subset_errors_are_one_line(store, capsys):
    assert run_cli("subset", "--name", "top", "--top-k", "5", "--score", "label", "--db", str(store)) == 2
    assert "exists already" in capsys.readouterr().err
    assert run_cli("subset", "--name", "x", "--top-k", "5", "--score", "judge", "--db", str(store)) == 2
    assert "no scores named 'judge'" in capsys.readouterr().err


def test_licenses_check_on_a_stored_subset(store, capsys):
    assert run_cli("subset", "--name", "everything", "--db", str(store)) == 0
    capsys.readouterr()
    assert run_cli("licenses", "check", "--subset", "everything", "--base-model", "google/gemma-2-2b-it",
                   "--format", "json", "--db", str(store)) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["commercial"] is False and verdict["redistribute"] is False
    assert any("CC-BY-NC-SA-4.0" in r for r in verdict["reasons"])
    assert run_cli("licenses", "check", "--subset", "everything", "--base-model", "no/such-model",
                   "--db", str(store)) == 2


def test_sql_is_read_only(store, capsys):
    for statement in ("DELETE FROM records", "INSERT INTO runs (run_id) VALUES ('x')", "DROP TABLE records",
                      "SELECT 1; DELETE FROM records", "COPY records TO '/tmp/x.csv'", "ATTACH '/tmp/x.db'"):
        assert run_cli("sql", statement, "--db", str(store)) == 2
        assert "read-only" in capsys.readouterr().err
    assert run_cli("sql", "SELECT count(*) AS n FROM records", "--format", "json", "--db", str(store)) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] > 1000
    assert run_cli("sql", "SELECT source_id FROM sources LIMIT 1", "--format", "csv", "--db", str(store)) == 0
    assert capsys.readouterr().out.startswith("source_id\n")


def test_licenses_check_resolves_a_family_model_and_says_how(store, capsys):
    assert run_cli("subset", "--name", "all-for-family", "--db", str(store)) == 0
    capsys.readouterr()
    assert run_cli("licenses", "check", "--subset", "all-for-family", "--base-model", "no/such-model",
                   "--db", str(store)) == 2
    assert "Pass its license id instead" in capsys.readouterr().err
    # a model the catalogue knows by a family rule, not by a hand-listed id
    assert run_cli("licenses", "check", "--subset", "all-for-family", "--base-model", "google/gemma-2-2b",
                   "--db", str(store)) == 0
    assert "(Gemma, from its family rule 'google/gemma-*')" in capsys.readouterr().out


@pytest.mark.parametrize("written, license_id", [("apache-2.0", "Apache-2.0"), ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
                                                ("gemma", "Gemma")])
def test_licenses_check_reads_a_base_license_id_in_another_case_as_the_manifest_does(store, capsys, written,
                                                                                      license_id):
    """`--base-model apache-2.0` (the hub's spelling): the manifest reads it as Apache-2.0, so does the check."""
    name = f"all-for-{written}"
    assert run_cli("subset", "--name", name, "--db", str(store)) == 0
    capsys.readouterr()
    assert run_cli("licenses", "check", "--subset", name, "--base-model", written, "--db", str(store)) == 0
    assert f"a model fine-tuned from {written} ({license_id}, from its license id {license_id})" in \
        capsys.readouterr().out
    assert run_cli("licenses", "check", "--subset", name, "--base-model", "apache-3.0", "--db",
                   str(store)) == 2


@pytest.mark.parametrize("model, license_id", [
    ("google/gemma-2-2b", "Gemma"), ("google/gemma-3-1b-pt", "Gemma"),
    ("meta-llama/Llama-3.1-405B-Instruct", "Llama-3.1"), ("meta-llama/Meta-Llama-3-8B", "Llama-3"),
    ("Qwen/Qwen2.5-7B", "Apache-2.0"), ("Qwen/Qwen2.5-32B-Instruct", "Apache-2.0"),
    ("Qwen/Qwen2.5-3B", "Qwen-Research"), ("Qwen/Qwen2.5-Coder-3B-Instruct", "Qwen-Research"),
    ("Qwen/Qwen2.5-72B", "Qwen"), ("Qwen/Qwen2.5-Math-72B-Instruct", "Qwen"),
    ("llm-jp/llm-jp-3-150m-instruct3", "Apache-2.0"), ("elyza/Llama-3-ELYZA-JP-8B", "Llama-3"),
    ("cyberagent/calm3-22b-chat", "Apache-2.0"), ("tokyotech-llm/Llama-3-Swallow-8B-Instruct-v0.1", "Llama-3"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Apache-2.0"), ("CC-BY-4.0", "CC-BY-4.0"),
])
def test_family_rules_resolve_models_without_a_hand_list(model, license_id):
    from licenses.models import resolve_model_license

    assert resolve_model_license(model, CAT).license.id == license_id


def _card(folder, front: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\n{front}---\n# a model\n", encoding="utf-8")
    return folder


def test_a_model_card_decides_first_and_a_disagreement_is_said(tmp_path):
    from core.errors import JcurateError
    from licenses.models import resolve_model_license

    local = _card(tmp_path / "my-model", "license: other\nlicense_name: gemma-terms-of-use\n"
                                         "license_link: https://ai.google.dev/gemma/terms\n")
    r = resolve_model_license(str(local), CAT)
    assert r.license.id == "Gemma" and r.source == f"model card {local / 'README.md'}" and r.note is None
    # the Hugging Face cache's documented layout: models--ORG--NAME/{refs/main, snapshots/SHA/README.md}
    cache = tmp_path / "hub"
    repo = cache / "models--google--gemma-9-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text("0123abcd" * 5, encoding="utf-8")
    _card(repo / "snapshots" / ("0123abcd" * 5), "license: apache-2.0\n")
    r = resolve_model_license("google/gemma-9-test", CAT, cache_dir=cache)
    assert r.license.id == "Apache-2.0" and r.source.startswith("model card ")
    assert "the model card says Apache-2.0, the catalogue's family rule 'google/gemma-*' says Gemma" in r.note
    assert resolve_model_license("google/gemma-9-test", CAT).license.id == "Gemma", "not cached there: the rule"
    _card(tmp_path / "odd", "license: other\nlicense_name: some-custom-terms\nlicense_link: https://example.org/t\n")
    with pytest.raises(JcurateError, match="says license 'some-custom-terms' .https://example.org/t., which"):
        resolve_model_license(str(tmp_path / "odd"), CAT)


def test_generated_by_without_a_license_takes_the_model_s(tmp_path):
    from curate.reading.manifest import load_manifest

    (tmp_path / "a.jsonl").write_text('{"instruction": "質問", "output": "答え"}\n', encoding="utf-8")
    manifest = tmp_path / "sources.yaml"
    manifest.write_text("sources:\n  - id: s\n    path: a.jsonl\n    format: jsonl\n    license: CC-BY-4.0\n"
                        "    fields: {instruction: instruction, output: output}\n"
                        "    generated_by: {model: Qwen/Qwen2.5-3B-Instruct}\n", encoding="utf-8")
    (source,) = load_manifest(str(manifest))
    assert source.generated_by.license == "Qwen-Research"


def test_a_folder_export_is_an_hf_dataset_with_a_card_and_exports_keep_their_own_notice(store, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    folder = tmp_path / "exports"
    assert run_cli("subset", "--name", "card-top", "--license-use", "commercial", "--top-k", "30", "--score", "label",
                   "--out", str(folder / "card-top"), "--db", str(store)) == 0
    ds = datasets.load_from_disk(str(folder / "card-top"))
    assert len(ds) == 30 and {"record_id", "source_id", "license", "instruction", "output", "score"} <= set(ds.column_names)
    card = DatasetCard.load(folder / "card-top/README.md")
    assert card.data.language == ["ja"] and card.data.size_categories == ["n<1K"]
    assert card.data.task_categories == ["text-generation"] and card.data.pretty_name == "card-top"
    # every license that applies to the records: their sources' and their generating models'
    governing = sorted(set(ds["source_license"]) | {m for m in ds["model_license"] if m})
    assert "Gemma" in governing and len(governing) > 1
    assert card.data.license == [hub_id(lic, CAT) for lic in governing] and "license_name" not in card.data.to_dict()
    assert "top 30 kept records by the `label` scorer" in card.text and "## Licenses and obligations" in card.text
    assert (folder / "card-top/NOTICE.md").is_file()
    # two file exports into one folder: each keeps its own NOTICE and card
    for name in ("a", "b"):
        assert run_cli("subset", "--name", f"file-{name}", "--random", "5", "--seed", name == "a" and "1" or "2",
                       "--out", str(folder / f"{name}.jsonl"), "--db", str(store)) == 0
    assert "file-a" in (folder / "a.NOTICE.md").read_text(encoding="utf-8")
    assert "file-b" in (folder / "b.NOTICE.md").read_text(encoding="utf-8")
    assert DatasetCard.load(folder / "b.README.md").data.pretty_name == "file-b"
    assert datasets.load_dataset("json", data_files=str(folder / "a.jsonl"), split="train").num_rows == 5


def test_per_source_top_k_keeps_the_pool_s_mix(store):
    assert run_cli("subset", "--name", "ps-top", "--top-k", "60", "--score", "label", "--per-source",
                   "--db", str(store)) == 0
    con = duckdb.connect(str(store), read_only=True)
    try:
        pool = dict(con.execute("""SELECT r.source_id, count(*) FROM record_fate f JOIN records r USING (record_id)
                                   JOIN scores s ON s.record_id = r.record_id AND s.scorer = 'label'
                                   WHERE f.kept AND f.run_id = (SELECT run_id FROM latest_run)
                                   GROUP BY 1""").fetchall())
        picked = con.execute("""SELECT r.source_id, m.score FROM subset_members m JOIN records r USING (record_id)
                                WHERE m.subset = 'ps-top' ORDER BY m.rank""").fetchall()
        best = {src: con.execute("""SELECT max(s.score) FROM scores s JOIN records r USING (record_id)
                                    JOIN record_fate f ON f.record_id = r.record_id AND f.kept
                                    AND f.run_id = (SELECT run_id FROM latest_run)
                                    WHERE s.scorer = 'label' AND r.source_id = ?""", [src]).fetchone()[0]
                for src in pool}
    finally:
        con.close()
    assert len(picked) == 60
    total = sum(pool.values())
    for src, n in pool.items():
        got = sum(1 for s, _ in picked if s == src)
        assert abs(got - 60 * n / total) < 1, (src, got, 60 * n / total)
    assert [s for _, s in picked] == sorted((s for _, s in picked), reverse=True), "kept in rank order"
    assert all(max(s for p, s in picked if p == src) == best[src] for src in {p for p, _ in picked})


def test_quota_min_score_counts_each_source_s_share_over_its_good_records(store, tmp_path):
    con = duckdb.connect(str(store), read_only=True)
    try:
        good = dict(con.execute("""SELECT r.source_id, count(*) FILTER (WHERE s.score >= 4) FROM record_fate f
                                   JOIN records r USING (record_id)
                                   JOIN scores s ON s.record_id = r.record_id AND s.scorer = 'label'
                                   WHERE f.kept AND f.run_id = (SELECT run_id FROM latest_run) GROUP BY 1""").fetchall())
    finally:
        con.close()
    assert len(good) > 1 and sum(good.values()) >= 20, good
    # the default top-k is these quotas; --per-source --quota-min-score 4 and --quota-min-score 4 say the same
    for name, flags in (("ps-good", ["--per-source", "--quota-min-score", "4"]), ("q-good", ["--quota-min-score", "4"]),
                        ("default", [])):
        assert run_cli("subset", "--name", name, "--top-k", "20", "--score", "label", *flags,
                       "--out", str(tmp_path / name), "--db", str(store)) == 0
    con = duckdb.connect(str(store), read_only=True)
    try:
        picked = dict(con.execute("""SELECT r.source_id, count(*) FROM subset_members m JOIN records r USING (record_id)
                                     WHERE m.subset = 'ps-good' GROUP BY 1""").fetchall())
        members = {name: con.execute("SELECT record_id FROM subset_members WHERE subset = ? ORDER BY rank",
                                     [name]).fetchall() for name in ("ps-good", "q-good", "default")}
    finally:
        con.close()
    total = sum(good.values())
    for src, n in good.items():
        assert abs(picked.get(src, 0) - 20 * n / total) < 1, (src, picked, good)
    assert members["ps-good"] == members["q-good"] == members["default"]
    assert "scoring at least 4.0" in (tmp_path / "default" / "README.md").read_text(encoding="utf-8")
    # quotas and one ranking over all sources are alternatives: a clear error, no subset
    for flags in (["--quota-min-score", "4", "--global"], ["--per-source", "--diversity", "0.1"]):
        assert run_cli("subset", "--name", "bad", "--top-k", "20", "--score", "label", *flags,
                       "--db", str(store)) != 0
    assert run_cli("subset", "--name", "bad", "--random", "20", "--per-source", "--db", str(store)) != 0
    con = duckdb.connect(str(store), read_only=True)
    try:
        assert not con.execute("SELECT 1 FROM subsets WHERE name = 'bad'").fetchone(), "no subset from an error"
    finally:
        con.close()


def test_global_top_k_ranks_all_sources_together(store):
    assert run_cli("subset", "--name", "global", "--top-k", "30", "--score", "label", "--global", "--db", str(store)) == 0
    con = duckdb.connect(str(store), read_only=True)
    try:
        picked = [r[0] for r in con.execute("SELECT score FROM subset_members WHERE subset = 'global' ORDER BY rank")
                  .fetchall()]
        best = [r[0] for r in con.execute("""SELECT s.score FROM record_fate f JOIN scores s USING (record_id)
                                             WHERE f.kept AND f.run_id = (SELECT run_id FROM latest_run)
                                             AND s.scorer = 'label' ORDER BY s.score DESC LIMIT 30""").fetchall()]
    finally:
        con.close()
    assert picked == best, "the 30 best of all sources"


def test_the_card_lists_every_license_that_applies_and_the_notice_names_an_unknown_one(tmp_path, capsys):
    """Records generated by an OpenAI model from Apache-2.0 data: their effective license is OpenAI-ToU, but the
    card's front matter (what a hub user reads) lists Apache-2.0 too; an unknown license is said as such."""
    from huggingface_hub import DatasetCard

    with open(ROOT_DATA / "alpaca_ja.jsonl", "rb") as f:  # the first 60 rows (a later one is planted bad UTF-8)
        lines = [f.readline().decode("utf-8") for _ in range(60)]
    url = "https://huggingface.co/datasets/someone/multialpaca-ja"
    manifest = tmp_path / "sources.yaml"
    text = "sources:\n"
    for i, (sid, license, extra) in enumerate([
            ("ma", "Apache-2.0", f"    url: {url}\n    generated_by: {{model: gpt-3.5-turbo, license: OpenAI-ToU}}\n"),
            ("ma-more", "Apache-2.0", f"    url: {url}\n"),  # the same dataset, in two sources
            ("unk", "unknown", "")]):
        (tmp_path / f"{sid}.jsonl").write_text("".join(lines[i * 20:(i + 1) * 20]), encoding="utf-8")
        text += (f"  - id: {sid}\n    path: {sid}.jsonl\n    format: jsonl\n    license: {license}\n    id_field: id\n"
                 f"    fields: {{instruction: instruction, input: input, output: output}}\n{extra}")
    manifest.write_text(text, encoding="utf-8")
    db = tmp_path / "store.duckdb"
    assert run_cli("run", "--sources", str(manifest), "--out", str(tmp_path / "out"), "--db", str(db),
                   "--workers", "1") == 0
    assert run_cli("subset", "--name", "ma-only", "--license-use", "commercial", "--out",
                   str(tmp_path / "ma.jsonl"), "--db", str(db)) == 0
    records = [json.loads(line) for line in (tmp_path / "ma.jsonl").read_text(encoding="utf-8").splitlines()]
    generated = [r for r in records if r["source_id"] == "ma"]
    assert generated and all((r["license"], r["source_license"], r["model_license"], r["generated_by"])
                             == ("OpenAI-ToU", "Apache-2.0", "OpenAI-ToU", "gpt-3.5-turbo") for r in generated)
    card = DatasetCard.load(tmp_path / "ma.README.md")
    assert card.data.license == ["apache-2.0", "other"] and card.data.license_name == "openai-tou"
    assert card.data.license_link == CAT.get("OpenAI-ToU").url
    assert card.data.source_datasets == ["someone/multialpaca-ja"], "one entry per dataset"
    assert ("Licenses that apply to the records: Apache-2.0 (data), OpenAI-ToU (terms of gpt-3.5-turbo, which "
            "generated records)") in card.text
    # every source: an unknown license is said as such, not as an empty link
    assert run_cli("subset", "--name", "all", "--out", str(tmp_path / "all.jsonl"), "--db", str(db)) == 0
    notice = (tmp_path / "all.NOTICE.md").read_text(encoding="utf-8")
    assert "<>" not in notice
    assert "- unk (no URL given) — license: Unknown or unresolved license (no license text: resolve the license " \
           "before redistributing)" in notice
    assert "- model terms OpenAI-ToU (of a model that generated records) restricts using its outputs" in notice
    assert "data license OpenAI-ToU" not in notice
    card = DatasetCard.load(tmp_path / "all.README.md")
    assert card.data.license == ["apache-2.0", "unknown", "other"] and card.data.license_name == "openai-tou"
