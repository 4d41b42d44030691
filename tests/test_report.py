"""The static report: built from a synthetic store, loaded in headless Chromium, exports checked."""

import csv
import json
import random
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posttrainbench.errors import PtbError
from posttrainbench.report import build_report
from posttrainbench.report.charts import PALETTE
from posttrainbench.scoring import import_published_baselines, leaderboard, published_scores
from posttrainbench.store import Store

FLAG = "contamination: 12 GSM8K test items in task/data/train.jsonl"
RICH_RUN = "opus-rich"


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _write_artifacts(run_dir: Path) -> None:
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": RICH_RUN, "spec": {"hours": 10}}))
    (run_dir / "logs" / "agent.log").write_text("loading base model\nepoch 1 loss 0.91\nsaved final_model\n")
    (run_dir / "trajectory.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"t": "2026-01-01T00:00:00Z", "step": 1, "kind": "assistant", "text": "Plan: SFT on GSM8K train.",
         "tokens": {"input": 900, "cached": 0, "output": 60}},
        {"t": "2026-01-01T00:00:04Z", "step": 2, "kind": "tool_call", "tool": "Bash",
         "input": {"command": "python train.py --epochs 2"}},
        {"t": "2026-01-01T00:31:00Z", "step": 3, "kind": "tool_result", "tool": "Bash", "output": "epoch 2 loss 0.55"},
        {"t": "2026-01-01T00:31:02Z", "step": 4, "kind": "result", "text": "2 LLM calls metered", "source": "proxy",
         "tokens": {"input": 1800, "cached": 0, "output": 120}, "cost_usd": 0.02},
    ]) + "\n")
    (run_dir / "egress.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"ts": 1, "method": "CONNECT", "host": "huggingface.co", "path": "/datasets/openai/gsm8k", "status": 200,
         "allowed": True, "bytes": 4_200_000, "sha256": "ab" * 32},
        {"ts": 2, "method": "GET", "host": "huggingface.co", "path": "/Qwen/Qwen3-1.7B/resolve/main/model.safetensors",
         "status": 403, "allowed": False, "reason": "instruct twin of the base model"},
    ]) + "\n")
    (run_dir / "integrity.json").write_text(json.dumps(
        {"verdict": "clean", "checks": [{"name": "lineage", "passed": True, "cosine_to_base": 0.993}]}))
    (run_dir / "results" / "final").mkdir(parents=True)
    (run_dir / "results" / "final" / "metrics.json").write_text(json.dumps({"accuracy": 0.41, "stderr": 0.01}))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Published baselines plus two agents on the four models: one with two seeds and a flagged run, one with a
    single seed and a missing cell. The tests only read it."""
    tmp_path = tmp_path_factory.mktemp("store")
    store = Store(tmp_path / "ptb.sqlite")
    import_published_baselines(store)
    base, inst = published_scores("base-zeroshot"), published_scores("instruct")
    rng = random.Random(0)
    runs = tmp_path / "runs"
    for agent, skill, seeds, cost in (("claude:opus", 0.45, 2, 0.9), ("codex:gpt", 0.35, 1, 0.1)):
        scaffold, _, name = agent.partition(":")
        for model in base:
            for bench in base[model]:
                if agent == "codex:gpt" and model == sorted(base)[0] and bench == "humaneval":
                    continue
                for seed in range(seeds):
                    run_id = f"{name}-{model}-{bench}-{seed}"
                    first = run_id == f"opus-{sorted(base)[0]}-gsm8k-0"
                    if first:
                        run_id = RICH_RUN
                    run_dir = runs / run_id
                    (run_dir / "logs").mkdir(parents=True)
                    store.add_run(run_id, kind="agent", agent=agent, model=model, benchmark=bench, seed=seed,
                                  hours=10.0, run_dir=run_dir, spec={"agent": {"scaffold": scaffold, "model": name}})
                    score = base[model][bench] + skill * (inst[model][bench] - base[model][bench])
                    score = min(max(score + rng.gauss(0, 0.03), 0.0), 1.0)
                    store.put_metrics(run_id, "final", {"accuracy": score})
                    store.put_metrics(run_id, "base", {"accuracy": base[model][bench]})
                    flagged = agent == "codex:gpt" and bench == "gsm8k" and model == sorted(base)[1]
                    store.update(run_id, flag=FLAG if flagged else None,
                                 score=base[model][bench] if flagged else score,
                                 score_source="base" if flagged else "final",
                                 time_used_s=3600 * 10 * skill * rng.uniform(1.5, 2.0))
                    (run_dir / "logs" / "metering.jsonl").write_text(json.dumps(
                        {"input_tokens": 40_000, "output_tokens": 3_000, "cost_usd": cost * rng.uniform(0.7, 1.3)}))
                    if first:
                        _write_artifacts(run_dir)
                    store.set_status(run_id, "done")
    return store


class _Dom(HTMLParser):
    """Collects leaderboard rows (key -> their text), images, classes and the text of the page."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, str] = {}
        self.images: list[str] = []
        self.text: list[str] = []
        self.classes: list[str] = []
        self._row: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "entry" in (attrs.get("class") or "").split():
            self._row = attrs["data-key"]
            self.rows[self._row] = ""
        if tag == "img":
            self.images.append(attrs["src"])
        self.classes += (attrs.get("class") or "").split()

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row:
            self.rows[self._row] += " " + data.strip()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _browse(binary: str, tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--hide-scrollbars", *args, page.as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _dom(binary: str, tmp_path: Path, page: Path) -> _Dom:
    dom = _Dom()
    dom.feed(_browse(binary, tmp_path, page, "--dump-dom").stdout)
    return dom


def test_report_renders_in_chromium(store, tmp_path):
    binary = _chromium()
    site = tmp_path / "site"
    index = build_report(store, site, bootstrap=200)
    lb = leaderboard(store, bootstrap=0)

    dom = _dom(binary, tmp_path, index)
    assert list(dom.rows) == [e.key for e in lb.entries]
    rows = dom.rows
    assert set(rows) == {"agent:claude:opus@10h", "agent:codex:gpt@10h", "baseline:instruct:published",
                         "baseline:base-zeroshot:published", "baseline:base-fewshot:published"}
    assert rows["baseline:instruct:published"].split()[:4] == ["Official", "instruct", "(published)", "baseline"]
    assert rows["baseline:instruct:published"].split()[4] == "51.1"
    assert rows["baseline:base-zeroshot:published"].split()[4] == "7.5"
    assert "—" in rows["baseline:base-fewshot:published"]  # no published few-shot BFCL
    assert rows["agent:claude:opus@10h"].split()[:2] == ["1", "opus"]  # ranked, complete
    assert "⚑ 1" in rows["agent:codex:gpt@10h"] and "contamination" in rows["agent:codex:gpt@10h"]
    assert FLAG in " ".join(dom.text)  # the flagged runs table gives the whole reason

    charts = [src for src in dom.images if src.startswith("charts/")]
    assert len(charts) == 1 + len(lb.benchmarks) + 2  # average, one per benchmark, time used, cost
    for src in charts:
        assert "<svg" in (site / src).read_text()[:2000]

    shot = tmp_path / "leaderboard.png"
    _browse(binary, tmp_path, index, "--window-size=1400,3400", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (3400, 1400, 3)
    # the first agent's color fills its bars in the charts: thousands of pixels, not just its table swatch
    assert (pixels == _hex(PALETTE[0])).all(axis=2).sum() > 3000


def test_missing_and_flagged_cells(store, tmp_path):
    binary = _chromium()
    site = tmp_path / "site"
    index = build_report(store, site, bootstrap=0)
    lb = leaderboard(store, bootstrap=0)
    codex = lb.entry("agent:codex:gpt@10h")
    assert codex.missing == [f"{lb.models[0]} / humaneval"] and not codex.average.complete

    flagged = next(r for r in lb.runs if r.flag)
    assert flagged.score == published_scores("base-zeroshot")[flagged.model]["gsm8k"]
    assert flagged.source == "base"

    html = index.read_text()
    row = html[html.index('data-key="agent:codex:gpt@10h"'):]
    row = row[:row.index("</tr>")]
    assert "⚑ 1" in row and "incomplete" in row and "<sup>*</sup>" in row

    with (site / "tables" / "cells.csv").open() as fh:
        cells = [r for r in csv.DictReader(fh) if r["key"] == codex.key and r["benchmark"] == "humaneval"]
    assert [c["mean"] for c in cells if c["model"] == lb.models[0]] == [""]  # missing, not 0
    board = json.loads((site / "tables" / "leaderboard.json").read_text())
    assert {r["key"]: r["average_complete"] for r in board["rows"]}[codex.key] is False
    for name in ("leaderboard", "benchmarks", "models", "cells", "usage", "weights", "runs"):
        assert (site / "tables" / f"{name}.csv").is_file() and (site / "tables" / f"{name}.json").is_file()

    page = site / "runs" / f"{flagged.id}.html"
    dom = _dom(binary, tmp_path, page)
    text = " ".join(dom.text)
    assert "Flagged:" in text and FLAG in text and "Scored as the base model" in text


def test_run_pages_show_artifacts_or_say_not_available(store, tmp_path):
    binary = _chromium()
    site = tmp_path / "site"
    build_report(store, site, bootstrap=0)

    rich = _dom(binary, tmp_path, site / "runs" / f"{RICH_RUN}.html")
    text = " ".join(rich.text)
    assert rich.classes.count("step") == 4 and "$ python train.py --epochs 2" in text
    assert "epoch 2 loss 0.55" in text and "1,800 input" in text
    assert "instruct twin of the base model" in text and "huggingface.co" in text  # egress summary
    assert "cosine_to_base" in text and "0.993" in text  # integrity evidence, collapsed under its summary
    assert "not flagged" in text and "Error:" not in text
    accuracy = store.metrics(RICH_RUN)["final"]["accuracy"]
    assert f"{100 * accuracy:.1f}%" in text and f"{accuracy:.4f}" not in text  # the unit of every other screen
    assert "saved final_model" in text and "manifest.json" in text
    assert "not available" not in text

    bare = _dom(binary, tmp_path, next(p for p in (site / "runs").glob("opus-*.html") if RICH_RUN not in p.name))
    text = " ".join(bare.text)
    for what in ("Integrity evidence", "Egress log", "Trajectory", "Agent log", "Manifest"):
        assert f"{what}: not available" in text

    shot = tmp_path / "run.png"
    _browse(binary, tmp_path, site / "runs" / f"{RICH_RUN}.html", "--window-size=1300,2200",
            f"--screenshot={shot}")
    assert Image.open(shot).size == (1300, 2200)


def test_report_folder_is_rebuilt_but_a_foreign_folder_is_refused(store, tmp_path):
    site = tmp_path / "site"
    build_report(store, site, bootstrap=0)
    stale = site / "runs" / "stale.html"
    stale.write_text("from an older build")
    build_report(store, site, bootstrap=0)
    assert not stale.exists() and (site / "index.html").is_file()

    foreign = tmp_path / "home"
    (foreign / "runs" / "r1").mkdir(parents=True)
    with pytest.raises(PtbError, match="not empty"):
        build_report(store, foreign, bootstrap=0)
    assert (foreign / "runs" / "r1").is_dir()


def test_published_baselines_in_a_report_store_nothing(tmp_path):
    from posttrainbench.report import build_report

    store = Store(tmp_path / "ptb.sqlite")
    index = build_report(store, tmp_path / "site", published=True, bootstrap=0)
    assert "Official instruct (published)" in index.read_text()
    assert store.runs() == []
