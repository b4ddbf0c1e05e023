"""pyro_razor.discovery.answer: the direct test's count with what the razor confirms."""

from __future__ import annotations

import pytest

from pyro_razor.discovery.answer import combined_answer, supported_laws


def record(status, count, low, high, alpha=0.05):
    return {"status": status, "count": count, "range": [low, high], "settings": {"alpha": alpha}}


def test_a_confirmed_count_is_the_direct_one_and_says_so():
    a = combined_answer(record("determined", 2, 2, 2), supported=2, gain_nats=310.0)
    assert (a["status"], a["count"], a["range"], a["confirmed"]) == ("determined", 2, [2, 2], 2)
    assert a["statement"].startswith("2 conserved quadratic quantities (the direct test at "
                                     "level 0.05); the razor confirms all 2")
    assert "310.0 nats" in a["statement"]


def test_a_law_the_razor_misses_is_kept_and_the_disagreement_stated():
    """The direct test shows 2; the nested ELBO comparison supports symmetrising over 1."""
    a = combined_answer(record("determined", 2, 2, 2), supported=1, gain_nats=50.0)
    assert a["count"] == 2 and a["confirmed"] == 1
    assert "the razor confirms 1 of 2: for the other 1 the nested ELBO comparison does not " \
        "support" in a["statement"]
    none = combined_answer(record("determined", 1, 1, 1), supported=0, gain_nats=50.0)
    assert none["count"] == 1 and "the razor confirms none of them: the nested ELBO" in \
        none["statement"]


def test_an_elbo_that_prefers_vanilla_confirms_nothing():
    a = combined_answer(record("determined", 2, 2, 2), supported=2, gain_nats=-12.5)
    assert a["count"] == 2 and a["confirmed"] == 0
    assert "prefers the plain network by 12.5 nats" in a["statement"]


def test_undetermined_stays_undetermined_whatever_the_razor_says():
    a = combined_answer(record("undetermined", None, 0, 3, alpha=0.01), supported=1,
                        gain_nats=80.0)
    assert a["count"] is None and a["range"] == [0, 3] and a["confirmed"] == 1
    assert a["statement"].startswith("undetermined, between 0 and 3 conserved quadratic "
                                     "quantities (the direct test at level 0.01)")
    assert ("supports symmetrising over 1 of the 3 candidates (the undecided ones tested "
            "together), which does not show that they are conserved") in a["statement"]
    capped = combined_answer(record("undetermined", None, 0, 1), supported=3, gain_nats=80.0)
    assert capped["confirmed"] == 1  # never above the range's upper end


def test_no_law_and_approximate_counts_read_right():
    none = combined_answer(record("determined", 0, 0, 0), supported=0, gain_nats=225.0)
    assert none["statement"].startswith("no conserved quadratic quantity")
    assert "nothing for the razor to confirm" in none["statement"]
    vanilla = combined_answer(record("determined", 0, 0, 0), supported=0, gain_nats=-4.0)
    assert vanilla["statement"].endswith("; nothing for the razor to confirm")
    approx = combined_answer(record("approximate", 2, 2, 4), supported=3, gain_nats=9.0)
    assert approx["confirmed"] == 2  # never more than the count
    assert "2 conserved quadratic quantities, up to 4 within the drift tolerance" in \
        approx["statement"]


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match="unknown direct status"):
        combined_answer(record("maybe", 1, 1, 1), 1, 1.0)
    with pytest.raises(ValueError, match="supported must be >= 0"):
        combined_answer(record("determined", 1, 1, 1), -1, 1.0)


def test_supported_laws_counts_supported_candidates_still_in_their_span():
    rows = [{"start": "conserved", "in_span": 0.99, "decision": "supports"},
            {"start": "conserved", "in_span": 0.90, "decision": "supports"},  # moved off
            {"start": "conserved", "in_span": 1.00, "decision": "indifferent"},
            {"start": "approximate", "in_span": 1.00, "decision": "supports"},  # not a law
            {"start": "spare in span", "in_span": 0.98, "decision": "supports"},
            {"start": "undecided", "in_span": 0.97, "decision": "supports"}]
    assert supported_laws(rows, 0.95) == 2
    assert supported_laws(rows, 0.85) == 3
    assert supported_laws([], 0.95) == 0


def test_a_supported_group_of_undecided_candidates_counts_its_members_in_span():
    """The undecided candidates are switched off together (one row, ``members_in_span``): a
    supported group counts each member still in the candidates' span, a rejected one none."""
    group = {"start": "undecided", "in_span": 0.54, "members_in_span": [0.98, 0.54, 0.96],
             "decision": "supports"}
    assert supported_laws([group], 0.95) == 2
    assert supported_laws([group], 0.5) == 3
    assert supported_laws([{**group, "decision": "indifferent"}], 0.5) == 0
