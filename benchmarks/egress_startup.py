"""What the egress proxy adds to a run: setup before the sandbox can start, teardown after it, and the whole of a
trivial sandboxed run (`true` behind the relay) in `proxied` mode against the same run in `offline` mode.

    python benchmarks/egress_startup.py --repeat 5

mitmdump itself is not waited for (its import takes seconds on a busy machine); `mitmdump_ready_s` says when it
accepted connections, and `first_request_s` how long a request sent at once took (it waits for mitmdump).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posttrainbench.egress.session import start_egress
from posttrainbench.sandbox import Mount, SandboxRequest, run
from posttrainbench.specs import get_benchmark, get_model


def _sandbox_true(session, run_dir: Path) -> float:
    work = run_dir / "work"
    work.mkdir(exist_ok=True)
    request = SandboxRequest(argv=session.wrap(["true"]), cwd="/work", mounts=[Mount(work, "/work", True),
                             *session.mounts], env={"PATH": "/usr/bin:/bin", **session.env}, network=session.network)
    started = time.monotonic()
    info = run(request, backend="bwrap", time_limit_s=60, log_path=run_dir / "agent.log", grace_s=1)
    if info.status != "finished":
        raise SystemExit(f"sandbox failed: {info.detail}")
    return time.monotonic() - started


def one_run(mode: str, folder: Path) -> dict:
    model, benchmark = get_model("qwen3-1.7b-base"), get_benchmark("gsm8k")
    started = time.monotonic()
    session = start_egress(mode, folder, base_model=model, benchmark=benchmark)
    setup = time.monotonic() - started
    try:
        sandbox = _sandbox_true(session, folder)
        ready = session.proxy.wait_ready() + setup + sandbox if session.proxy else 0.0
    finally:
        started = time.monotonic()
        session.close()
        teardown = time.monotonic() - started
    return {"setup_s": setup, "sandbox_s": sandbox, "teardown_s": teardown, "mitmdump_ready_s": ready,
            "total_s": setup + sandbox + teardown}


def first_request(folder: Path) -> float:
    """A request through the proxy sent the moment the session exists (curl on the host, through the loopback front
    that the `none` backend uses): it is answered (403, an LLM API) once mitmdump runs."""
    model, benchmark = get_model("qwen3-1.7b-base"), get_benchmark("gsm8k")
    with start_egress("proxied", folder, base_model=model, benchmark=benchmark, backend="none") as session:
        started = time.monotonic()
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_connect}", "-x", session.env["https_proxy"],
                "https://api.openai.com/"]
        status = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        if status != "403":
            raise SystemExit(f"expected the proxy's 403, got {status!r}")
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"offline": [], "proxied": []}
    first: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ptb-egress-bench-") as tmp:
        for i in range(args.repeat):
            for mode in results:
                folder = Path(tmp) / f"{mode}-{i}"
                folder.mkdir()
                results[mode].append(one_run(mode, folder))
            folder = Path(tmp) / f"first-{i}"
            folder.mkdir()
            first.append(first_request(folder))
            print(f"round {i + 1}/{args.repeat} done", file=sys.stderr)
    summary = {}
    for mode, runs in results.items():
        summary[mode] = {key: {"median": round(statistics.median(r[key] for r in runs), 3),
                               "max": round(max(r[key] for r in runs), 3)} for key in runs[0]}
    added = [p["total_s"] - o["total_s"] for p, o in zip(results["proxied"], results["offline"])]
    summary["proxied_minus_offline_s"] = {"median": round(statistics.median(added), 3), "max": round(max(added), 3)}
    summary["first_request_s"] = {"median": round(statistics.median(first), 3), "max": round(max(first), 3)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
