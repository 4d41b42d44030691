"""A stand-in for the `vllm` executable: `fake_vllm.py serve MODEL --port P --served-model-name N ...`.

FAKE_VLLM_MODE picks its behaviour:
  ok            serve FakeOpenAI on the port, answering FAKE_VLLM_REPLY to every chat request
  exit          print a configuration error and exit 1 during start-up
  oom           print CUDA's out-of-memory error and exit 1 during start-up
  die:N         serve, then die (exit 1, engine error) on the N-th chat request
  die-once:N    like die:N the first time (FAKE_VLLM_STATE marks it), then serve like ok
  hang          never answer
  slow:S        load for S seconds, then serve like ok (the time it starts answering goes to FAKE_VLLM_STATE.ready)
Every command line is appended to FAKE_VLLM_STATE.calls and every chat request body to .requests, one JSON a line.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, Request  # noqa: E402


def main(argv: list[str]) -> None:
    state = Path(os.environ["FAKE_VLLM_STATE"])
    with open(state.with_suffix(".calls"), "a") as calls:
        calls.write(json.dumps(argv) + "\n")
    mode = os.environ.get("FAKE_VLLM_MODE", "ok")
    if mode == "exit":
        print("ValueError: the model's config.json names an architecture this vLLM does not support", flush=True)
        sys.exit(1)
    if mode == "oom":
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    if mode == "hang":
        time.sleep(3600)
    if mode.startswith("slow:"):
        time.sleep(float(mode.split(":")[1]))
    die_at = None
    if mode.startswith("die:") or (mode.startswith("die-once:") and not state.exists()):
        die_at = int(mode.split(":")[1])
        state.write_text("died")
    count = 0
    reply = os.environ.get("FAKE_VLLM_REPLY", "ANSWER: 42")

    def script(request: Request) -> str:
        nonlocal count
        count += 1
        with open(state.with_suffix(".requests"), "a") as requests:
            requests.write(json.dumps(request.body) + "\n")
        if die_at is not None and count >= die_at:
            print("RuntimeError: Engine core proc EngineCore_0 died unexpectedly", flush=True)
            os._exit(1)
        return reply

    port = int(argv[argv.index("--port") + 1])
    with FakeOpenAI(script, api_key=os.environ.get("VLLM_API_KEY"), port=port):
        state.with_suffix(".ready").write_text(str(time.time()))
        print("INFO: Application startup complete.", flush=True)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
