"""An agreement as a partner reads it (``smemet agreements show``): the
terms in words, with node names as the partner sees them (aliases, when the
agreement defines them) -- the printout can be handed over as it is."""

from __future__ import annotations

from fnmatch import fnmatchcase

from .config import Agreement, duration_text, utc


def partner_patterns(agreement: Agreement, patterns: tuple[str, ...]) -> list[str]:
    """``node/channel`` patterns with the node part as the partner sees it:
    with aliases, one pattern per aliased node the node part matches."""
    if not agreement.pseudonyms:
        return list(patterns)
    out = []
    for pattern in patterns:
        node_part, _, channel_part = pattern.partition("/")
        for node, alias in agreement.pseudonyms:
            if fnmatchcase(node, node_part):
                out.append(f"{alias}/{channel_part}")
    return list(dict.fromkeys(out))


def resolution_text(agreement: Agreement) -> str:
    r = agreement.resolution
    if r.raw:
        return "raw (every measurement as taken)"
    return (f"aggregates over {duration_text(r.period)} periods: {', '.join(r.aggregates)} "
            f"(periods aligned to multiples of {duration_text(r.period)} since 1970-01-01T00:00:00Z; "
            f"channel names get .{'/.'.join(r.aggregates)}; time = the period's start)")


def validity_text(agreement: Agreement) -> str:
    start, end = agreement.valid_from, agreement.valid_until
    if start is None and end is None:
        return "open-ended"
    return f"measurements taken from {utc(start) if start is not None else 'any time'}" + (
        f" until {utc(end)} (exclusive)" if end is not None else " on")


def fields_text(agreement: Agreement) -> str:
    shared = ["values, times, quality"]
    names = {"unit": "units", "reason": "quality reasons", "status": "node diagnostics (status messages)"}
    shared += [names[f] for f in agreement.fields]
    withheld = [names[f] for f in names if f not in agreement.fields]
    return "; ".join(shared) + (f" -- not shared: {', '.join(withheld)}" if withheld else "")


def describe(agreement: Agreement, *, route: str, destination: str, topic_prefix: str, fmt: str, now: float,
             history=(), internal: bool = False) -> list[str]:
    """The lines of ``smemet agreements show``."""
    in_force, state = agreement.state(now)
    include = list(agreement.include) if internal else partner_patterns(agreement, agreement.include)
    exclude = list(agreement.exclude) if internal else partner_patterns(agreement, agreement.exclude)
    lines = [
        f"Agreement {agreement.id}, version {agreement.version} -- {state}",
        f"  route:       {route}: {destination}, topics under {topic_prefix}/",
        "  parties:     " + "; ".join(f"{p.name} ({p.role})" for p in agreement.parties),
        f"  purpose:     {agreement.purpose}",
        "  channels:    " + (", ".join(include) or "none"),
    ]
    if exclude:
        lines.append("  except:      " + ", ".join(exclude))
    if agreement.pseudonyms:
        if internal:
            lines.append("  pseudonyms:  " + ", ".join(f"{node} -> {alias}" for node, alias in agreement.pseudonyms))
        else:
            lines.append("  node names:  aliases only: " + ", ".join(alias for _, alias in agreement.pseudonyms))
    lines += [
        f"  resolution:  {resolution_text(agreement)}",
        "  delay:       " + (f"{duration_text(agreement.delay)}: a measurement is delivered once it is at least "
                             "that old" if agreement.delay else "none"),
        f"  validity:    {validity_text(agreement)}",
        f"  fields:      {fields_text(agreement)}",
        f"  delivery:    {fmt}, MQTT QoS 1; every message carries agreement, agreement_version, link_seq and "
        "link_prev; signed checkpoints on <prefix>/checkpoint (docs/integrator.md)",
    ]
    if history:
        lines.append("  history:     " + "; ".join(
            f"{h.agreement} version {h.version} since {utc(h.since)}" for h in history))
    if not in_force:
        lines.append("  NOTHING IS DELIVERED while the agreement is not in force")
    return lines
