"""GPU pass-through under the hardened sandbox (unprivileged uid, user namespace, no capabilities, seccomp,
cgroup limits): CUDA, a matmul, NCCL in one process, and the hardening itself, seen from inside.

    python benchmarks/gpu_sandbox_check.py [--gpus 1]

Needs bwrap on PATH, torch with CUDA, and the GPUs. Prints one JSON object; exits non-zero if anything failed.
"""

import argparse
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from posttrainbench.sandbox import Mount, SandboxRequest, python_mounts, run

PROBE = textwrap.dedent("""
    import json, os, time
    import torch
    import torch.distributed as dist
    status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
    out = {"uid": os.getuid(), "CapEff": status["CapEff"].strip(), "NoNewPrivs": status["NoNewPrivs"].strip(),
           "Seccomp": status["Seccomp"].strip(), "cuda": torch.cuda.is_available(),
           "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        y = x @ x
    torch.cuda.synchronize()
    out["matmul_tflops"] = round(20 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12, 1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29555")
    dist.init_process_group("nccl", rank=0, world_size=1)
    t = torch.ones(1024, device="cuda")
    dist.all_reduce(t)
    out["nccl_all_reduce"] = t[0].item()
    dist.destroy_process_group()
    try:
        os.unshare(os.CLONE_NEWUSER) if hasattr(os, "unshare") else None
        out["unshare"] = "ok"
    except OSError as e:
        out["unshare"] = e.strerror
    print("RESULT " + json.dumps(out), flush=True)
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        request = SandboxRequest(argv=[sys.executable, "-c", PROBE], cwd="/ptb/work",
                                 mounts=[*python_mounts(), Mount(work, "/ptb/work", writable=True)],
                                 env={"PATH": "/usr/bin:/bin", "HOME": "/ptb/work"}, gpus=list(range(args.gpus)))
        started = time.monotonic()
        info = run(request, backend="bwrap", time_limit_s=300, grace_s=5, log_path=Path(tmp) / "log")
        log = (Path(tmp) / "log").read_text()
        owner = work.stat().st_uid
    found = [line.split("RESULT ", 1)[1] for line in log.splitlines() if "RESULT " in line]
    result = json.loads(found[-1]) if found else {}
    result.update(status=info.status, detail=info.detail, wall_s=round(time.monotonic() - started, 2),
                  work_owner_on_host=owner)
    print(json.dumps(result, indent=1))
    ok = (info.status == "finished" and result.get("cuda") and result.get("nccl_all_reduce") == 1.0
          and result.get("CapEff") == "0000000000000000" and result.get("Seccomp") == "2")
    if not ok:
        print(log[-4000:], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
