"""The plain-text answer of ``pyro-razor discover`` (``discovery.txt`` and what it prints).

:func:`discovery_text` writes a ``discovery.json`` record as lines: the direct estimate (its
verdict, how coefficients are written, each quantity with its test statistics, then the Lie
algebra of quadratic laws or the functionally independent count of general ones), then the
razor's answer (ELBOs, the quantities it found, their algebra, the per-quantity evidence and
its verdict) and every warning. :func:`settings_line` and :func:`estimate_line` are the lines
``discover`` prints before training (its chosen settings, its expected time).
"""

from __future__ import annotations

from pyro_razor.discovery.confirm import decision_bar
from pyro_razor.runs.benchmark import seconds_per_step

__all__ = ["discovery_text", "estimate_line", "settings_line"]


def _decimals(precision: int) -> str:
    """How :func:`~pyro_razor.discovery.formulas.format_quantity` writes coefficients."""
    smallest = 10.0 ** -min(precision, 2)
    return (f"{precision} decimals, those below {smallest:g} in scientific notation with "
            f"{precision} decimals in the mantissa")


def _direct_lines(direct: dict) -> list[str]:
    lines = [f"{direct['summary']} [{1000 * direct['seconds']:.0f} ms]"]
    general = "independent" in direct["evidence"]
    if direct["quantities"]:
        lines.append(_coefficients_line(direct["evidence"], general))
    for q in direct["quantities"]:
        dependent = (f"; a function of {', '.join(q['function_of'])}"
                     if q.get("function_of") else "")
        lines.append(f"  [{q['kind']}] {q['formula']}    (ratio {q['ratio']:.3g}, drift "
                     f"{q['drift']:.2g}{dependent})")
    if general:
        e = direct["evidence"]
        lines.append(f"  functionally independent: {e['independent']} of the {e['span']} "
                     "conserved (rank of their gradients on the data); no Lie algebra is named: "
                     "the flows of non-quadratic laws are not linear")
    elif any(q["kind"] == "conserved" for q in direct["quantities"]):
        a = direct["algebra"]
        lines.append(f"  Lie algebra of the conserved ones: {a['name']}, dimension "
                     f"{a['dimension']}")
    return lines + [f"warning: {w}" for w in direct["warnings"]]


def _coefficients_line(evidence: dict, general: bool) -> str:
    """How the direct answer's formulas are written."""
    if general:
        return (f"  coefficients to {_decimals(evidence['precision'])}, each law scaled so that "
                "one of its simplest terms is 1 (sparse: terms whose removal keeps it conserved "
                "dropped); "
                "ratio = within-trajectory scatter / scatter the noise alone gives; drift = "
                "relative drift")
    return (f"  coefficients to {_decimals(evidence['precision'])}, relative to the largest "
            "term's typical size on the data, terms below "
            f"{evidence['noise_floor']:.2g} of it (twice the noise) dropped; ratio = "
            "within-trajectory scatter / scatter the noise alone gives; drift = relative drift")


def _agreement_lines(agreement: dict | None) -> list[str]:
    """The razor's span against the direct estimate's (:mod:`~pyro_razor.discovery.agreement`)."""
    if not agreement or agreement["largest_deg"] is None:
        return []
    angles = ", ".join(f"{a:.1f}°" for a in agreement["angles_deg"])
    counts = (f"the razor's {agreement['razor']} and the direct estimate's {agreement['direct']} "
              "conserved quantities")
    return [f"razor vs direct estimate: {counts}, principal angles between their spans "
            f"{angles} (0° = the same span; formulas differ by a change of basis only)"]


def _span_test_lines(test: dict | None, moved: int) -> list[str]:
    """The calibrated count on the razor's learned span
    (:mod:`~pyro_razor.discovery.span_test`)."""
    if test is None:
        return []
    answer = (f"{test['count']}" if test["status"] == "determined" else
              f"{test['count']} conserved, up to {test['range'][1]} within the drift tolerance"
              if test["status"] == "approximate" else
              f"undetermined, between {test['range'][0]} and {test['range'][1]}")
    return [f"razor span test (the direct estimate's tests at level {test['alpha']:g}, drift "
            f"tolerance {test['tolerance']:.0%}, on the {moved} learned direction(s) that move "
            f"the data): {answer}"]


def _per_quantity_lines(evidence: dict | None) -> list[str]:
    if not evidence or not evidence["quantities"]:
        return []
    bar = decision_bar(evidence["noise_nats"], evidence["threshold"])
    particles = evidence.get("refit_particles")  # absent in records before the eighth session
    rate = evidence.get("refit_lr")
    how = "" if particles is None else f" at P = {particles}"
    how += "" if rate is None else f", lr {rate:g}"
    lines = [f"razor evidence per quantity (switched off, weights refitted "
             f"{evidence['refit_epochs']} epochs{how}; run-to-run noise "
             f"{evidence['noise_nats']:.1f} nats; decides beyond ±{bar:.1f} nats):"]
    for q in evidence["quantities"]:
        lines.append(f"  {_quantity_label(q)}: {q['delta_nats']:+.1f} nats, "
                     f"{q['decision']}: {q['statement']}")
    return lines


def _quantity_label(q: dict) -> str:
    """``Q3 (started at a conserved direct candidate; 0.98 of it now in the candidates'
    span)``, or for a group switched off together ``Q4, Q5, Q6 (the 3 undecided direct
    candidates, switched off together; ...)``."""
    members = q.get("members", [q["index"]])
    if len(members) > 1:
        spans = q["members_in_span"]
        return (f"{', '.join(f'Q{k + 1}' for k in members)} (the {len(members)} {q['start']} "
                f"direct candidates, switched off together; {min(spans):.2f} to "
                f"{max(spans):.2f} of each now in the candidates' span)")
    start = ("a spare quantity" if q["start"].startswith("spare") else
             f"started at a {q['start']} direct candidate")
    return f"Q{q['index'] + 1} ({start}; {q['in_span']:.2f} of it now in the candidates' span)"


def discovery_text(record: dict) -> str:
    """The plain-text answer of ``discovery.json``: the direct estimate, then the razor's."""
    lines = _direct_lines(record["direct"]) if record.get("direct") else []
    if not record.get("razor"):
        return "\n".join(lines)
    elbo = record["evidence"]["elbo"]
    lines.append(
        f"razor: -ELBO/N: vanilla {elbo['vanilla_neg_elbo_per_n']:.3f}, learned "
        f"{elbo['learned_neg_elbo_per_n']:.3f} (learned - vanilla: "
        f"{elbo['learned_minus_vanilla_nats']:+.1f} nats over {elbo['n_transitions']} "
        "transitions)")
    precision = record["evidence"]["thresholds"]["precision"]
    lines += _span_test_lines(record["evidence"].get("span_test"),
                              len(record["evidence"]["candidates"]["displacements"]))
    if record["n_found"]:
        lines.append(f"{record['n_found']} quantities in the learned span (coefficients to "
                     f"{_decimals(precision)}, relative to the largest term):")
        for q in record["quantities"]:
            lines.append(f"  [{q.get('kind', 'conserved')}] {q['formula']}    (spread along / "
                         f"across trajectories {q['ratio']:.2g})")
        a = record["algebra"]
        lines.append(f"Lie algebra: {a['name']}, dimension {a['dimension']}, closure error "
                     f"{a['closure_error']:.2g}")
    lines += _agreement_lines(record["evidence"].get("agreement"))
    lines += _per_quantity_lines(record["evidence"].get("per_quantity"))
    lines.append(f"razor verdict: {record['verdict']}")
    if record["evidence"].get("answer"):
        lines.append(f"answer: {record['evidence']['answer']['statement']}")
    lines += [f"warning: {w}" for w in record["warnings"]]
    return "\n".join(lines)


def estimate_line(config, confirm_epochs: int) -> str:
    """The razor stage's expected wall time, from 5 timed SVI steps of each model
    (:func:`~pyro_razor.runs.benchmark.seconds_per_step`): training ``epochs x
    steps_per_epoch`` steps of vanilla and learned, then at most ``K + 2`` refits of
    ``confirm_epochs`` epochs of the learned model (:mod:`~pyro_razor.discovery.confirm`)."""
    per_step = seconds_per_step(config, ("vanilla", "learned"))
    tc = config.train
    steps = tc.epochs * tc.steps_per_epoch(config.data.shapes()["train"][0])
    vanilla, learned = steps * per_step["vanilla"], steps * per_step["learned"]
    refits = ((config.model.num_quantities + 2) * confirm_epochs / max(tc.epochs, 1)
              * learned)
    return (f"expected time: training ~{vanilla:.0f} s (vanilla) + ~{learned:.0f} s (learned, "
            f"{per_step['learned'] / per_step['vanilla']:.1f}x slower per step), then up to "
            f"~{refits:.0f} s of per-quantity refits, plus evaluation (measured from 5 steps "
            "of each model)")


def settings_line(config) -> str:
    """The settings ``discover`` chose, one line (data shape, K, network, samples, steps)."""
    mc, tc, shapes = config.model, config.train, config.data.shapes()
    (B, n), M = shapes["train"], shapes["phase_dim"]
    return (f"data {config.data.source}: {B} training trajectories x {n} points, M = {M}, "
            f"dt = {config.data.dt:g}, N = {B * (n - 1)} transitions; chosen settings: "
            f"K = {mc.num_quantities}, MLP {M}-{'-'.join(map(str, mc.hidden))}-1, "
            f"S = {mc.tau_samples}, P = {tc.num_particles}, {mc.integrator_steps} "
            f"{mc.integrator} steps per dt, {tc.epochs} epochs"
            f"{'' if tc.batch_size is None else f' of batches of {tc.batch_size}'}")
