"""LLM judges: CLI agents (the same scaffolds as the agents under test) that read a finished run and write a
verdict. Each judge runs in the sandbox with the run's task/ and home/ mounted read-only, the run's record
(trajectory, logs, the automated checks' findings) beside them, and one writable folder of its own for the
verdict, under judges/ in the run directory, where the agent never had access. A flag needs a majority of the
judges asked; a judge without a valid verdict counts as not flagging.
"""

import importlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from jinja2 import Environment, StrictUndefined
from pydantic import BaseModel, ValidationError

from posttrainbench import sandbox, untrusted
from posttrainbench.agents import AgentContext
from posttrainbench.agents.launch import python_path, shell_env, write_login_profile
from posttrainbench.egress.link import llm_link
from posttrainbench.egress.metering import KEY_ENV, Upstream, upstreams_from_env
from posttrainbench.errors import PtbError
from posttrainbench.integrity.report import Check, IntegrityReport
from posttrainbench.specs import AgentSpec, parse_agent
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import RunManifest

JUDGE_FLAGS = ("contamination", "disallowed_model", "api_misuse")
DEFAULT_JUDGE = "codex:gpt-5.1-codex"
TEMPLATE = Path(__file__).with_name("judge_prompt.txt.jinja")
JUDGES_DIR = "judges"
VERDICT = "verdict.json"
HOME = "/home/judge"
RUN_TASK, RUN_HOME = f"{HOME}/run/task", f"{HOME}/run/home"
EVIDENCE, OUT = f"{HOME}/evidence", f"{HOME}/verdict"
# The run's record as the judge sees it: name inside the evidence folder -> candidates in the run dir, description.
RECORD = {
    "trajectory.jsonl": (("trajectory.jsonl", "logs/trajectory.jsonl"),
                         "the agent's steps: messages, commands, outputs"),
    "agent.log": (("logs/agent.log",), "the agent's raw output, timestamped"),
    "egress.jsonl": (("egress.jsonl", "logs/egress.jsonl"), "every network request through the egress proxy"),
    "llm_calls.jsonl": (("logs/llm_calls.jsonl", "logs/metering.jsonl"), "the agent's metered LLM calls"),
    "manifest.json": (("manifest.json",), "the run's settings"),
}


class Verdict(BaseModel):
    contamination: bool
    disallowed_model: bool
    api_misuse: bool
    evidence: list[dict] = []
    justification: str = ""


class JudgeResult(BaseModel):
    judge: int
    agent: str
    status: str  # ok | no_verdict | invalid
    detail: str
    verdict: Verdict | None = None


def prompt(manifest: RunManifest, deterministic: IntegrityReport, evidence_files: list[tuple[str, str]]) -> str:
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
    allowed = ", ".join(f"the {n} split of {manifest.benchmark.name}" for n in manifest.benchmark.allowed_training_data)
    return env.from_string(TEMPLATE.read_text()).render(
        model=manifest.model.hf_id,
        twin=manifest.model.instruct_twin,
        benchmark=manifest.benchmark.name,
        hours=f"{manifest.spec.hours:g}",
        allowed_data=allowed,
        task=RUN_TASK,
        home=RUN_HOME,
        evidence=EVIDENCE,
        evidence_files=evidence_files,
        deterministic_reasons=deterministic.reasons,
        verdict_path=f"{OUT}/{VERDICT}",
    )


def _record_mounts(layout: RunLayout, evidence: Path) -> tuple[list[sandbox.Mount], list[tuple[str, str]]]:
    about = "findings of the automated checks (tamper, lineage, contamination, network), with evidence"
    mounts, listed = [], [("integrity.json", about)]
    for name, (candidates, what) in RECORD.items():
        found = next((layout.root / c for c in candidates if (layout.root / c).is_file()), None)
        if found is not None:
            (evidence / name).touch()  # the mount point: bwrap cannot create it inside a read-only mount
            mounts.append(sandbox.Mount(found, f"{EVIDENCE}/{name}"))
            listed.append((name, what))
    return [sandbox.Mount(evidence, EVIDENCE), *mounts], listed


def read_verdict(folder: Path, number: int, agent: AgentSpec, detail: str) -> JudgeResult:
    # The judge wrote out/ from inside its sandbox, and may have been talked into anything by the agent's files.
    if not untrusted.is_file(folder / "out", VERDICT):
        return JudgeResult(judge=number, agent=agent.name, status="no_verdict", detail=detail)
    try:
        verdict = Verdict.model_validate(untrusted.read_json(folder / "out", VERDICT))
    except (untrusted.Refused, ValidationError) as exc:
        reason = untrusted.clean_text(str(exc).splitlines()[0], limit=300)
        return JudgeResult(judge=number, agent=agent.name, status="invalid", detail=f"{VERDICT}: {reason}")
    return JudgeResult(judge=number, agent=agent.name, status="ok", detail=detail, verdict=verdict)


def run_judge(number: int, manifest: RunManifest, layout: RunLayout, deterministic: IntegrityReport,
              agent: AgentSpec, upstreams: dict[str, Upstream], *, backend: str, time_limit_s: float) -> JudgeResult:
    folder = layout.root / JUDGES_DIR / str(number)
    shutil.rmtree(folder, ignore_errors=True)
    home, out, evidence = folder / "home", folder / "out", folder / "evidence"
    for path in (home, out, evidence):
        path.mkdir(parents=True)
    (evidence / "integrity.json").write_text(deterministic.model_dump_json(indent=2))
    record_mounts, listed = _record_mounts(layout, evidence)
    text = prompt(manifest, deterministic, listed)
    (folder / "prompt.txt").write_text(text)
    with llm_link(folder / "llm_calls.jsonl", "none", upstreams) as link:
        ctx = AgentContext(agent=agent, model=manifest.model, benchmark=manifest.benchmark, prompt=text,
                           hours=time_limit_s / 3600, gpus=0, run_dir=folder, home=home, task=layout.task,
                           llm_base_url=link.base_url, llm_api_key=link.api_key)
        launch = importlib.import_module(f"posttrainbench.agents.{agent.scaffold}").prepare(ctx)
        launch.write_files(home)
        write_login_profile(home)
        request = sandbox.SandboxRequest(
            argv=link.wrap(launch.argv),
            cwd=RUN_TASK,
            mounts=[
                *sandbox.python_mounts(),
                sandbox.Mount(home, HOME, writable=True),
                sandbox.Mount(layout.task, RUN_TASK),
                sandbox.Mount(layout.home, RUN_HOME),
                *record_mounts,
                sandbox.Mount(out, OUT, writable=True),
                *[sandbox.Mount(p, str(p)) for p in launch.mounts],
                *link.mounts,
            ],
            env=shell_env({"PATH": python_path(), "HOME": HOME, "LANG": "C.UTF-8", "TERM": "dumb", "TMPDIR": "/tmp",
                           **launch.env}),
            # the agent's uid: the judge reads every file the agent made, through read-only mounts
            identity=str(layout.root.resolve()),
        )
        info = sandbox.run(request, backend=backend, time_limit_s=time_limit_s, log_path=folder / "judge.log",
                           grace_s=10)
    (folder / "exit.json").write_text(info.model_dump_json(indent=2))
    return read_verdict(folder, number, agent, info.detail)


def vote(results: list[JudgeResult], asked: int) -> Check:
    """Majority of the judges asked, per flag."""
    votes = {flag: sum(bool(r.verdict and getattr(r.verdict, flag)) for r in results) for flag in JUDGE_FLAGS}
    flags = [flag for flag, n in votes.items() if n * 2 > asked]
    valid = sum(r.status == "ok" for r in results)
    numbers = {"asked": asked, "valid_verdicts": valid, "votes": votes}
    evidence = [
        {"judge": r.judge, "agent": r.agent, "status": r.status, "detail": r.detail,
         **(r.verdict.model_dump() if r.verdict else {})}
        for r in results
    ]
    tally = ", ".join(f"{flag} {n}/{asked}" for flag, n in votes.items())
    notes = [f"{asked - valid} judge(s) gave no valid verdict"] if valid < asked else []
    if flags:
        return Check(status="flag", flags=flags, evidence=evidence, numbers=numbers, notes=notes,
                     reason=f"majority of LLM judges: {tally}")
    status = "pass" if valid else "error"
    return Check(status=status, evidence=evidence, numbers=numbers, notes=notes, reason=f"LLM judge votes: {tally}")


SCAFFOLD_PROVIDERS = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
OPENCODE_PROVIDERS = {"anthropic": "anthropic", "openai": "openai", "google": "gemini"}
ENDPOINT_TIMEOUT_S = 10.0


def judge_provider(agent: AgentSpec) -> str | None:
    """The API provider a judge's CLI talks to (None: an OpenCode provider the proxy has no default for)."""
    if agent.scaffold == "opencode":
        return OPENCODE_PROVIDERS.get((agent.model or "").partition("/")[0])
    return SCAFFOLD_PROVIDERS.get(agent.scaffold)


def check_provider(agent: AgentSpec, upstreams: dict[str, Upstream], timeout_s: float = ENDPOINT_TIMEOUT_S) -> None:
    """Before any judge starts: its provider has a key here and its endpoint answers (any HTTP status will do), so
    that a missing key or an unreachable provider is one line now instead of a judge retrying for an hour."""
    import urllib.error
    import urllib.request

    provider = judge_provider(agent)
    if not upstreams or (provider is not None and provider not in upstreams):
        names = " or ".join(KEY_ENV.get(provider, ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")))
        raise PtbError(f"the judge {agent.name} needs {names} in the harness's environment")
    upstream = upstreams.get(provider) or next(iter(upstreams.values()))
    try:
        urllib.request.urlopen(urllib.request.Request(upstream.base_url, method="HEAD"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PtbError(f"the judge's provider endpoint {upstream.base_url} cannot be reached ({reason}); check the "
                       "network or PTB_<PROVIDER>_UPSTREAM") from None


def judge(run_dir: Path, manifest: RunManifest, deterministic: IntegrityReport, count: int, *,
          agent: AgentSpec | None = None, rerun: bool = False, upstreams: dict[str, Upstream] | None = None,
          backend: str = "bwrap", time_limit_s: float = 3600, log: Callable[[str], None] = lambda _: None) -> Check:
    """Run `count` judges (or reuse the verdicts already in judges/ unless `rerun`) and take the majority."""
    if count < 1:
        raise PtbError("the number of LLM judges must be at least 1")
    agent = agent or parse_agent(DEFAULT_JUDGE)
    if agent.scaffold in ("command", "reference"):
        raise PtbError(f"a judge must be an LLM agent CLI (claude, codex, gemini, opencode), not {agent.scaffold}")
    layout = RunLayout(Path(run_dir))
    upstreams = upstreams if upstreams is not None else upstreams_from_env()
    if rerun or any(not (layout.root / JUDGES_DIR / str(n) / "out" / VERDICT).is_file() for n in range(1, count + 1)):
        check_provider(agent, upstreams)
    results = []
    for number in range(1, count + 1):
        folder = layout.root / JUDGES_DIR / str(number)
        if not rerun and (folder / "out" / VERDICT).is_file():
            results.append(read_verdict(folder, number, agent, "verdict of an earlier judge run"))
            log(f"judge {number}: kept the earlier verdict")
            continue
        log(f"judge {number}/{count} ({agent.name}): started, at most {time_limit_s / 60:.0f} min")
        started = time.monotonic()
        result = run_judge(number, manifest, layout, deterministic, agent, upstreams, backend=backend,
                           time_limit_s=time_limit_s)
        log(f"judge {number}/{count}: {result.status} after {time.monotonic() - started:.0f} s")
        results.append(result)
    return vote(results, count)
