r"""The one answer of ``pyro-razor discover``: the direct test's count, and what the razor adds.

``discover`` runs two procedures on the same data. The direct estimate
(:mod:`~pyro_razor.discovery.direct`) decides how many quadratic quantities are conserved by a
stated test at level ``alpha`` (or says "undetermined" and gives the range the data allow). The
razor (:mod:`~pyro_razor.discovery.report`) learns a span of generators by the ELBO and applies
the **same tests** to that span. Two facts fix how they combine:

- the razor's tests run on a subspace of the direct estimate's feature library, so by Cauchy
  interlacing its count can never exceed the direct one on the same data, noise and level;
- a true law that the razor's span does not hold is still a law: it is conserved on the data,
  but symmetrising over it did not pay in the ELBO at this data size (or training did not reach
  it). That is the data/ELBO disagreement the output must state, never drop.

So the answer's **count is the direct test's** (status ``determined`` / ``approximate`` /
``undetermined`` and its range, unchanged), and the razor contributes ``confirmed``: how many of
those laws the nested ELBO comparison of :mod:`~pyro_razor.discovery.confirm` supports — learned
quantities that started at a conserved direct candidate (or at an undecided one where the count
is undetermined: those are switched off together, and a supported group counts each member),
stayed in the candidates' span, and whose switching off costs more than the comparison's bar (0
when the ELBO prefers the plain network overall). ``statement`` says it in one
line, including the disagreement when ``confirmed`` is below the count. The razor's own span test
(how exactly its learned quantities are conserved) is printed beside it and does not change the
count: on noise-free data a learned law is only as exact as training made it. The same rule applies
to every system.
"""

from __future__ import annotations

__all__ = ["combined_answer", "supported_laws"]


def supported_laws(quantities: list[dict], in_span_level: float) -> int:
    """How many tested quantities (``per_quantity`` rows of
    :func:`~pyro_razor.runs.discover.per_quantity_evidence`: ``start``, ``in_span`` or
    ``members_in_span``, ``decision``) started at a conserved direct candidate (or an
    undecided one, where the direct test is undetermined: those are tested as one group, and a
    supported group counts each of its members), are still at least ``in_span_level``
    parallel to the candidates' span, and were decided ``"supports"``."""
    return sum(sum(span >= in_span_level for span in q.get("members_in_span", [q["in_span"]]))
               for q in quantities
               if q["start"] in ("conserved", "undecided") and q["decision"] == "supports")


def _count_text(test: dict) -> str:
    """The direct test's count in words (status, count, range)."""
    low, high = test["range"]
    if test["status"] == "undetermined":
        return f"undetermined, between {low} and {high} conserved quadratic quantities"
    count = test["count"]
    text = "no conserved quadratic quantity" if count == 0 else (
        f"{count} conserved quadratic quantit{'y' if count == 1 else 'ies'}")
    if test["status"] == "approximate" and high > count:
        text += f", up to {high} within the drift tolerance"
    return text


def _razor_text(test: dict, confirmed: int, gain_nats: float) -> str:
    """What the razor adds to the direct count."""
    if test["status"] != "undetermined" and test["count"] == 0:
        return "nothing for the razor to confirm"
    if gain_nats <= 0:
        return (f"the ELBO prefers the plain network by {-gain_nats:.1f} nats, so the razor "
                "confirms none of them")
    if test["status"] == "undetermined":
        return (f"the razor's nested ELBO comparison supports symmetrising over {confirmed} "
                f"of the {test['range'][1]} candidates (the undecided ones tested together), "
                "which does not show that they are conserved: an approximate symmetry of the "
                "data pays as well; the data cannot decide the count")
    count = test["count"]
    if confirmed >= count:
        return (f"the razor confirms {'it' if count == 1 else f'all {count}'} (the nested ELBO "
                f"comparison supports symmetrising over {'it' if count == 1 else 'each'}; "
                f"the ELBO prefers the symmetrised model by {gain_nats:.1f} nats)")
    why = ("does not support symmetrising at this data size (conserved on the data, but "
           "symmetrising over them did not pay, or training moved off them)")
    if confirmed == 0:
        return f"the razor confirms none of them: the nested ELBO comparison {why}"
    return (f"the razor confirms {confirmed} of {count}: for the other {count - confirmed} the "
            f"nested ELBO comparison {why}")


def combined_answer(direct_test: dict, supported: int, gain_nats: float) -> dict:
    """The answer of the module docstring.

    Args:
        direct_test: the direct estimate's test record (``discovery.json``'s
            ``direct.evidence.direct``: ``status``, ``count``, ``range`` and
            ``settings["alpha"]``).
        supported: :func:`supported_laws` of the nested ELBO comparison's rows.
        gain_nats: the ELBO of the learned model minus vanilla's, in nats over the data
            (positive: symmetrising pays).

    Returns:
        ``{"status", "count" (None when undetermined), "range": [low, high], "confirmed",
        "statement"}``.
    """
    status = direct_test["status"]
    if status not in ("determined", "approximate", "undetermined"):
        raise ValueError(f"combined_answer: unknown direct status {status!r}")
    if supported < 0:
        raise ValueError(f"combined_answer: supported must be >= 0, got {supported}")
    confirmed = 0 if gain_nats <= 0 else supported
    confirmed = min(confirmed, direct_test["range"][1] if status == "undetermined"
                    else direct_test["count"])
    level = direct_test["settings"]["alpha"]
    statement = (f"{_count_text(direct_test)} (the direct test at level {level:g}); "
                 f"{_razor_text(direct_test, confirmed, gain_nats)}")
    return {"status": status, "count": None if status == "undetermined" else direct_test["count"],
            "range": list(direct_test["range"]), "confirmed": confirmed, "statement": statement}
