"""Where `ptb demo`'s time goes: wall and CPU seconds per stage, and what it printed.

    python benchmarks/demo_time.py [--home DIR] [-- DEMO FLAGS...]

Runs `ptb demo` once with PTB_HOME=DIR (a fresh folder by default: the base model is converted and the base score
evaluated, as on a first run; pass the same --home twice to measure a second run with both cached). The CPU time
is that of the whole process tree (harness, agent and evaluation children, sandboxes included), sampled every
0.5 s: on a machine shared with other work the wall time mostly measures the wait for a core, the CPU time what
the demo itself costs. An idle 2-core machine's wall time is about max(CPU / 2, CPU of the single-threaded
parts) per stage; the estimate printed is CPU / (cores the stage kept busy when it ran alone), which is a guess
that the report states as such.

Also checks that the console output is quiet: no Python warnings, tqdm bars, pip lines or library log lines.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

STAGE_LINE = re.compile(r"^ptb (prepare|agent|collect|integrity|evaluate|score)\b")
EVAL_LINE = re.compile(r"^ptb evaluating the (base|agent's) model .*its log: ")
NOISE = re.compile(r"Warning|warn\(|it/s\]|s/it\]|\d+%\|| INFO | WARNING |Collecting |Downloading |Saved |"
                   r"Successfully |Looking in |Loading weights|Writing model")


def tree_cpu(root: psutil.Process) -> float:
    """User + system seconds of `root` and its live descendants, each with its reaped children's."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=None, help="PTB_HOME (default: a fresh temporary folder)")
    parser.add_argument("--ptb", default=str(Path(sys.executable).with_name("ptb")))
    parser.add_argument("demo_args", nargs="*", help="extra `ptb demo` flags, after --")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="ptb-demo-"))
    env = {**os.environ, "PTB_HOME": str(home)}
    env.pop("PTB_CACHE", None)
    started = time.monotonic()
    proc = subprocess.Popen([args.ptb, "demo", *args.demo_args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    last_cpu = [0.0]  # the tree's CPU at the latest sample: a finished child's time is gone once its parent exits
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                last_cpu[0] = max(last_cpu[0], tree_cpu(root))
            except psutil.NoSuchProcess:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marks = [("start", 0.0, 0.0)]
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        print(line, end="", flush=True)
        found = STAGE_LINE.match(line)
        evaluating = EVAL_LINE.match(line)
        name = None
        if found and (line.rstrip().endswith(": started") or found.group(1) == "prepare"):
            name = found.group(1)
        elif evaluating:
            name = "eval " + ("base" if evaluating.group(1) == "base" else "final")
        if name:
            try:
                last_cpu[0] = max(last_cpu[0], tree_cpu(root))
            except psutil.NoSuchProcess:
                pass
            marks.append((name, time.monotonic() - started, last_cpu[0]))
    proc.wait()
    wall = time.monotonic() - started
    stop.set()
    sampler.join()
    cpu = max(last_cpu[0], _reaped_cpu())
    marks.append(("end", wall, cpu))
    print(f"\nexit {proc.returncode}; wall {wall:.0f} s, CPU {cpu:.0f} s, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'stage':<12}{'wall s':>8}{'CPU s':>8}")
    names = [m[0] for m in marks]
    for (name, t0, c0), (_, t1, c1) in zip(marks, marks[1:]):
        label = "startup" if name == "start" else ("model+data" if name == "prepare" else name)
        print(f"{label:<12}{t1 - t0:>8.0f}{c1 - c0:>8.0f}")
    noisy = [line for line in lines if NOISE.search(line)]
    print(f"stages seen: {', '.join(names[1:-1])}; noisy console lines: {len(noisy)}")
    for line in noisy[:10]:
        print("  " + line[:160])


def _reaped_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
