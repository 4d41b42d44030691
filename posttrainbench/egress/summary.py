"""What a run's egress.jsonl says, in a few lists (for `ptb show RUN`)."""

import json
from collections import Counter
from pathlib import Path

from posttrainbench.egress.session import EGRESS_LOG

LIST_LIMIT = 200


def summarize_egress(run_dir: Path) -> dict | None:
    """Totals, requests per host, denied requests with their reasons, hashed downloads; None without a log.

    `would_deny` lists what an `open` run let through but `proxied` would have refused."""
    path = Path(run_dir) / EGRESS_LOG
    if not path.is_file():
        return None
    records, unreadable = [], 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                unreadable += 1  # a line cut short when the proxy died
    requests: Counter = Counter()
    denied_by_host: Counter = Counter()
    bytes_by_host: Counter = Counter()
    denied, would_deny, downloads, errors = [], [], [], 0
    for record in records:
        host = record.get("host") or "?"
        requests[host] += 1
        bytes_by_host[host] += record.get("bytes_in") or 0
        if record.get("allowed") is False:
            denied_by_host[host] += 1
            denied.append(_brief(record, "rule", "reason"))
        if record.get("would_deny"):
            would_deny.append(_brief(record, "rule", "would_deny"))
        if record.get("sha256"):
            downloads.append(_brief(record, "repo", "file", "bytes_in", "sha256"))
        if record.get("error"):
            errors += 1
    return {
        "log": str(path),
        "requests": len(records),
        "denied_count": len(denied),
        "errors": errors,
        "unreadable_lines": unreadable,
        "bytes_in": sum(bytes_by_host.values()),
        "bytes_out": sum(r.get("bytes_out") or 0 for r in records),
        "hosts": [
            {"host": host, "requests": count, "denied": denied_by_host[host], "bytes_in": bytes_by_host[host]}
            for host, count in requests.most_common()
        ],
        "denied": denied[:LIST_LIMIT],
        "would_deny": would_deny[:LIST_LIMIT],
        "downloads": downloads[:LIST_LIMIT],
        "more": {"denied": max(0, len(denied) - LIST_LIMIT), "would_deny": max(0, len(would_deny) - LIST_LIMIT),
                 "downloads": max(0, len(downloads) - LIST_LIMIT)},
    }


def _brief(record: dict, *extra: str) -> dict:
    keys = ("ts", "method", "host", "path", "status", *extra)
    return {key: record.get(key) for key in keys}
