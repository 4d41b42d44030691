"""The typed manifest of a run: written once by `prepare`, read by every later stage."""

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from posttrainbench.errors import PtbError
from posttrainbench.specs import BenchmarkSpec, ModelSpec, RunSpec

PACKAGES = ("posttrainbench", "torch", "transformers", "trl", "peft", "inspect_ai", "vllm")


class RunManifest(BaseModel):
    schema_version: int = 1
    run_id: str
    kind: Literal["agent", "baseline"] = "agent"
    spec: RunSpec
    model: ModelSpec
    benchmark: BenchmarkSpec
    created_at: str
    base_model_dir: str  # host path of the cached base model
    hf_repo_dir: str  # host path of its models--ORG--NAME folder, mounted read-only into the agent's HF cache
    data_dir: str  # host path of the benchmark data staged in mirror layout
    # host path of what the sandbox sees at SANDBOX_DATA: data_dir with test access `visible`, else only the data
    # the benchmark allows for training (None in manifests written before the option existed: data_dir)
    agent_data_dir: str | None = None
    pristine_sha256: dict[str, str]  # relative path under eval/ -> sha256, taken before the agent starts
    versions: dict[str, str]


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_manifest(path: Path, manifest: RunManifest) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, path)


def read_manifest(path: Path) -> RunManifest:
    try:
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and isinstance(data.get("spec"), dict):
            # Runs prepared before the option existed had the test data in the sandbox.
            data["spec"].setdefault("test_access", "visible")
        return RunManifest.model_validate(data)
    except FileNotFoundError:
        raise PtbError(f"no run manifest at {path}") from None
    except (ValidationError, json.JSONDecodeError) as exc:
        raise PtbError(f"run manifest {path} is invalid: {str(exc).splitlines()[0]}") from None
