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
