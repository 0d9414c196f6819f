"""The any-of rule: the few positive hypotheses whose union marks a class, chosen on the training rows."""

import numpy as np
import pytest
import scipy.sparse as sp

from hsae_core.anyof import any_of_scores, best_marker, fit_any_of
from hsae_core.errors import DataError


def constructed():
    """60 rows, class = rows 0-29. A marks rows 0-14, B rows 15-29 (both exact halves of the class),
    C fires on every row, D marks rows 0-9 (inside A), E marks rows 30-59 (the rest)."""
    y = np.r_[np.ones(30), np.zeros(30)]
    rows = np.arange(60)
    cols = {
        "A": rows < 15,
        "B": (rows >= 15) & (rows < 30),
        "C": np.ones(60, dtype=bool),
        "D": rows < 10,
        "E": rows >= 30,
    }
    return np.column_stack(list(cols.values())).astype(float), y


def test_two_halves_of_the_class_make_the_rule_and_nothing_else_joins():
    presence, y = constructed()
    rule = fit_any_of(presence, y)
    assert sorted(rule.members) == [0, 1]  # A and B; C (everything) and D (inside A) add nothing
    assert rule.train == {"f1": 1.0, "precision": 1.0, "recall": 1.0, "present": 30}
    # The same from a sparse matrix, and the scores of a given rule recomputed
    assert fit_any_of(sp.csc_matrix(presence), y).members == rule.members
    assert any_of_scores(presence, y, [0]) == {"f1": 2 * 15 / 45, "precision": 1.0, "recall": 0.5, "present": 15}


def test_candidates_and_max_terms_limit_the_rule():
    presence, y = constructed()
    # Without B: A alone (F1 2/3); C ties with it but the first found is kept, and A + C gains nothing.
    # (Calling every row of this half-and-half table the class scores 2/3 too, so this is the search alone.)
    search = {"must_beat_every_row": False}
    assert fit_any_of(presence, y, candidates=[0, 2, 3, 4], **search).members == [0]
    assert fit_any_of(presence, y, candidates=np.array([False, True, False, False, False]), **search).members == [1]
    assert len(fit_any_of(presence, y, max_terms=1, **search).members) == 1
    # ... and as a rule it is none: it does no better than calling every row the class
    tie = fit_any_of(presence, y, candidates=[0, 2, 3, 4])
    assert tie.members == [] and tie.outdone_by_every_row
    # Nothing allowed, or nothing that helps: an empty rule with zero scores
    empty = fit_any_of(presence, y, candidates=[4])  # E never holds on the class
    assert empty.members == [] and empty.train["f1"] == 0.0 and not empty.outdone_by_every_row


def test_a_small_gain_is_not_enough_and_a_broad_first_pick_does_not_trap_the_search():
    presence, y = constructed()
    y[30] = 1  # one more class row, which only the new hypothesis F marks
    only_row_30 = np.zeros((60, 1))
    only_row_30[30] = 1
    presence = np.hstack([presence, only_row_30])
    # A plain greedy would start with C (F1 62/91 beats A's 30/46) and find nothing to add after it.
    rule = fit_any_of(presence, y)
    assert sorted(rule.members) == [0, 1, 5] and rule.train["f1"] == 1.0
    # F's one row raises F1 from 60/61 to 1: under a required gain of 0.05 it stays out
    assert sorted(fit_any_of(presence, y, min_gain=0.05).members) == [0, 1]


def test_bad_inputs_are_refused_in_one_line():
    presence, y = constructed()
    with pytest.raises(DataError, match="0/1 target"):
        fit_any_of(presence, y * 3)
    with pytest.raises(DataError, match="60 rows but the target has 59"):
        fit_any_of(presence, y[:-1])
    with pytest.raises(DataError, match="one entry per hypothesis"):
        fit_any_of(presence, y, candidates=np.array([True, False]))


def test_reported_training_scores_are_the_rules_own():
    """On random sparse presence the incremental counts agree with scoring the rule from scratch."""
    rng = np.random.default_rng(0)
    presence = sp.random(5000, 30, density=0.08, format="csc", random_state=1)
    presence.data[:] = 1.0
    y = (rng.random(5000) < 0.3).astype(float)
    y[presence[:, 3].toarray().ravel() > 0] = 1.0  # hypothesis 3 lies inside the class
    rule = fit_any_of(presence, y, must_beat_every_row=False)  # random presence: the search, not the bar
    assert 3 in rule.members and 1 <= len(rule.members) <= 5
    assert rule.train == pytest.approx(any_of_scores(presence, y, rule.members))


def test_best_marker_is_the_single_hypothesis_with_the_best_f1_and_must_beat_calling_every_row():
    presence, y = constructed()
    # A and B each mark half the class and C is every row: all at F1 2/3, which calling every row of this
    # half-and-half table the class also scores, so none of them marks it
    assert best_marker(presence, y) is None
    wide = np.zeros((60, 1))
    wide[:28] = wide[30:38] = 1  # 28 of the 30 class rows and 8 others: F1 56/66
    assert best_marker(np.hstack([presence, wide]), y) == 5
    assert best_marker(sp.csr_matrix(np.hstack([wide, presence, wide])), y) == 0  # a tie: the first
    with pytest.raises(DataError, match="0/1 target"):
        best_marker(presence, y * 3)


def test_the_rule_is_stated_in_one_line_and_so_is_its_absence():
    from hsae_core.report import any_of_sentence

    rule = {
        "latents": [7, 3],
        "hypotheses": ["mentions proofs", "cites a theorem"],
        "train": {"f1": 0.81},
        "holdout": {"f1": 0.8, "precision": 0.75, "recall": 0.857},
    }
    assert any_of_sentence({"any_of": rule}, "math") == (
        "math = any of 2 hypotheses: “mentions proofs” (#7), “cites a theorem” (#3). Holdout F1 0.800 "
        "(precision 0.750, recall 0.857); chosen on the training rows (F1 there 0.810)."
    )
    empty = {"latents": [], "hypotheses": [], "train": {"f1": 0.0}, "holdout": {"f1": 0.0}}
    assert any_of_sentence({"any_of": empty}, "y = good") == (
        "y = good: no hypothesis goes with it on the training rows, so it has no any-of rule."
    )
    assert any_of_sentence({"r2_cv": 0.4}, "stars") is None  # a continuous target has no rule


def test_calling_every_row_the_class_is_the_bar_each_rule_is_stated_against():
    from hsae_core.anyof import every_row_f1
    from hsae_core.report import any_of_sentence

    assert every_row_f1([1, 1, 0, 0, 0, 0]) == 0.5  # share 1/3: 2 * 2 / (6 + 2)
    assert every_row_f1(np.ones(4)) == 1.0
    rule = {
        "latents": [7],
        "hypotheses": ["mentions proofs"],
        "train": {"f1": 0.81},
        "holdout": {"f1": 0.8, "precision": 0.75, "recall": 0.857, "every_row_f1": 0.5},
    }
    assert any_of_sentence({"any_of": rule}, "math") == (
        "math = any of 1 hypothesis: “mentions proofs” (#7). Holdout F1 0.800 (precision 0.750, recall 0.857; "
        "0.500 if every text were called math); chosen on the training rows (F1 there 0.810)."
    )
    # a rule the holdout scores at or below that bar is said not to hold up (Upworthy: 0.347 against 0.349)
    rule["holdout"].update(f1=0.347, every_row_f1=0.349)
    assert any_of_sentence({"any_of": rule}, "math").endswith(
        "(F1 there 0.810). On the holdout it does no better than calling every text math: the rule does not hold up."
    )


def test_a_two_valued_target_states_a_rule_for_each_value_and_a_class_only_its_own():
    from hsae_core.report import any_of_lines, rule_column_names

    def rule(latent, label):
        return {"latents": [latent], "hypotheses": [label], "train": {"f1": 0.7}, "holdout": {"f1": 0.6}}

    summary = {
        "target": {"column": "decision", "kind": "binary", "classes": ["reject", "accept"]},
        "metrics": {"overall": {"any_of": rule(4, "a new benchmark"), "any_of_other": rule(9, "no experiments")}},
    }
    lines = any_of_lines(summary, "overall")
    assert [line.split(" = any of")[0] for line in lines] == ["decision = accept", "decision = reject"]
    assert "“no experiments” (#9)" in lines[1]
    multiclass = {
        "target": {"column": "field", "kind": "multiclass", "classes": ["cs", "math", "physics"]},
        "metrics": {"math": {"any_of": rule(2, "proofs")}},
    }
    assert [line.split(" = any of")[0] for line in any_of_lines(multiclass, "math")] == ["math"]
    stars = {"target": {"column": "stars", "kind": "continuous"}, "metrics": {"overall": {"r2_cv": 0.4}}}
    assert any_of_lines(stars, "overall") == []
    # A table of the two-valued run names each rule column by its value; other runs keep the plain names
    assert rule_column_names(summary) == {"any_of": "in the rule for accept", "any_of_other": "in the rule for reject"}
    assert rule_column_names(multiclass) == {} and rule_column_names(stars) == {}


def test_no_rule_where_calling_every_row_the_class_does_as_well():
    from hsae_core.report import any_of_sentence

    y = np.array([1] * 8 + [0] * 2)  # a majority class: calling every row it scores F1 16/18
    presence = np.zeros((10, 2))
    presence[:3, 0] = 1  # three of the class: F1 6/11
    presence[7:, 1] = 1  # one of the class and the two others; the best rule, both, F1 8/14 < 16/18
    rule = fit_any_of(presence, y)
    assert rule.members == [] and rule.outdone_by_every_row
    y = 1 - y  # the minority value (rows 8, 9): hypothesis 1 marks it at F1 4/5, above calling every row (4/12)
    kept = fit_any_of(presence, y)
    assert kept.members == [1] and not kept.outdone_by_every_row
    metrics = {"any_of": {"latents": [], "train": {"every_row_f1": 16 / 18}, "outdone_by_every_row": True}}
    assert any_of_sentence(metrics, "y = good") == (
        "y = good: no rule of its hypotheses marks it better than calling every text y = good (F1 0.889 on the "
        "training rows), so it has no any-of rule."
    )
