"""The egress policy: a YAML file of deny rules (defaults in default_policy.yaml, per-run files on top), compiled
for one run into the plain JSON that decide.Decider reads inside the proxy."""

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator

from posttrainbench.errors import PtbError
from posttrainbench.specs import BenchmarkSpec, ModelSpec
from posttrainbench.specs.benchmarks import all_benchmarks

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _valid_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"bad regex {value!r}: {error}") from None
    return value


Regex = Annotated[str | None, AfterValidator(_valid_regex)]


class UrlRule(_Strict):
    host: str  # glob
    path: Regex = None  # searched in the decoded path; None: every path
    allow: bool = False
    reason: str | None = None


class DatasetRule(_Strict):
    repo: str  # glob over hub dataset ids
    files: Regex = None  # searched in the path inside the repo; None: the whole repo
    reason: str | None = None


class GithubRule(_Strict):
    repo: str  # glob over OWNER/REPO
    path: Regex = None  # searched in REF/PATH inside the repo; None: the whole repo
    reason: str | None = None


class PackageRule(_Strict):
    name: str  # glob over PEP 503 names
    reason: str


class GithubMirror(_Strict):
    host: str  # glob
    form: Literal["github", "raw", "jsdelivr", "statically"]  # how its paths map to GitHub's (decide.py)


class LlmShape(_Strict):
    name: str  # shown in the denial: "OpenAI chat completions"
    path: Regex  # searched in the decoded path
    host: str | None = None  # glob; None: any host
    methods: list[str] = ["POST"]


class TestSet(_Strict):
    datasets: list[DatasetRule] = []
    github: list[GithubRule] = []
    rules: list[UrlRule] = []
    packages: list[str] = []


class HubPolicy(_Strict):
    hosts: list[str]
    storage_hosts: list[str]
    viewer_hosts: list[str] = []
    weight_files: Regex = None  # in-repo paths of model weights, denied in dataset and Space repos
    allow_models: list[str] = []
    deny_datasets: list[DatasetRule] = []


class EgressPolicy(_Strict):
    llm_api_hosts: list[str]
    llm_api_shapes: list[LlmShape] = []
    connect_ports: list[int] = [80, 443]
    deny_ip_literals: bool = True
    deny_private_addresses: bool = True
    private_hosts: list[str] = []  # globs of names allowed to resolve to private addresses (internal mirrors)
    hub: HubPolicy
    github: list[GithubRule] = []
    github_mirrors: list[GithubMirror] = []
    packages: list[PackageRule] = []
    rules: list[UrlRule] = []
    test_sets: dict[str, TestSet] = {}
    hash_suffixes: list[str] = []

    @field_validator("test_sets")
    @classmethod
    def _known_benchmarks(cls, value: dict[str, TestSet]) -> dict[str, TestSet]:
        known = {b.id for b in all_benchmarks()}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return value


def load_policy(*overrides: Path | dict) -> EgressPolicy:
    """The default policy with each override (a YAML file or a dict of the same shape) laid over it in order.

    An override's `rules` go before the earlier ones, so its `allow: true` exceptions win; its other lists are
    appended; `test_sets` merge per benchmark; plain values replace.
    """
    merged = _read(DEFAULT_POLICY)
    for override in overrides:
        merged = _merge(merged, override if isinstance(override, dict) else _read(Path(override)))
    try:
        return EgressPolicy.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PtbError(f"egress policy: {where}: {first['msg']}") from None


def compile_policy(
    policy: EgressPolicy, *, mode: Literal["proxied", "open"], base_model: ModelSpec, benchmark: BenchmarkSpec
) -> dict[str, Any]:
    """The run's policy as plain JSON for decide.Decider: the base model, the benchmark's test sets resolved."""
    test_set = policy.test_sets.get(benchmark.id, TestSet())
    test_reason = f"test set of {benchmark.name}"
    models = [base_model.hf_id, *policy.hub.allow_models]
    if base_model.source.kind == "hub":
        models.append(base_model.source.repo)

    datasets = [_dataset(d, d.reason or "denied by the egress policy") for d in policy.hub.deny_datasets]
    datasets += [_dataset(d, d.reason or test_reason) for d in test_set.datasets]
    github = [_github(g, g.reason or "denied by the egress policy") for g in policy.github]
    github += [_github(g, g.reason or test_reason) for g in test_set.github]
    rules = [_rule(r, f"rule {i + 1}") for i, r in enumerate(policy.rules)]
    rules += [_rule(r, "test-set", test_reason) for r in test_set.rules]
    packages = [p.model_dump() for p in policy.packages]
    packages += [{"name": p, "reason": test_reason} for p in test_set.packages]

    allowed = set(benchmark.allowed_training_data)
    for data in benchmark.data:
        if data.name in allowed:
            continue
        reason = f"test data of {benchmark.name} ({data.name})"
        exact = "(^|/)" + re.escape(data.path) + "$"
        if data.source == "hub" and data.repo:
            datasets.append({"repo": data.repo.lower(), "files": exact, "reason": reason})
        elif data.source == "pypi" and data.package:
            packages.append({"name": data.package, "reason": reason})
        elif data.source == "url" and data.url:
            github_rule, url_rule = _url_source(data.url, reason)
            if github_rule:
                github.append(github_rule)
            if url_rule:
                rules.append(url_rule)

    return {
        "mode": mode,
        "rules": rules,
        "llm_api_hosts": policy.llm_api_hosts,
        "llm_api_shapes": [shape.model_dump() for shape in policy.llm_api_shapes],
        "connect_ports": policy.connect_ports,
        "deny_ip_literals": policy.deny_ip_literals,
        "deny_private_addresses": policy.deny_private_addresses,
        "private_hosts": policy.private_hosts,
        "hub": {
            "hosts": policy.hub.hosts,
            "storage_hosts": policy.hub.storage_hosts,
            "viewer_hosts": policy.hub.viewer_hosts,
            "weight_files": policy.hub.weight_files,
            "models": sorted({m.lower() for m in models}),
            "base_model": base_model.hf_id,
            "instruct_twin": base_model.instruct_twin,
        },
        "datasets": datasets,
        "github": github,
        "github_mirrors": [mirror.model_dump() for mirror in policy.github_mirrors],
        "packages": packages,
        "hash_suffixes": policy.hash_suffixes,
    }


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise PtbError(f"cannot read egress policy {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PtbError(f"egress policy {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PtbError(f"egress policy {path} must be a mapping")
    return data


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if key == "rules" and isinstance(old, list) and isinstance(value, list):
            merged[key] = [*value, *old]
        elif isinstance(old, list) and isinstance(value, list):
            merged[key] = [*old, *value]
        elif isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value)
        else:
            merged[key] = value
    return merged


def _dataset(rule: DatasetRule, reason: str) -> dict:
    return {"repo": rule.repo.lower(), "files": rule.files, "reason": reason}


def _github(rule: GithubRule, reason: str) -> dict:
    return {"repo": rule.repo.lower(), "path": rule.path, "reason": reason}


def _rule(rule: UrlRule, name: str, reason: str | None = None) -> dict:
    default = "allowed by the egress policy" if rule.allow else "denied by the egress policy"
    return {"host": rule.host, "path": rule.path, "allow": rule.allow, "reason": rule.reason or reason or default,
            "name": name}


def _url_source(url: str, reason: str) -> tuple[dict | None, dict | None]:
    """Deny a URL-sourced data file: on GitHub in all its URL forms, at any ref and in any fork (same repository
    name, any owner), elsewhere exactly."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.hostname == "raw.githubusercontent.com" and len(segments) >= 4:
        inner = "/".join(segments[3:])
        return {"repo": f"*/{segments[1]}".lower(), "path": re.escape(inner) + "$", "reason": reason}, None
    rule = {"host": parts.hostname or "", "path": "^" + re.escape(parts.path) + "$", "allow": False,
            "reason": reason, "name": "test-set"}
    return None, rule
