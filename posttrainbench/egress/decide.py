"""Allow or deny one request of a sandboxed agent, from a compiled policy (plain JSON, see policy.compile_policy).

Standard library only: mitmproxy runs in an interpreter of its own (its pins clash with the project's) and loads
this file by path.

Order of checks, first match wins: explicit rules (per-run overrides first), LLM API hosts, then the URL forms of
the Hugging Face hub (models, datasets, storage redirects, dataset viewer), GitHub and PyPI; anything else is
allowed. Repository ids and paths are compared case-insensitively, after percent-decoding and resolving `..`, as
the servers themselves treat them.
"""

import fnmatch
import ipaddress
import json
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

HUB_KINDS = ("models", "datasets", "spaces")
# First path segments of the hub that are not a user or organisation (so no model repo follows them).
HUB_RESERVED = {
    "api", "datasets", "spaces", "docs", "blog", "login", "logout", "join", "settings", "papers", "models",
    "collections", "organizations", "pricing", "enterprise", "front", "avatars", "chat", "posts", "learn", "tasks",
    "oauth", "search", "new", "new-dataset", "new-space", "new-collection", "notifications", "billing",
    "inference-endpoints", "terms-of-service", "privacy", "static-proxy", "changelog", "welcome", "huggingface",
}
# Second segments that follow a legacy repo id without organisation (`/gpt2/resolve/main/config.json`).
HUB_ACTIONS = {
    "resolve", "blob", "raw", "tree", "commit", "commits", "discussions", "info", "git-upload-pack", "refs",
    "revision", "paths-info", "xet-read-token", "preupload", "parquet", "croissant", "viewer", "edit", "upload",
    "delete", "treesize", "compare", "lfs-files", "likers", "settings", "blame", "branch", "tag", "notebook",
}
GIT_SEGMENTS = ("info", "git-upload-pack", "git-receive-pack")
GITHUB_HOSTS = ("github.com", "api.github.com", "codeload.github.com", "raw.githubusercontent.com",
                "media.githubusercontent.com")
PYPI_HOSTS = ("pypi.org", "pypi.python.org", "files.pythonhosted.org")


@dataclass
class Verdict:
    allowed: bool
    rule: str  # which check decided, for the log
    reason: str = ""
    repo: str | None = None  # "models/ORG/NAME" or "datasets/ORG/NAME" for hub requests
    file: str | None = None  # path inside the repo, when the request names one
    hashed: bool = False  # the body is a model or data file: hash it


@dataclass
class _Rule:
    host: str
    path: re.Pattern | None
    allow: bool
    reason: str
    name: str


@dataclass
class _RepoRule:
    repo: str  # glob, lower case
    path: re.Pattern | None  # None: the whole repository
    reason: str


class Decider:
    def __init__(self, compiled: dict) -> None:
        self.mode = compiled["mode"]
        self.rules = [
            _Rule(r["host"].lower(), _regex(r.get("path")), bool(r.get("allow")), r.get("reason") or "", r["name"])
            for r in compiled["rules"]
        ]
        self.llm_hosts = [h.lower() for h in compiled["llm_api_hosts"]]
        self.deny_ip_literals = bool(compiled.get("deny_ip_literals", True))
        self.deny_private_addresses = bool(compiled.get("deny_private_addresses", True))
        self.private_hosts = [h.lower() for h in compiled.get("private_hosts", [])]
        hub = compiled["hub"]
        self.hub_hosts = {h.lower() for h in hub["hosts"]}
        self.storage_hosts = [h.lower() for h in hub["storage_hosts"]]
        self.viewer_hosts = {h.lower() for h in hub.get("viewer_hosts", [])}
        self.models = {m.lower() for m in hub["models"]}
        self.base_model = hub["base_model"]
        self.instruct_twin = (hub.get("instruct_twin") or "").lower()
        self.datasets = [
            _RepoRule(d["repo"].lower(), _regex(d.get("files")), d["reason"]) for d in compiled["datasets"]
        ]
        self.github = [_RepoRule(g["repo"].lower(), _regex(g.get("path")), g["reason"]) for g in compiled["github"]]
        self.packages = {_normalize_package(p["name"]): p["reason"] for p in compiled["packages"]}
        self.hash_suffixes = tuple(s.lower() for s in compiled["hash_suffixes"])
        # (host, path) of storage URLs an allowed hub request redirected to -> (repo, file) it was for.
        self.approved: dict[tuple[str, str], tuple[str | None, str | None]] = {}

    # -- entry points ---------------------------------------------------------------------------------------------

    def connect(self, host: str, port: int) -> Verdict:
        """A CONNECT: denied here only when every request to the host would be (no TLS interception needed)."""
        host = _host(host)
        if self.deny_ip_literals and _is_ip(host):
            return _ip_literal(host)
        for rule in self.rules:
            if _host_match(host, rule.host):
                if rule.path is None:
                    return Verdict(rule.allow, rule.name, rule.reason)
                break
        else:
            if any(_host_match(host, pattern) for pattern in self.llm_hosts):
                return _llm(host)
        return Verdict(True, "tunnel")

    def request(self, method: str, host: str, path: str, query: str = "") -> Verdict:
        host = _host(host)
        path = normalize_path(path)
        if self.deny_ip_literals and _is_ip(host):
            return _ip_literal(host)
        for rule in self.rules:
            if _host_match(host, rule.host) and (rule.path is None or rule.path.search(path)):
                return Verdict(rule.allow, rule.name, rule.reason, hashed=self._suffix(path))
        if any(_host_match(host, pattern) for pattern in self.llm_hosts):
            return _llm(host)
        if host in self.hub_hosts:
            return self._hub(path)
        if any(_host_match(host, pattern) for pattern in self.storage_hosts):
            return self._storage(host, path)
        if host in self.viewer_hosts:
            return self._viewer(query)
        if host in GITHUB_HOSTS:
            return self._github(host, path)
        if host in PYPI_HOSTS:
            return self._pypi(host, path)
        return Verdict(True, "default", hashed=self._suffix(path))

    def destination(self, host: str, addresses: list[str]) -> Verdict:
        """After the proxy's DNS lookup: a name leading to the host's own or a private network (the harness's
        services, cloud metadata, the cluster) is refused unless listed in private_hosts."""
        host = _host(host)
        if self.deny_private_addresses and not any(_host_match(host, p) for p in self.private_hosts):
            for address in addresses:
                if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
                    return Verdict(False, "private-address", f"{host} resolves to {address}, a local or private "
                                   "address")
        return Verdict(True, "destination")

    def approve_redirect(self, location: str, from_host: str, verdict: Verdict) -> None:
        """An allowed hub request redirected to `location`: a storage URL there becomes fetchable once."""
        url = urlsplit(urljoin(f"https://{from_host}/", location))
        host = _host(url.hostname or "")
        if any(_host_match(host, pattern) for pattern in self.storage_hosts):
            self.approved[(host, normalize_path(url.path))] = (verdict.repo, verdict.file)

    def approve_lfs_batch(self, body: bytes, verdict: Verdict) -> None:
        """A git-lfs batch answer of an allowed repo lists the storage URLs of its objects."""
        try:
            objects = json.loads(body).get("objects", [])
        except (ValueError, AttributeError):
            return
        for obj in objects:
            href = ((obj.get("actions") or {}).get("download") or {}).get("href")
            if isinstance(href, str):
                url = urlsplit(href)
                host = _host(url.hostname or "")
                if any(_host_match(host, pattern) for pattern in self.storage_hosts):
                    self.approved[(host, normalize_path(url.path))] = (verdict.repo, obj.get("oid"))

    # -- the hub --------------------------------------------------------------------------------------------------

    def _hub(self, path: str) -> Verdict:
        target = hub_target(path)
        if target is None:
            return Verdict(True, "hub")
        kind, repo, rest, git = target
        lowered = repo.lower()
        file = _resolved_file(rest)
        hashed = file is not None or self._suffix(path)
        label = f"{kind}/{repo}"
        if kind == "models":
            if lowered in self.models:
                return Verdict(True, "hub-model", repo=label, file=file, hashed=hashed)
            if lowered == self.instruct_twin:
                reason = f"{repo} is the instruct twin of the base model {self.base_model}: agents may not use it"
            else:
                reason = (f"{repo} is not the run's base model {self.base_model}: only the base model may be "
                          "fetched from the hub")
            return Verdict(False, "hub-model", reason, repo=label, file=file)
        if kind == "datasets":
            for rule in self.datasets:
                if not fnmatch.fnmatchcase(lowered, rule.repo):
                    continue
                if rule.path is None:
                    return Verdict(False, "hub-dataset", f"{repo}: {rule.reason}", repo=label, file=file)
                if git:
                    return Verdict(False, "hub-dataset", f"{repo}: {rule.reason}; a git clone would include it, "
                                   "download the other files one by one", repo=label, file=file)
                if rule.path.search(rest):
                    return Verdict(False, "hub-dataset", f"{repo} ({rest}): {rule.reason}", repo=label, file=file)
            return Verdict(True, "hub-dataset", repo=label, file=file, hashed=hashed)
        return Verdict(True, "hub", repo=label, file=file, hashed=hashed)

    def _storage(self, host: str, path: str) -> Verdict:
        origin = self.approved.get((host, path))
        if origin is None:
            return Verdict(False, "hub-storage", "hub storage URL that no allowed hub request redirected to")
        return Verdict(True, "hub-storage", repo=origin[0], file=origin[1], hashed=True)

    def _viewer(self, query: str) -> Verdict:
        """The dataset viewer API serves rows: `/rows?dataset=ORG/NAME&config=...&split=test`."""
        params = parse_qs(query)
        dataset = (params.get("dataset") or [""])[0]
        split = (params.get("split") or [""])[0]
        label = f"datasets/{dataset}" if dataset else None
        for rule in self.datasets:
            if dataset and fnmatch.fnmatchcase(dataset.lower(), rule.repo):
                if rule.path is None or (split and rule.path.search(split)):
                    return Verdict(False, "hub-dataset", f"{dataset} ({split or 'all splits'}): {rule.reason}",
                                   repo=label)
        return Verdict(True, "hub-dataset", repo=label)

    # -- GitHub and PyPI ------------------------------------------------------------------------------------------

    def _github(self, host: str, path: str) -> Verdict:
        target = github_target(host, path)
        if target is None:
            return Verdict(True, "github")
        repo, inner, archive = target
        for rule in self.github:
            if not fnmatch.fnmatchcase(repo.lower(), rule.repo):
                continue
            if rule.path is None:
                return Verdict(False, "github", f"{repo}: {rule.reason}")
            if archive:
                return Verdict(False, "github", f"{repo}: {rule.reason}; a download of the whole repository "
                               "includes it")
            if inner is not None and rule.path.search(inner):
                return Verdict(False, "github", f"{repo} ({inner}): {rule.reason}")
        return Verdict(True, "github", hashed=self._suffix(path))

    def _pypi(self, host: str, path: str) -> Verdict:
        segments = [s for s in path.split("/") if s]
        if host == "files.pythonhosted.org":
            name = _normalize_package(segments[-1]) if segments else ""
            for package, reason in self.packages.items():
                if name.startswith(package + "-") and name[len(package) + 1 : len(package) + 2].isdigit():
                    return Verdict(False, "pypi", f"PyPI package {package}: {reason}")
            return Verdict(True, "pypi", hashed=self._suffix(path))
        if len(segments) >= 2 and segments[0] in ("simple", "pypi", "project"):
            package = _normalize_package(segments[1])
            if package in self.packages:
                return Verdict(False, "pypi", f"PyPI package {package}: {self.packages[package]}")
        return Verdict(True, "pypi")

    def _suffix(self, path: str) -> bool:
        return path.lower().endswith(self.hash_suffixes)


def hub_target(path: str) -> tuple[str, str, str, bool] | None:
    """(kind, repo id, rest of the path, git protocol) for a hub URL path, None for pages that are no repository.

    Covers `/ORG/NAME/...` (models), `/datasets/ORG/NAME/...`, `/spaces/...`, `/api/{models,datasets,spaces}/...`,
    `/api/resolve-cache/{kind}/...`, legacy ids without organisation and git's `/ORG/NAME.git/...`.
    """
    segments = [s for s in path.split("/") if s]
    if not segments:
        return None
    plain_model = False
    if segments[0] == "api":
        if len(segments) >= 3 and segments[1] == "resolve-cache" and segments[2] in HUB_KINDS:
            kind, segments = segments[2], segments[3:]
        elif len(segments) >= 2 and segments[1] in HUB_KINDS:
            kind, segments = segments[1], segments[2:]
        else:
            return None
    elif segments[0] in ("datasets", "spaces"):
        kind, segments = segments[0], segments[1:]
    elif segments[0] in HUB_RESERVED:
        return None
    else:
        kind, plain_model = "models", True
    if not segments or (plain_model and len(segments) == 1):
        return None  # a listing, or a user's or organisation's page
    if len(segments) >= 2 and segments[1] not in HUB_ACTIONS:
        name, rest = f"{segments[0]}/{segments[1]}", segments[2:]
    else:
        name, rest = segments[0], segments[1:]
    git = name.endswith(".git") or (bool(rest) and rest[0] in GIT_SEGMENTS)
    return kind, name.removesuffix(".git"), "/".join(rest), git


def github_target(host: str, path: str) -> tuple[str, str | None, bool] | None:
    """(OWNER/REPO, path inside the repo prefixed by the ref or None, whole-repository download) for a GitHub URL."""
    segments = [s for s in path.split("/") if s]
    if host == "media.githubusercontent.com" and segments[:1] == ["media"]:
        segments = segments[1:]
    if host == "api.github.com":
        if len(segments) < 3 or segments[0] != "repos":
            return None
        repo, rest = f"{segments[1]}/{segments[2]}", segments[3:]
        if rest[:1] == ["contents"]:
            return repo, "/".join(rest[1:]), False
        return repo, None, rest[:1] in (["tarball"], ["zipball"], ["git"])
    if len(segments) < 2:
        return None
    name = segments[1]
    repo, rest = f"{segments[0]}/{name.removesuffix('.git')}", segments[2:]
    if host in ("raw.githubusercontent.com", "media.githubusercontent.com"):
        return repo, "/".join(rest), False
    if host == "codeload.github.com":
        return repo, None, True
    if name.endswith(".git") or rest[:1] in (["archive"], *([s] for s in GIT_SEGMENTS)):
        return repo, None, True
    if rest[:1] in (["blob"], ["raw"], ["tree"], ["blame"], ["commits"], ["edit"]):
        return repo, "/".join(rest[1:]), False
    return repo, None, False


def normalize_path(path: str) -> str:
    """Percent-decoded, `..` resolved, duplicate slashes collapsed; no query."""
    path = unquote(path.split("?", 1)[0])
    return posixpath.normpath("/" + path.lstrip("/"))


def _resolved_file(rest: str) -> str | None:
    """The file of `resolve/REVISION/FILE` (also the resolve-cache form `REVISION/FILE` is not told apart)."""
    parts = rest.split("/")
    if len(parts) >= 3 and parts[0] == "resolve":
        return "/".join(parts[2:])
    return None


def _regex(pattern: str | None) -> re.Pattern | None:
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def _host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _host_match(host: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(host, pattern)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ip_literal(host: str) -> Verdict:
    return Verdict(False, "ip-literal", f"destination {host} is an IP address: name the host instead")


def _llm(host: str) -> Verdict:
    return Verdict(False, "llm-api", f"{host} is an LLM API: agents reach their model only through the "
                   "harness's metering proxy")


def _normalize_package(name: str) -> str:
    """PEP 503 name; for a distribution file name only the part before the version matters to the caller."""
    return re.sub(r"[-_.]+", "-", name).lower()
