"""The evaluator of the evaluation service (service.py): the harness's evaluation child in a sandbox of its own."""

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
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class SandboxedEvaluation:
    """The real evaluator: the harness's evaluation child in a sandbox with no network, the test data read-only and
    the run's GPUs; a graded benchmark's grader behind a metering proxy that adds the key outside."""

    def __init__(self, manifest: RunManifest, *, backend: str, gpus: list[int], env: dict[str, str],
                 deadline: float):
        self.manifest, self.backend, self.gpus, self.extra_env = manifest, backend, gpus, env
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
        # Backend `none` (debugging, tests) mounts nothing: the child is told the host paths instead.
        isolated = self.backend != "none"
        args = {"model_path": INSIDE_MODEL if isolated else str(model_dir), "benchmark": self.manifest.benchmark.id,
                "out_dir": f"{INSIDE_OUT}/result" if isolated else str(out / "result"),
                "base_model": self.manifest.model.id, **settings}
        argv = [sys.executable, "-c", CHILD, json.dumps(args)]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": f"{INSIDE_OUT}/home",
            "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PTB_DATA_DIR": INSIDE_DATA, "PTB_CACHE": f"{INSIDE_OUT}/cache",
            "TOKENIZERS_PARALLELISM": "false", **OFFLINE, **self.extra_env,
        }
        mounts = [*sandbox.python_mounts(), sandbox.Mount(model_dir, INSIDE_MODEL),
                  sandbox.Mount(Path(self.manifest.data_dir), INSIDE_DATA),
                  sandbox.Mount(out, INSIDE_OUT, writable=True)]
        with self._grader_link(work_dir) as link:
            if link is not None:
                argv = link.wrap(argv)
                mounts += link.mounts
                env |= {"PTB_GRADER_BASE_URL": f"{link.base_url}/v1", "PTB_GRADER_API_KEY": link.api_key,
                        PREFLIGHT_DONE_ENV: "1"}
            # allow_nested: HumanEval's scorer confines each completion in a sandbox of its own.
            request = sandbox.SandboxRequest(argv=argv, cwd=INSIDE_OUT, mounts=mounts, env=env, gpus=self.gpus,
                                             network="none", allow_nested=True)
            log_path = work_dir / "evaluate.log"
            info = sandbox.run(request, backend=self.backend, time_limit_s=time_limit_s, log_path=log_path,
                               grace_s=CANCEL_GRACE_S, stop=stop, on_line=on_line)
        # Written inside the sandbox: read without following links, size and depth capped.
        if info.status != "finished" or not untrusted.is_file(out, "result/metrics.json"):
            reason = _last_error(log_path) or f"the evaluation failed ({info.status}); nothing more is known"
            code = info.returncode if info.returncode is not None else 1
            raise EvaluationFailed(reason, 128 - code if code > 128 else code, status=info.status)
        return untrusted.read_json(out, "result/metrics.json")

    def _grader_link(self, work_dir: Path):
        if self.grader is None:
            return nullcontext(None)
        upstream = Upstream(self.grader.base_url, self.grader.api_key or None, auth="bearer", strip_prefix="/v1")
        return llm_link(work_dir / "grader_metering.jsonl", "none", {"openai": upstream})


def _last_error(log_path: Path) -> str | None:
    """The harness's own one-line error (`error: ...` from the evaluation child), not anything else it printed."""
    if not log_path.is_file():
        return None
    found = None
    for line in log_path.read_text(errors="replace").splitlines():
        _, _, text = line.partition("] ")
        if text.startswith("error: "):
            found = text.removeprefix("error: ").strip()
    if found and found.startswith("grading "):
        return "grading failed (the grader endpoint of the harness); the harness logged the details"
    return found[:500] if found else None
