"""One unit per quantity, on every screen: scores in percent with one decimal, durations as h:mm:ss with the
share of the budget, counts as integers, money in dollars. Stored values stay raw (fractions, seconds)."""

MISSING = "—"
# metrics that are fractions of 1 (shown in percent); every other whole-number metric is a count
FRACTION_METRICS = {"accuracy", "stderr", "score", "win_rate", "pass_at_1"}


def percent(fraction: float | None, *, sign: bool = True) -> str:
    if fraction is None:
        return MISSING
    return f"{100 * fraction:.1f}" + ("%" if sign else "")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    total = round(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def budget_share(seconds: float | None, hours: float | None) -> str:
    """'1:02:03 (21% of 5 h)'."""
    if seconds is None:
        return MISSING
    if not hours:
        return duration(seconds)
    return f"{duration(seconds)} ({100 * seconds / (hours * 3600):.0f}% of {hours:g} h)"


def count(value: float | None) -> str:
    return MISSING if value is None else f"{round(value):,}"


def money(value: float | None) -> str:
    return MISSING if value is None else f"${value:,.2f}"


def metric(name: str, value: float | None) -> str:
    """A stored metric as it should read: fractions in percent, counts whole, anything else to 4 digits."""
    if value is None:
        return MISSING
    if name in FRACTION_METRICS or name.endswith(("accuracy", "_stderr")):
        return percent(value)
    if float(value).is_integer():
        return count(value)
    return f"{value:.4g}"
