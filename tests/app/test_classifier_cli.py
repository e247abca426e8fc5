"""`jcurate classifier score --model ID` on a real store: a classifier it holds scores the run, one it does not
hold is refused naming those it holds."""

from __future__ import annotations

import shutil

from store.query import run_query
from tests.conftest import run_cli


def test_classifier_score_names_the_classifiers_when_the_model_is_not_held(default_run, tmp_path, capsys):
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    (held,), = run_query(db, "SELECT model_id FROM classifier_models")[1]
    capsys.readouterr()
    assert run_cli("classifier", "score", "--model", "clf-typo", "--db", str(db)) == 2
    assert capsys.readouterr().err == (f"jcurate: error: no classifier 'clf-typo' in {db}: its classifiers, latest "
                                       f"first: {held}\n")
    assert run_cli("classifier", "score", "--model", held, "--db", str(db)) == 0
    assert f"classifier {held} scored 950 kept records" in capsys.readouterr().out


def test_classifier_train_with_a_misspelt_label_scorer_names_the_scorers_the_store_holds(default_run, tmp_path, capsys):
    """`classifier train --labels jduge`: "only 0 records carry 'jduge' scores" alone left the user guessing; and the
    message named scoring.min_labels, a run-config key this command does not read."""
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    scorers = [r[0] for r in run_query(db, "SELECT DISTINCT scorer FROM scores ORDER BY 1")[1]]
    capsys.readouterr()
    assert run_cli("classifier", "train", "--labels", "jduge", "--db", str(db), "--model-dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"only 0 records carry 'jduge' scores (the store holds scores of: {', '.join(scorers)})" in err
    assert "label" in scorers and "scoring.min_labels" not in err
