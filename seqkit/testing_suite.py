"""Which conformance checks run for a plugin, and with which counterparts.

``seqkit plugins check NAME`` checks NAME's components alone, and pairs NAME's encoders and decoders
with counterparts that are healthy: the built-in ones, and those of other plugins whose own checks
(alone) pass. A broken *other* plugin is skipped and said so ("skipped 4 pairs with broken:leaky
(its own checks fail: encoder_padding_invariance)"), so it cannot fail NAME's check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from seqkit.plugins import CORE_DISTRIBUTION, PluginManager, Registration
from seqkit.testing import (
    DECODER_CHECKS,
    ENCODER_CHECKS,
    PAIR_CHECKS,
    Check,
    Outcome,
    round_trip,
    run_check,
)
from seqkit.testing_backends import BACKEND_CHECKS
from seqkit.testing_gradients import every_parameter_gets_a_gradient
from seqkit.testing_tasks import TASK_CHECKS

GRADIENTS = every_parameter_gets_a_gradient.__name__


@dataclass
class Report:
    """What ``check_plugin`` ran (``outcomes``) and what it left out, one line each (``skipped``)."""

    outcomes: list[Outcome]
    skipped: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("passed", "failed", "warning", "unsupported"), 0)
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts


def _label(manager: PluginManager, reg: Registration) -> str:
    """plugin:name where two plugins register the name, else the name."""
    return reg.qualified_name if reg.qualified_name in manager.names(reg.kind) else reg.name


def solo_checks(manager: PluginManager, reg: Registration) -> Iterator[Check]:
    """The checks of one component alone (no counterpart)."""
    name = f"{reg.kind} {_label(manager, reg)}"
    if reg.kind == "encoder":
        for check in ENCODER_CHECKS:
            yield Check(check.__name__, name, lambda c=check: c(reg))
        yield Check(GRADIENTS, f"{name} (classifier)",
                    lambda: every_parameter_gets_a_gradient("classifier", reg, None))
    elif reg.kind == "decoder":
        yield Check("round_trip", name, lambda: round_trip(reg))
        for check in DECODER_CHECKS:
            yield Check(check.__name__, f"{name} (language model)", lambda c=check: c(reg, None))
        yield Check(GRADIENTS, f"{name} (language model)",
                    lambda: every_parameter_gets_a_gradient("language_model", None, reg))
    elif reg.kind == "task":
        for check in TASK_CHECKS:
            yield Check(check.__name__, name, lambda c=check: c(reg))
    elif reg.kind == "backend":
        for check in BACKEND_CHECKS:
            yield Check(check.__name__, name, lambda c=check: c(reg))


def pair_checks(manager: PluginManager, enc: Registration, dec: Registration) -> Iterator[Check]:
    subject = f"encoder {_label(manager, enc)} + decoder {_label(manager, dec)}"
    for check in PAIR_CHECKS:
        yield Check(check.__name__, subject, lambda c=check: c(dec, enc))
    yield Check(GRADIENTS, f"{subject} (seq2seq)",
                lambda: every_parameter_gets_a_gradient("seq2seq", enc, dec))


def conformance_checks(manager: PluginManager, plugin: str | None = None,
                       counterparts: list[Registration] | None = None) -> Iterator[Check]:
    """Every check for the components of ``plugin`` (all plugins when None), each encoder and
    decoder paired with every registered counterpart, or only with those in ``counterparts``."""

    def mine(reg: Registration) -> bool:
        return plugin is None or reg.plugin == plugin

    for kind in ("encoder", "decoder", "task", "backend"):
        for reg in filter(mine, manager.registrations(kind)):
            yield from solo_checks(manager, reg)
    allowed = None if counterparts is None else {id(reg) for reg in counterparts}
    for enc, dec in itertools.product(manager.registrations("encoder"), manager.registrations("decoder")):
        if not (mine(enc) or mine(dec)):
            continue
        other = dec if mine(enc) else enc
        if allowed is None or mine(other) or id(other) in allowed:
            yield from pair_checks(manager, enc, dec)


def healthy_counterparts(manager: PluginManager, plugin: str,
                         run: Callable[[Check], Outcome] = run_check) -> tuple[list[Registration], list[str]]:
    """The encoders and decoders of other plugins that ``plugin``'s components may be paired with:
    the built-in ones, and third-party ones whose own checks pass. Returns them and one line for
    each left out, with the number of pairs skipped."""
    healthy, skipped = [], []
    for kind, other_kind in (("encoder", "decoder"), ("decoder", "encoder")):
        partners = [r for r in manager.registrations(other_kind) if r.plugin == plugin]
        for reg in manager.registrations(kind):
            if reg.plugin == plugin:
                continue
            if reg.distribution == CORE_DISTRIBUTION or not partners:
                healthy.append(reg)
                continue
            outcomes = [run(check) for check in solo_checks(manager, reg)]
            failed = sorted({o.check.name for o in outcomes if o.status == "failed"})
            if failed:
                pairs = len(partners)
                skipped.append(f"skipped {pairs} pair{'s' if pairs != 1 else ''} with "
                               f"{reg.qualified_name} (its own checks fail: {', '.join(failed)})")
            else:
                healthy.append(reg)
    return healthy, skipped


def plan(manager: PluginManager, plugin: str | None = None) -> tuple[list[Check], list[str]]:
    """The checks ``check_plugin`` runs for ``plugin`` (every plugin when None), and what it leaves
    out, one line each. Naming a plugin runs the other plugins' own checks here, to pick the healthy
    counterparts."""
    skipped: list[str] = []
    counterparts = None
    if plugin is not None:
        counterparts, skipped = healthy_counterparts(manager, plugin)
    return list(conformance_checks(manager, plugin, counterparts)), skipped


def check_plugin(manager: PluginManager, plugin: str | None = None) -> Report:
    """Run the conformance suite for ``plugin`` (every plugin when None): its components alone and
    paired with healthy counterparts only."""
    checks, skipped = plan(manager, plugin)
    return Report([run_check(check) for check in checks], skipped)


__all__ = ["Report", "check_plugin", "conformance_checks", "healthy_counterparts", "pair_checks", "plan",
           "solo_checks"]
