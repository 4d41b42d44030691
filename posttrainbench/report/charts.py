"""The report's charts, drawn with matplotlib into SVG files. A missing score is written as 'missing', never
drawn as a zero-length bar."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from posttrainbench.scoring.schema import Entry, Leaderboard, Stat  # noqa: E402

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
PALETTE = ["#2f6fde", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#0c8599", "#f08c00", "#5c7cfa", "#a61e4d",
           "#5f3dc4", "#087f5b", "#d6336c"]
BASELINE_COLORS = {"instruct": "#495057", "base-zeroshot": "#adb5bd", "base-fewshot": "#ced4da",
                   "reference": "#868e96"}

plt.rcParams.update({
    "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9, "axes.edgecolor": GRID,
    "axes.labelcolor": INK, "xtick.color": MUTED, "ytick.color": INK, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.color": GRID, "axes.axisbelow": True,
})


def colors(lb: Leaderboard) -> dict[str, str]:
    """One color per entry, the same in every chart."""
    agents = [e for e in lb.entries if e.kind == "agent"]
    out = {e.key: PALETTE[i % len(PALETTE)] for i, e in enumerate(agents)}
    for e in lb.entries:
        if e.kind != "agent":
            out[e.key] = BASELINE_COLORS.get(e.agent, "#adb5bd")
    return out


def draw_all(lb: Leaderboard, out_dir: Path, titles: dict[str, str]) -> dict[str, str]:
    """Writes every chart; returns name -> file path relative to out_dir's parent (the site root)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = colors(lb)
    charts = {"average": _bars(lb, palette, lambda e: e.average, "Weighted average (published weights)",
                               out_dir / "average.svg", width=7.2)}
    for bench in lb.benchmarks:
        charts[f"benchmark:{bench}"] = _bars(lb, palette, lambda e, b=bench: e.benchmarks[b], titles.get(bench, bench),
                                             out_dir / f"benchmark-{_safe(bench)}.svg", width=4.4)
    charts["time"] = _time_used(lb, palette, out_dir / "time-used.svg")
    charts["cost"] = _cost_scatter(lb, palette, out_dir / "cost-vs-score.svg")
    return {k: f"{out_dir.name}/{Path(v).name}" for k, v in charts.items()}


def _bars(lb: Leaderboard, palette, stat_of, title: str, path: Path, width: float) -> Path:
    entries = lb.entries
    fig, ax = plt.subplots(figsize=(width, 0.3 * max(len(entries), 2) + 0.9))
    top = max([_upper(stat_of(e)) for e in entries] + [0.05])
    if not entries:
        _empty(ax, "no runs yet")
    for y, e in enumerate(entries):
        stat = stat_of(e)
        if stat.value is None:
            ax.text(0.005 * top, y, "missing", va="center", ha="left", color=MUTED, style="italic")
            continue
        err = _error(stat)
        # a value over an incomplete table is drawn faded and starred
        ax.barh(y, 100 * stat.value, color=palette[e.key], height=0.62, alpha=1.0 if stat.complete else 0.4,
                xerr=err, error_kw={"ecolor": INK, "elinewidth": 0.9, "capsize": 2.5})
        ax.text(100 * _upper(stat) + 0.02 * 100 * top, y, f"{100 * stat.value:.1f}" + ("" if stat.complete else "*"),
                va="center", ha="left", color=INK)
    ax.set_yticks(range(len(entries)), [_short(e) for e in entries])
    ax.invert_yaxis()
    ax.set_xlim(0, 100 * top * 1.15)
    ax.set_xlabel("score (%)")
    ax.grid(axis="y", visible=False)
    ax.set_title(title, loc="left", color=INK, fontsize=10, fontweight="bold")
    return _save(fig, path)


def _time_used(lb: Leaderboard, palette, path: Path) -> Path:
    entries = [e for e in lb.entries if e.kind == "agent"]
    fig, ax = plt.subplots(figsize=(6.2, 0.36 * max(len(entries), 2) + 0.9))
    timed = [e for e in entries if e.time_used is not None]
    if not timed:
        _empty(ax, "no agent run recorded its time used")
    for y, e in enumerate(entries):
        if e.time_used is None:
            ax.text(1, y, "not recorded", va="center", color=MUTED, style="italic")
            continue
        low, high = e.time_used - e.time_used_min, e.time_used_max - e.time_used
        ax.barh(y, 100 * e.time_used, color=palette[e.key], height=0.62,
                xerr=[[100 * low], [100 * high]], error_kw={"ecolor": INK, "elinewidth": 0.9, "capsize": 2.5})
        ax.text(100 * e.time_used_max + 1.5, y, f"{100 * e.time_used:.0f}%", va="center", color=INK)
    if entries:
        ax.set_yticks(range(len(entries)), [_short(e) for e in entries])
        ax.invert_yaxis()
    ax.axvline(100, color=MUTED, linestyle="--", linewidth=0.9)
    ax.set_xlim(0, 115)
    ax.set_xlabel("time used (% of budget; bar = mean, whiskers = min–max)")
    ax.grid(axis="y", visible=False)
    ax.set_title("Time used", loc="left", color=INK, fontsize=10, fontweight="bold")
    return _save(fig, path)


def _cost_scatter(lb: Leaderboard, palette, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    points = [e for e in lb.entries if e.kind == "agent" and e.cost_per_run is not None
              and e.average.value is not None]
    if not points:
        _empty(ax, "no agent run recorded its API cost")
    for e in points:
        ax.scatter(e.cost_per_run, 100 * e.average.value, s=46, color=palette[e.key], zorder=3,
                   marker="o" if e.average.complete else "D")
        ax.annotate(_short(e), (e.cost_per_run, 100 * e.average.value), textcoords="offset points",
                    xytext=(6, 4), color=INK, fontsize=8)
    for e in lb.entries:
        if e.kind == "baseline" and e.agent in ("base-zeroshot", "instruct") and e.average.value is not None:
            ax.axhline(100 * e.average.value, color=palette[e.key], linestyle="--", linewidth=0.9)
            ax.text(1.0, 100 * e.average.value, f" {_short(e)}", transform=ax.get_yaxis_transform(),
                    va="bottom", ha="right", color=MUTED, fontsize=8)
    costs = [e.cost_per_run for e in points]
    if costs and max(costs) > 0 and min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("API cost per run (USD)")
    ax.set_ylabel("weighted average (%)")
    ax.set_title("Cost versus score", loc="left", color=INK, fontsize=10, fontweight="bold")
    return _save(fig, path)


def _error(stat: Stat):
    if stat.ci:
        return [[100 * max(stat.value - stat.ci[0], 0)], [100 * max(stat.ci[1] - stat.value, 0)]]
    if stat.std is not None:
        return 100 * stat.std
    return None


def _upper(stat: Stat) -> float:
    if stat.value is None:
        return 0.0
    if stat.ci:
        return max(stat.ci[1], stat.value)
    return stat.value + (stat.std or 0.0)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=MUTED, style="italic")


def _short(e: Entry) -> str:
    if e.kind == "baseline":
        return e.label.replace(" (published)", " (pub.)")
    label = e.label if len(e.label) <= 30 else e.label[:29] + "…"
    return label if not e.scaffold or e.scaffold in label else f"{label} ({e.scaffold})"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)
    return path
