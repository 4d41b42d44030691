"""Allow or deny one request of a sandboxed agent, from a compiled policy (plain JSON, see policy.compile_policy).

Standard library only: mitmproxy runs in an interpreter of its own (its pins clash with the project's) and loads
this file by path.

Order of checks, first match wins: IP literals and ports, explicit rules (per-run overrides first), LLM API hosts
and LLM API request shapes on any host, URLs carried inside the URL (proxies such as `ghproxy/https://...`), PyPI
package names and distribution files on any host, then the URL forms of the Hugging Face hub (models, datasets,
storage redirects, dataset viewer), GitHub and the hosts that serve GitHub repositories under their own names, and
hub URL forms on any other host (unlisted hub mirrors); anything else is allowed. Repository ids and paths are
compared case-insensitively, after percent-decoding (repeatedly), turning backslashes into slashes and resolving
`..`, as the servers themselves may treat them.
"""

import fnmatch
import ipaddress
import json
import posixpath
import re
import socket
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
REPOSITORY_CONTENT = ("resolve", "raw", "blob", "tree", "info", "git-upload-pack", "parquet", "paths-info")
GITHUB_HOSTS = ("github.com", "api.github.com", "codeload.github.com", "raw.githubusercontent.com",
                "media.githubusercontent.com")
# A distribution file: NAME-VERSION[-TAGS].EXT (sdists and wheels; wheels write the name with underscores).
DISTRIBUTION = re.compile(r"^([a-z0-9](?:[a-z0-9._-]*?[a-z0-9])?)-(\d[^/]*?)\.(whl|tar\.gz|tar\.bz2|tgz|zip|egg)$",
                          re.IGNORECASE)
EMBEDDED_DEPTH = 2  # a URL inside a URL inside a URL is judged; deeper nesting is refused


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


class LlmShapes:
    """Requests that look like an LLM inference API, whatever the host: compiled from the policy's
    `llm_api_shapes` (name, path regex, optional host glob and methods)."""

    def __init__(self, shapes: list[dict]) -> None:
        self.shapes = [(s["name"], re.compile(s["path"], re.IGNORECASE), (s.get("host") or "*").lower(),
                        {m.upper() for m in s.get("methods") or ["POST"]}) for s in shapes]

    def match(self, method: str, host: str, path: str) -> str | None:
        """The name of the API `method host path` looks like, or None."""
        host = _host(host)
        path = normalize_path(path)
        for name, pattern, host_glob, methods in self.shapes:
            if method.upper() in methods and _host_match(host, host_glob) and pattern.search(path):
                return name
        return None


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
        self.llm_hosts = _globs(compiled["llm_api_hosts"])
        self.deny_ip_literals = bool(compiled.get("deny_ip_literals", True))
        self.deny_private_addresses = bool(compiled.get("deny_private_addresses", True))
        self.private_hosts = _globs(compiled.get("private_hosts", []))
        hub = compiled["hub"]
        self.hub_hosts = {h.lower() for h in hub["hosts"]}
        # Other names under the hub's domains: their repository downloads are judged as the hub's, their other
        # pages (the forum, status) are not repositories.
        self.hub_subdomains = _globs([f"*.{h}" for h in hub["hosts"] if not h.startswith("www.")])
        self.storage_hosts = _globs(hub["storage_hosts"])
        self.viewer_hosts = {h.lower() for h in hub.get("viewer_hosts", [])}
        self.models = {m.lower() for m in hub["models"]}
        self.base_model = hub["base_model"]
        self.instruct_twin = (hub.get("instruct_twin") or "").lower()
        self.datasets = [
            _RepoRule(d["repo"].lower(), _regex(d.get("files")), d["reason"]) for d in compiled["datasets"]
        ]
        self.github = [_RepoRule(g["repo"].lower(), _regex(g.get("path")), g["reason"]) for g in compiled["github"]]
        self.packages = [(_normalize_package(p["name"]), p["reason"]) for p in compiled["packages"]]
        self.connect_ports = set(compiled.get("connect_ports") or (80, 443))
        self.shapes = LlmShapes(compiled.get("llm_api_shapes", []))
        self.github_mirrors = [(m["host"].lower(), m["form"]) for m in compiled.get("github_mirrors", [])]
        self.weight_files = _regex(hub.get("weight_files"))
        # Hosts whose URLs, carried inside another URL, are judged too (besides the hub and GitHub).
        self.known_sites = _globs([*hub["storage_hosts"], *compiled["llm_api_hosts"],
                                   *(m["host"] for m in compiled.get("github_mirrors", [])),
                                   *(r["host"] for r in compiled["rules"] if not r.get("allow"))])
        self.hash_suffixes = tuple(s.lower() for s in compiled["hash_suffixes"])
        # (host, path) of storage URLs an allowed hub request redirected to -> (repo, file) it was for.
        self.approved: dict[tuple[str, str], tuple[str | None, str | None]] = {}

    # -- entry points ---------------------------------------------------------------------------------------------

    def connect(self, host: str, port: int) -> Verdict:
        """A CONNECT: denied here only when every request to the host would be (no TLS interception needed)."""
        host = _host(host)
        if self.deny_ip_literals and _is_ip(host):
            return _ip_literal(host)
        if port not in self.connect_ports:
            return self._port(host, port)
        for rule in self.rules:
            if _host_match(host, rule.host):
                if rule.path is None:
                    return Verdict(rule.allow, rule.name, rule.reason)
                break
        else:
            if self.llm_hosts.match(host):
                return _llm(host)
        return Verdict(True, "tunnel")

    def request(self, method: str, host: str, path: str, query: str = "", port: int | None = None,
                depth: int = 0) -> Verdict:
        """One request; `port` only for plain HTTP (a tunnel's port was checked at CONNECT)."""
        host = _host(host)
        path = normalize_path(path)
        if self.deny_ip_literals and _is_ip(host):
            return _ip_literal(host)
        if port is not None and port not in self.connect_ports:
            return self._port(host, port)
        for rule in self.rules:
            if _host_match(host, rule.host) and (rule.path is None or rule.path.search(path)):
                return Verdict(rule.allow, rule.name, rule.reason, hashed=self._suffix(path))
        if self.llm_hosts.match(host):
            return _llm(host)
        shape = self.shapes.match(method, host, path)
        if shape:
            return Verdict(False, "llm-api", f"{method} {host}{path} looks like an LLM API ({shape}): agents reach "
                           "their model only through the harness's metering proxy")
        inner = self._embedded(method, host, path, query, depth)
        if inner is not None:
            return inner
        package = self._package(path)
        if package is not None:
            return package
        if host in self.hub_hosts:
            return self._hub(path)
        if self.storage_hosts.match(host):
            return self._storage(host, path)
        if host in self.viewer_hosts:
            return self._viewer(query)
        if host in GITHUB_HOSTS:
            return self._github(host, path)
        for pattern, form in self.github_mirrors:
            if _host_match(host, pattern):
                return self._github_mirror(host, form, path)
        target = mirror_target(path)
        if target is None and self.hub_subdomains.match(host):
            target = _repository_download(hub_target(path))
        if target is not None:
            verdict = self._hub_repo(*target, hashed=self._suffix(path))
            if not verdict.allowed:
                verdict.reason += f" (served by {host}, a copy of the hub)"
            return verdict
        return Verdict(True, "default", hashed=self._suffix(path))

    def destination(self, host: str, addresses: list[str]) -> Verdict:
        """After the proxy's DNS lookup: a name leading to the host's own or a private network (the harness's
        services, cloud metadata, the cluster) is refused unless listed in private_hosts."""
        host = _host(host)
        if self.deny_private_addresses and not self.private_hosts.match(host):
            for address in addresses:
                if not _global(address):
                    return Verdict(False, "private-address", f"{host} resolves to {address}, a local or private "
                                   "address")
        return Verdict(True, "destination")

    def unresolved(self, host: str, error: str) -> Verdict:
        """The proxy's own lookup failed: refused, since where a later lookup leads was never checked."""
        return Verdict(False, "unresolved", f"cannot resolve {_host(host)} ({error}); not connecting to a name "
                       "whose address was not checked")

    def approve_redirect(self, location: str, from_host: str, verdict: Verdict) -> None:
        """An allowed hub request redirected to `location`: a storage URL there becomes fetchable once."""
        url = urlsplit(urljoin(f"https://{from_host}/", location))
        host = _host(url.hostname or "")
        if self.storage_hosts.match(host):
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
                if self.storage_hosts.match(host):
                    self.approved[(host, normalize_path(url.path))] = (verdict.repo, obj.get("oid"))

    # -- the hub --------------------------------------------------------------------------------------------------

    def _hub(self, path: str) -> Verdict:
        target = hub_target(path)
        if target is None:
            return Verdict(True, "hub")
        return self._hub_repo(*target, hashed=self._suffix(path))

    def _hub_repo(self, kind: str, repo: str, rest: str, git: bool, hashed: bool = False) -> Verdict:
        lowered = repo.lower()
        file = _resolved_file(rest)
        hashed = hashed or file is not None
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
        if self.weight_files is not None and self.weight_files.search(rest):
            return Verdict(False, f"hub-{kind.removesuffix('s')}", f"{repo} ({rest}): model weights outside a "
                           "model repository; only the base model's weights may be fetched", repo=label, file=file)
        if kind == "datasets":
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

    def _github_mirror(self, host: str, form: str, path: str) -> Verdict:
        """A host that serves GitHub repositories under its own name: judged as the GitHub URL it stands for."""
        for github_host, github_path in github_mirror_urls(form, path):
            verdict = self._github(github_host, normalize_path(github_path))
            if not verdict.allowed:
                verdict.reason += f" (served by {host}, a copy of GitHub)"
                return verdict
        return Verdict(True, "github-mirror", hashed=self._suffix(path))

    def _package(self, path: str) -> Verdict | None:
        """A denied PyPI package, wherever it is served: an index page (`/simple/NAME/`, `/pypi/NAME/json`,
        `/project/NAME/`, also under a mirror's prefix) or a distribution file named after it."""
        if not self.packages:
            return None
        segments = [s for s in path.split("/") if s]
        names = [segments[i + 1] for i, s in enumerate(segments[:-1]) if s.lower() in ("simple", "pypi", "project")]
        match = DISTRIBUTION.match(segments[-1]) if segments else None
        if match:
            names.append(match.group(1))
        for name in names:
            normal = _normalize_package(name)
            for package, reason in self.packages:
                if fnmatch.fnmatchcase(normal, package):
                    return Verdict(False, "pypi", f"Python package {normal}: {reason}")
        return None

    def _embedded(self, method: str, host: str, path: str, query: str, depth: int) -> Verdict | None:
        """A URL carried in the path or the query (`https://ghproxy.example/https://raw.githubusercontent.com/...`,
        `/?url=...`, `/raw.githubusercontent.com/...`) is judged too: a denied one denies the whole request."""
        for inner_host, inner_path, inner_query in self._carried(host, path, query):
            if depth >= EMBEDDED_DEPTH:
                return Verdict(False, "embedded-url", f"{host} carries URLs nested too deep to check")
            verdict = self.request(method, inner_host, inner_path, inner_query, depth=depth + 1)
            if not verdict.allowed:
                verdict.reason += f" (requested through {host})"
                return verdict
        return None

    def _carried(self, host: str, path: str, query: str) -> list[tuple[str, str, str]]:
        found = []
        segments = path.split("/")[1:]
        for index, segment in enumerate(segments):
            lowered = segment.lower()
            if lowered in ("http:", "https:") and index + 1 < len(segments):
                found.append((segments[index + 1], "/" + "/".join(segments[index + 2:]), ""))
                break
            if "." in lowered and lowered != host and self._known_site(lowered):
                found.append((lowered, "/" + "/".join(segments[index + 1:]), ""))
                break
        for values in parse_qs(query).values():
            for value in values:
                url = urlsplit(value.strip())
                if url.scheme.lower() in ("http", "https") and url.hostname:
                    found.append((url.hostname, url.path or "/", url.query))
        return found

    def _known_site(self, host: str) -> bool:
        host = host.split(":", 1)[0]
        return (host in self.hub_hosts or host in GITHUB_HOSTS or host in self.viewer_hosts
                or self.known_sites.match(host) is not None)

    def _port(self, host: str, port: int) -> Verdict:
        ports = ", ".join(str(p) for p in sorted(self.connect_ports))
        return Verdict(False, "port", f"{host}:{port}: only web ports ({ports}) are reachable")

    def _suffix(self, path: str) -> bool:
        return path.lower().endswith(self.hash_suffixes)


def hub_target(path: str) -> tuple[str, str, str, bool] | None:
    """(kind, repo id, rest of the path, git protocol) for a hub URL path, None for pages that are no repository.

    Covers `/ORG/NAME/...` and `/models/ORG/NAME/...` (models), `/datasets/ORG/NAME/...`, `/spaces/...`,
    `/api/{models,datasets,spaces}/...`, `/api/resolve-cache/{kind}/...`, legacy ids without organisation and
    git's `/ORG/NAME.git/...`.
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
    elif segments[0] in HUB_KINDS:
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


def mirror_target(path: str) -> tuple[str, str, str, bool] | None:
    """The hub's download and API forms anywhere in a path, as a mirror of the hub serves them (perhaps under a
    prefix): `.../[datasets/|spaces/|models/]ORG/NAME/resolve/REV/FILE` and `.../api/{models,datasets,spaces,
    resolve-cache}/...`."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    for index, segment in enumerate(lowered):
        if segment == "api" and index + 1 < len(lowered) and lowered[index + 1] in (*HUB_KINDS, "resolve-cache"):
            target = hub_target("/" + "/".join(segments[index:]))
            if target is not None:
                return target
        if segment == "resolve" and index >= 2 and len(segments) > index + 2:
            kind = lowered[index - 3] if index >= 3 and lowered[index - 3] in HUB_KINDS else "models"
            return kind, f"{segments[index - 2]}/{segments[index - 1]}", "/".join(segments[index:]), False
    return None


def github_mirror_urls(form: str, path: str) -> list[tuple[str, str]]:
    """The GitHub URLs (host, path) that a mirror's path stands for, by the mirror's URL form: `github` (same
    paths as github.com), `raw` (as raw.githubusercontent.com), `jsdelivr` (`/gh/OWNER/REPO@REF/PATH`, also
    `/combine/gh/...,gh/...`) or `statically` (`/gh/OWNER/REPO/REF/PATH`)."""
    if form == "github":
        return [("github.com", path)]
    if form == "raw":
        return [("raw.githubusercontent.com", path)]
    segments = [s for s in path.split("/") if s]
    if form == "statically":
        return [("raw.githubusercontent.com", "/" + "/".join(segments[1:]))] if segments[:1] == ["gh"] else []
    if segments[:1] == ["combine"]:
        parts = ["/" + part.strip("/") for part in "/".join(segments[1:]).split(",")]
    else:
        parts = [path]
    urls = []
    for part in parts:
        pieces = [s for s in part.split("/") if s]
        if len(pieces) >= 3 and pieces[0] == "gh":
            repo, _, ref = pieces[2].partition("@")
            urls.append(("raw.githubusercontent.com", "/" + "/".join([pieces[1], repo, ref or "HEAD", *pieces[3:]])))
    return urls


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
    """Percent-decoded until nothing changes, backslashes made slashes, `..` resolved, duplicate slashes
    collapsed; no query. Servers differ in how much of this they do: judging the most decoded form fails closed."""
    path = path.split("?", 1)[0]
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/")
    return posixpath.normpath("/" + path.lstrip("/"))


def _repository_download(target: tuple[str, str, str, bool] | None) -> tuple[str, str, str, bool] | None:
    """The target of a hub URL that fetches repository content (files, trees, git), else None."""
    if target is not None and (target[3] or target[2].split("/", 1)[0] in REPOSITORY_CONTENT):
        return target
    return None


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


def _globs(patterns: list[str]) -> re.Pattern:
    """One regex for a list of host globs (matching none when the list is empty)."""
    return re.compile("|".join(fnmatch.translate(p.lower()) for p in patterns) or "(?!)")


def _host_match(host: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(host, pattern)


def _is_ip(host: str) -> bool:
    """Also the forms that resolvers take as IPv4 addresses: `2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            socket.inet_aton(host)
        except (OSError, ValueError):
            return False
    return True


def _global(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not embedded.is_global:
            return False
    return ip.is_global


def _ip_literal(host: str) -> Verdict:
    return Verdict(False, "ip-literal", f"destination {host} is an IP address: name the host instead")


def _llm(host: str) -> Verdict:
    return Verdict(False, "llm-api", f"{host} is an LLM API: agents reach their model only through the "
                   "harness's metering proxy")


def _normalize_package(name: str) -> str:
    """PEP 503 name; for a distribution file name only the part before the version matters to the caller."""
    return re.sub(r"[-_.]+", "-", name).lower()
