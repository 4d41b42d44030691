"""The evaluator of the evaluation service (service.py): the harness's evaluation child in a sandbox of its own.

HarnessSandbox runs any harness program that must load the agent's model (its config, tokenizer and weights are
hostile input) that way: the evaluation, and the weights-side memorisation test (integrity/memorisation.py).
"""

import json
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from posttrainbench import sandbox, untrusted
from posttrainbench.egress.link import llm_link
from posttrainbench.egress.metering import Upstream
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.base import PREFLIGHT_DONE_ENV
from posttrainbench.executors.facts import EvaluationFailed
from posttrainbench.workspace.manifest import RunManifest

if TYPE_CHECKING:
    from posttrainbench.evaluation.service import Job

CANCEL_GRACE_S = 5.0
INSIDE_MODEL, INSIDE_DATA, INSIDE_OUT = "/ptb/model", "/ptb/data", "/ptb/out"
INSIDE_TEMPLATE = "/ptb/chat_template.json"  # the base checkpoint's pinned template (models/templates.py)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class HarnessSandbox:
    """A harness program in a sandbox with no network, the test data and the given folders read-only, one
    writable output folder and the run's GPUs. Backend `none` (debugging, tests) mounts nothing: the program is
    told the host paths instead (`place`)."""

    def __init__(self, manifest: RunManifest, *, backend: str, gpus: list[int], env: dict[str, str]):
        self.manifest, self.backend, self.gpus, self.extra_env = manifest, backend, gpus, env

    @property
    def isolated(self) -> bool:
        return self.backend != "none"

    def place(self, host: Path, inside: str) -> str:
        """Where the program finds `host`, mounted at `inside`."""
        return inside if self.isolated else str(host)

    def run(self, code: str, args: dict, *, out: Path, read_only: dict[str, Path], log_path: Path,
            time_limit_s: float, stop: Callable[[], str | None] | None = None,
            link=None, env: dict[str, str] | None = None,
            on_line: Callable[[str], object] | None = None) -> sandbox.ExitInfo:
        """Run `python -c code <args as JSON>` with `out` writable at INSIDE_OUT and `read_only` (inside path ->
        host path) mounted; `link` (an llm_link) wraps the program and adds its mounts; `on_line` sees each line of
        the log as it is written (hostile text)."""
        argv = [sys.executable, "-c", code, json.dumps(args)]
        data = Path(self.manifest.data_dir)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.place(out / "home", f"{INSIDE_OUT}/home"), "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "PTB_DATA_DIR": self.place(data, INSIDE_DATA),
            "PTB_CACHE": self.place(out / "cache", f"{INSIDE_OUT}/cache"),
            "TOKENIZERS_PARALLELISM": "false", **OFFLINE, **self.extra_env, **(env or {}),
        }
        mounts = [*sandbox.python_mounts(), *(sandbox.Mount(host, inside) for inside, host in read_only.items()),
                  sandbox.Mount(data, INSIDE_DATA),
                  sandbox.Mount(out, INSIDE_OUT, writable=True)]
        # An `own` chat template is the base checkpoint's, pinned in the harness's model cache, which the sandbox
        # lacks: the record is handed over read-only.
        if self.manifest.model.chat_template == "own":
            from posttrainbench.models import templates

            if templates.pinned_template(self.manifest.model) is not None:
                record = templates.record_path(self.manifest.model)
                mounts.append(sandbox.Mount(record, INSIDE_TEMPLATE))
                env[templates.RECORD_ENV] = self.place(record, INSIDE_TEMPLATE)
        if link is not None:
            argv = link.wrap(argv)
            mounts += link.mounts
        # allow_nested: HumanEval's scorer confines each completion in a sandbox of its own.
        request = sandbox.SandboxRequest(argv=argv, cwd=INSIDE_OUT, mounts=mounts, env=env, gpus=self.gpus,
                                         network="none", allow_nested=True)
        return sandbox.run(request, backend=self.backend, time_limit_s=time_limit_s, log_path=log_path,
                           grace_s=CANCEL_GRACE_S, stop=stop, on_line=on_line)


class SandboxedEvaluation(HarnessSandbox):
    """The real evaluator: the harness's evaluation child in a sandbox with no network, the test data read-only and
    the run's GPUs; a graded benchmark's grader behind a metering proxy that adds the key outside."""

    def __init__(self, manifest: RunManifest, *, backend: str, gpus: list[int], env: dict[str, str],
                 deadline: float):
        super().__init__(manifest, backend=backend, gpus=gpus, env=env)
        self.deadline = deadline
        self.grader = None
        if manifest.benchmark.grader:
            from posttrainbench.evaluation.grader import Grader, grader_from_env  # imports inspect-ai

            self.grader = grader_from_env()  # fails before the agent starts when none is configured
            # Checked here, against the real endpoint with the real key: inside, the grader is reached through
            # the metering proxy, which forwards inference calls only (not the /models listing the check uses).
            Grader(self.grader, max_completion_tokens=1).preflight()

    def __call__(self, job: "Job", cancelled: Callable[[], str | None]) -> dict:
        left = self.deadline - time.time()
        if left <= 0:
            raise PtbError("the agent's budget is over")
        try:
            return self.evaluate(job.model_dir, job.work_dir, job.settings, time_limit_s=left, stop=cancelled)
        except EvaluationFailed as exc:
            if exc.status == "timed_out":
                raise PtbError("the agent's budget ended during the evaluation") from None
            raise

    def evaluate(self, model_dir: Path, work_dir: Path, settings: dict, *, time_limit_s: float,
                 stop: Callable[[], str | None] | None = None,
                 on_line: Callable[[str], object] | None = None) -> dict:
        """Evaluate `model_dir` with the runner's `settings`; the sandbox writes under work_dir/out (the runner's
        output in out/result), the log is work_dir/evaluate.log, whose lines `on_line` also sees as they come
        (the child's progress lines: hostile text). Raises EvaluationFailed."""
        from posttrainbench.executors.evaluate import CHILD  # executors import the agent stage, which imports us

        out = work_dir / "out"
        out.mkdir(parents=True, exist_ok=True)
        args = {"model_path": self.place(model_dir, INSIDE_MODEL), "benchmark": self.manifest.benchmark.id,
                "out_dir": self.place(out / "result", f"{INSIDE_OUT}/result"),
                "base_model": self.manifest.model.id, **settings}
        log_path = work_dir / "evaluate.log"
        with self._grader_link(work_dir) as link:
            env = {}
            if link is not None:
                env = {"PTB_GRADER_BASE_URL": f"{link.base_url}/v1", "PTB_GRADER_API_KEY": link.api_key,
                       PREFLIGHT_DONE_ENV: "1"}
            info = self.run(CHILD, args, out=out, read_only={INSIDE_MODEL: model_dir}, log_path=log_path,
                            time_limit_s=time_limit_s, stop=stop, link=link, env=env, on_line=on_line)
        # Written inside the sandbox: read without following links, size and depth capped.
        if info.status != "finished" or not untrusted.is_file(out, "result/metrics.json"):
            reason = last_error(log_path) or f"the evaluation failed ({info.status}); nothing more is known"
            code = info.returncode if info.returncode is not None else 1
            raise EvaluationFailed(reason, 128 - code if code > 128 else code, status=info.status)
        return untrusted.read_json(out, "result/metrics.json")

    def _grader_link(self, work_dir: Path):
        if self.grader is None:
            return nullcontext(None)
        upstream = Upstream(self.grader.base_url, self.grader.api_key or None, auth="bearer", strip_prefix="/v1")
        return llm_link(work_dir / "grader_metering.jsonl", "none", {"openai": upstream})


def last_error(log_path: Path) -> str | None:
    """The harness's own one-line error (`error: ...` from a harness child), not anything else it printed. The log is
    the sandbox's output, so the line is cleaned of escape sequences and controls wherever it ends up."""
    if not log_path.is_file():
        return None
    found = None
    for line in log_path.read_text(errors="replace").splitlines():
        _, _, text = line.partition("] ")
        if text.startswith("error: "):
            found = text.removeprefix("error: ").strip()
    if found and found.startswith("grading "):
        return "grading failed (the grader endpoint of the harness); the harness logged the details"
    return untrusted.clean_text(found, limit=500) if found else None
