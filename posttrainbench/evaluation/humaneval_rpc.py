"""Calls from HumanEval's test process into the candidate's process, carrying plain data only.

This file is stdlib-only: humaneval.py pastes its source into both sandboxed programs. The test process rebuilds
every value the candidate returns from JSON into builtin types (None, bool, int, float, str, bytes, list, tuple,
dict, set, frozenset), so no object of the candidate's making, with its own __eq__, ever reaches an assert.
"""

import json
import os
import select
import struct
import time

MAX_MESSAGE = 16 << 20


class CandidateError(Exception):
    """The candidate raised, returned something that is not plain data, or stopped answering."""


def encode(value):
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int):
        return {"i": str(int(value))}
    if isinstance(value, float):
        return {"f": repr(float(value))}
    if isinstance(value, str):
        return {"s": str(value)}
    if isinstance(value, bytes):
        return {"b": bytes(value).hex()}
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    if isinstance(value, list):
        return {"l": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, frozenset):
        return {"F": [encode(v) for v in value]}
    if isinstance(value, set):
        return {"S": [encode(v) for v in value]}
    # numpy scalars and arrays, the usual non-builtin results of correct solutions
    if hasattr(value, "tolist") and callable(value.tolist):
        return encode(value.tolist())
    if hasattr(value, "__index__"):
        return {"i": str(value.__index__())}
    raise TypeError(f"cannot return a {type(value).__name__} across the sandbox")


def decode(data):
    """Builtin values only: whatever the candidate sent, the result compares like plain Python data."""
    if data is None or type(data) is bool:
        return data
    if type(data) is not dict or len(data) != 1:
        raise CandidateError("malformed value")
    (tag, raw), = data.items()
    if tag == "i":
        return int(str(raw))
    if tag == "f":
        return float(str(raw))
    if tag == "s":
        return str(raw)
    if tag == "b":
        return bytes.fromhex(str(raw))
    items = [decode(v) for v in raw] if tag in "tlFS" else None
    if tag == "t":
        return tuple(items)
    if tag == "l":
        return list(items)
    if tag == "F":
        return frozenset(items)
    if tag == "S":
        return set(items)
    if tag == "d":
        return {decode(k): decode(v) for k, v in raw}
    raise CandidateError(f"unknown value tag {tag!r}")


def send(fd, message):
    body = json.dumps(message).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data):]


def receive(fd, deadline=None):
    header = _read_exactly(fd, 4, deadline)
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE:
        raise CandidateError("reply too large")
    return json.loads(_read_exactly(fd, size, deadline))


def _read_exactly(fd, size, deadline):
    chunks = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise CandidateError("the candidate did not answer in time")
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise CandidateError("the candidate's process ended")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def serve(namespace, entry_point, requests, replies):
    """The candidate side: answer each call with the function's result or the exception it raised."""
    while True:
        try:
            call = receive(requests)
        except CandidateError:
            return
        try:
            function = namespace[entry_point]
            result = function(*decode(call["args"]), **decode(call["kwargs"]))
            message = {"ok": encode(result)}
        except Exception as exc:  # reported to the test process, where it fails the call like it would in-process
            message = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        send(replies, message)


class Remote:
    """The test side: a callable that stands in for the candidate's function."""

    def __init__(self, requests, replies, deadline):
        self.requests, self.replies, self.deadline = requests, replies, deadline

    def __call__(self, *args, **kwargs):
        send(self.requests, {"args": encode(args), "kwargs": encode(kwargs)})
        reply = receive(self.replies, self.deadline)
        if type(reply) is not dict:
            raise CandidateError("malformed reply")
        if "error" in reply:
            raise CandidateError(str(reply["error"]))
        return decode(reply.get("ok"))
