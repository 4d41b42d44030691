"""One trajectory format for every scaffold, converted from the CLI's stdout in the agent log.

Each event is one JSON line: `t` (ISO time), `step` (1, 2, ... in order), `kind` (assistant | tool_call |
tool_result | output | error | result) and, where they apply, `text`, `tool`, `input`, `output` (truncated), `tokens`
({input, cached, output}), `cost_usd`, `is_error`, `source`. Lines of the log that are not the CLI's JSON
(stderr warnings) are left out. Provider errors the metering proxy retried become `error` events, and the
proxy's totals a final `result` event with source "proxy".
"""

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from posttrainbench.egress.metering import read_log

MAX_OUTPUT = 2000
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?)\] ?")


def _clip(value: object, limit: int = MAX_OUTPUT) -> object:
    if isinstance(value, str) and len(value) > limit:
        half = limit // 2
        return f"{value[:half]}\n[... {len(value) - limit} characters cut ...]\n{value[-half:]}"
    if isinstance(value, dict):
        return {key: _clip(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip(item, limit) for item in value]
    return value


def _event(t: str | None, kind: str, **fields) -> dict:
    event = {"t": t, "step": 0, "kind": kind}
    event.update({key: value for key, value in fields.items() if value is not None})
    for key in ("output", "input", "text"):
        if key in event:
            event[key] = _clip(event[key])
    return event


def _lines(log: str) -> Iterator[tuple[str | None, dict]]:
    """(time, JSON object) of each line of the log that holds one. The CLI's own timestamp, where the line has
    one (ISO or epoch milliseconds), is finer than the sandbox's whole-second stamp."""
    for raw in log.splitlines():
        match = _STAMP.match(raw)
        t = match.group(1) if match else None
        body = raw[match.end():] if match else raw
        if not body.startswith("{"):
            continue
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        own = data.get("timestamp")
        if isinstance(own, int | float) and own > 1e12:
            t = datetime.fromtimestamp(own / 1000, timezone.utc).isoformat(timespec="milliseconds")
        elif isinstance(own, str) and _parse_time(own):
            t = own
        yield t, data


def _tokens(input_tokens=None, cached=None, output=None) -> dict | None:
    if input_tokens is None and output is None:
        return None
    return {"input": input_tokens or 0, "cached": cached or 0, "output": output or 0}


def _block_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content)
    return json.dumps(content)


def claude_events(log: str) -> list[dict]:
    events, tools = [], {}
    for t, data in _lines(log):
        kind = data.get("type")
        if kind == "assistant":
            for block in (data.get("message") or {}).get("content") or []:
                if block.get("type") == "text" and block.get("text"):
                    events.append(_event(t, "assistant", text=block["text"]))
                elif block.get("type") == "thinking" and block.get("thinking"):
                    events.append(_event(t, "assistant", text=block["thinking"], source="thinking"))
                elif block.get("type") == "tool_use":
                    tools[block.get("id")] = block.get("name")
                    events.append(_event(t, "tool_call", tool=block.get("name"), input=block.get("input")))
        elif kind == "user":
            content = (data.get("message") or {}).get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    events.append(_event(t, "tool_result", tool=tools.get(block.get("tool_use_id")),
                                         output=_block_text(block.get("content")), is_error=block.get("is_error") or None))
        elif kind == "result":
            usage = data.get("usage") or {}
            cached = usage.get("cache_read_input_tokens") or 0
            total_in = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
            events.append(_event(t, "result", text=data.get("result"), tokens=_tokens(total_in, cached, usage.get("output_tokens")),
                                 cost_usd=data.get("total_cost_usd"), is_error=data.get("is_error") or None, source="cli"))
    return events


def codex_events(log: str) -> list[dict]:
    events = []
    for t, data in _lines(log):
        kind = data.get("type")
        item = data.get("item") or {}
        itype = item.get("type")
        if kind == "item.started" and itype == "command_execution":
            events.append(_event(t, "tool_call", tool="exec_command", input={"cmd": item.get("command")}))
        elif kind == "item.completed":
            if itype == "agent_message":
                events.append(_event(t, "assistant", text=item.get("text")))
            elif itype == "reasoning":
                events.append(_event(t, "assistant", text=item.get("text"), source="reasoning"))
            elif itype == "command_execution":
                code = item.get("exit_code")
                events.append(_event(t, "tool_result", tool="exec_command", output=item.get("aggregated_output"),
                                     is_error=(code not in (0, None)) or None))
            elif itype == "error":
                events.append(_event(t, "error", text=item.get("message")))
            elif itype:
                # file_change, web_search, mcp_tool_call, todo_list: one event with what the item says.
                detail = {k: v for k, v in item.items() if k not in ("id", "type", "status")}
                events.append(_event(t, "tool_call", tool=itype, input=detail))
        elif kind == "turn.completed":
            usage = data.get("usage") or {}
            events.append(_event(t, "result", tokens=_tokens(usage.get("input_tokens"), usage.get("cached_input_tokens"),
                                                             usage.get("output_tokens")), source="cli"))
        elif kind == "turn.failed":
            events.append(_event(t, "error", text=(data.get("error") or {}).get("message")))
        elif kind == "error":
            events.append(_event(t, "error", text=data.get("message")))
    return events


def gemini_events(log: str) -> list[dict]:
    events, tools = [], {}
    for t, data in _lines(log):
        kind = data.get("type")
        if kind == "message" and data.get("role") == "assistant":
            last = events[-1] if events else None
            if data.get("delta") and last and last["kind"] == "assistant" and last.get("_open"):
                last["text"] += data.get("content") or ""
            else:
                events.append(_event(t, "assistant", text=data.get("content") or "", _open=True))
        elif kind == "tool_use":
            tools[data.get("tool_id")] = data.get("tool_name")
            events.append(_event(t, "tool_call", tool=data.get("tool_name"), input=data.get("parameters")))
        elif kind == "tool_result":
            output = data.get("output")
            if output is None and data.get("error"):
                output = (data["error"] or {}).get("message")
            events.append(_event(t, "tool_result", tool=tools.get(data.get("tool_id")), output=output,
                                 is_error=(data.get("status") != "success") or None))
        elif kind == "error":
            events.append(_event(t, "error", text=data.get("message")))
        elif kind == "result":
            stats = data.get("stats") or {}
            error = (data.get("error") or {}).get("message")
            events.append(_event(t, "result", text=error, tokens=_tokens(stats.get("input_tokens"), stats.get("cached"),
                                                                        stats.get("output_tokens")),
                                 is_error=(data.get("status") != "success") or None, source="cli"))
    for event in events:
        event.pop("_open", None)
        if event["kind"] == "assistant":
            event["text"] = _clip(event["text"])
    return events


def opencode_events(log: str) -> list[dict]:
    events = []
    total = {"input": 0, "cached": 0, "output": 0}
    cost, steps = 0.0, 0
    for t, data in _lines(log):
        kind = data.get("type")
        part = data.get("part") or {}
        if kind == "text" and part.get("text"):
            events.append(_event(t, "assistant", text=part["text"]))
        elif kind == "reasoning" and part.get("text"):
            events.append(_event(t, "assistant", text=part["text"], source="reasoning"))
        elif kind == "tool_use":
            state = part.get("state") or {}
            events.append(_event(t, "tool_call", tool=part.get("tool"), input=state.get("input")))
            output = state.get("output") if state.get("status") != "error" else state.get("error")
            events.append(_event(t, "tool_result", tool=part.get("tool"), output=output,
                                 is_error=(state.get("status") == "error") or None))
        elif kind == "step_finish":
            steps += 1
            tokens = part.get("tokens") or {}
            cache = tokens.get("cache") or {}
            total["cached"] += cache.get("read") or 0
            total["input"] += (tokens.get("input") or 0) + (cache.get("read") or 0) + (cache.get("write") or 0)
            total["output"] += tokens.get("output") or 0
            cost += part.get("cost") or 0.0
        elif kind == "error":
            error = data.get("error") or {}
            events.append(_event(t, "error", text=(error.get("data") or {}).get("message") or error.get("name")))
    if steps:
        last_t = events[-1]["t"] if events else None
        events.append(_event(last_t, "result", tokens=total, cost_usd=round(cost, 6), source="cli"))
    return events


MAX_OUTPUT_EVENTS = 2000
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)(?::|$)")


def output_events(log: str) -> list[dict]:
    """A program without a structured transcript (the reference agent, a command agent): what it printed, one
    `output` event per second of output (an exception's conclusion as an `error`). Past MAX_OUTPUT_EVENTS events
    the earliest are dropped: the end of a run says more than its start."""
    events: list[dict] = []
    for raw in log.splitlines():
        match = _STAMP.match(raw)
        t = match.group(1) if match else None
        line = (raw[match.end():] if match else raw).rstrip()
        if not line.strip():
            continue
        if _EXCEPTION.match(line.strip()):
            events.append(_event(t, "error", text=line.strip(), is_error=True))
        elif events and events[-1]["kind"] == "output" and events[-1]["t"] == t:
            events[-1]["text"] = _clip(events[-1]["text"] + "\n" + line)
        else:
            events.append(_event(t, "output", text=line))
    return events[-MAX_OUTPUT_EVENTS:]


PARSERS = {"claude": claude_events, "codex": codex_events, "gemini": gemini_events, "opencode": opencode_events,
           "reference": output_events, "command": output_events}


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def metering_events(calls: list[dict]) -> list[dict]:
    """An error event per failed upstream attempt, and one result event with the proxy's totals."""
    events = []
    totals = {"input": 0, "cached": 0, "output": 0}
    cost, priced = 0.0, True
    for call in calls:
        for failure in call.get("failures", []):
            what = f"HTTP {failure['status']}" if failure.get("status") else failure.get("error")
            then = f"retried after {failure['delay_s']} s" if "delay_s" in failure else "gave up"
            events.append(_event(failure.get("t"), "error", text=f"{call.get('provider')} {what}: {then}",
                                 source="proxy"))
        totals["input"] += call.get("input_tokens", 0)
        totals["cached"] += call.get("cached_tokens", 0)
        totals["output"] += call.get("output_tokens", 0)
        if call.get("cost_usd") is not None:
            cost += call["cost_usd"]
        elif call.get("input_tokens"):
            priced = False
    if calls:
        end = max(_parse_time(c["t"]) + timedelta(seconds=c.get("latency_s") or 0) for c in calls)
        end = end.isoformat(timespec="milliseconds")
        events.append(_event(end, "result", text=f"{len(calls)} LLM calls metered", tokens=totals,
                             cost_usd=round(cost, 6) if priced else None, source="proxy"))
    return events


def build_trajectory(agent_log: Path, scaffold: str, metering_log: Path | None = None) -> list[dict]:
    """Events of a run in time order, closed by the proxy's totals."""
    text = Path(agent_log).read_text(errors="replace") if Path(agent_log).is_file() else ""
    events = PARSERS[scaffold](text) if scaffold in PARSERS else []
    # The CLI's events keep their order (a running maximum of their times); the proxy's retries slot in by time.
    keyed, last = [], datetime.min.replace(tzinfo=timezone.utc)
    for index, event in enumerate(events):
        last = max(last, _parse_time(event["t"]) or last)
        keyed.append((last, 0, index, event))
    summary = []
    if metering_log is not None:
        for index, event in enumerate(metering_events(read_log(metering_log))):
            if event["kind"] == "result":
                summary.append(event)  # the proxy's totals close the trajectory
            else:
                keyed.append((_parse_time(event["t"]) or last, 1, index, event))
    ordered = [item[3] for item in sorted(keyed, key=lambda item: item[:3])] + summary
    for step, event in enumerate(ordered, 1):
        event["step"] = step
    return ordered


def write_trajectory(events: list[dict], path: Path) -> None:
    Path(path).write_text("".join(json.dumps(event) + "\n" for event in events))


def render(events: list[dict]) -> str:
    """A readable transcript: one block per event."""
    out = []
    for event in events:
        t = (event.get("t") or "")[11:19]
        head = f"[{t}] #{event['step']} {event['kind']}"
        if event.get("tool"):
            head += f" {event['tool']}"
        if event.get("is_error"):
            head += " (error)"
        if event.get("source") in ("proxy", "reasoning", "thinking"):
            head += f" ({event['source']})"
        body = []
        if event.get("text"):
            body.append(str(event["text"]))
        if "input" in event:
            value = event["input"]
            command = value.get("command") or value.get("cmd") if isinstance(value, dict) else None
            body.append(f"$ {command}" if isinstance(command, str) else json.dumps(value, ensure_ascii=False))
        if event.get("output"):
            body.append(str(event["output"]))
        if event.get("tokens"):
            tokens = event["tokens"]
            line = f"tokens: {tokens['input']} in ({tokens['cached']} cached), {tokens['output']} out"
            if event.get("cost_usd") is not None:
                line += f", ${event['cost_usd']:.4f}"
            body.append(line)
        text = "\n".join(body)
        out.append(head + ("\n" + "\n".join("    " + line for line in text.splitlines()) if text else ""))
    return "\n".join(out) + "\n"


def working_seconds(started_at: str, ended_at: str, calls: list[dict]) -> float:
    """Wall time minus the time calls spent blocked on provider retries (overlapping retries counted once)."""
    start, end = _parse_time(started_at), _parse_time(ended_at)
    blocked = []
    for call in calls:
        begin = _parse_time(call.get("t"))
        if begin is None or not call.get("retry_s"):
            continue
        lo, hi = max(begin, start), min(begin + timedelta(seconds=call["retry_s"]), end)
        if hi > lo:
            blocked.append((lo, hi))
    blocked.sort()
    lost, current = 0.0, None
    for lo, hi in blocked:
        if current and lo <= current[1]:
            current = (current[0], max(current[1], hi))
            continue
        if current:
            lost += (current[1] - current[0]).total_seconds()
        current = (lo, hi)
    if current:
        lost += (current[1] - current[0]).total_seconds()
    return max((end - start).total_seconds() - lost, 0.0)
