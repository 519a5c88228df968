"""``spansignals alerts …``: the management API from the command line.

Subcommands: ``list`` (``--state``), ``ack FINGERPRINT`` (``--by``), ``resolve FINGERPRINT``,
``silence add -m KEY=VALUE … (--duration 2h | --until ISO) [--comment] [--author]``,
``silence list``, ``silence delete ID``, ``maintenance add NAME (--from ISO --to ISO |
--weekdays tue,thu --start HH:MM --end HH:MM [--timezone TZ]) [-m KEY=VALUE …]``,
``maintenance list``. ``--json`` prints the API's answer as is.

The API is found at ``--url`` (default: ``SPANSIGNALS_ALERTS_URL``, else
``http://127.0.0.1:9466``) with the bearer token ``--token`` (default:
``SPANSIGNALS_ALERTS_TOKEN``). Exit codes: 0 done, 1 the API refused or is unreachable, 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["ENV_TOKEN", "ENV_URL", "add_arguments", "run"]

ENV_URL = "SPANSIGNALS_ALERTS_URL"
ENV_TOKEN = "SPANSIGNALS_ALERTS_TOKEN"
DEFAULT_URL = "http://127.0.0.1:9466"


class ApiError(Exception):
    """The API answered with an error, or could not be reached."""


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    url = (args.url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/") + path
    token = args.token or os.environ.get(ENV_TOKEN)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except Exception:
            message = exc.reason
        raise ApiError(f"HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the management API at {url.split('/api/')[0]}: {reason}") from None
    return json.loads(raw) if raw else None


def _pairs(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"matcher must be KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _print_alerts(alerts: list[dict[str, Any]]) -> None:
    if not alerts:
        print("no alerts")
        return
    print(f"{'FINGERPRINT':<17} {'STATE':<9} {'SEVERITY':<9} {'ALERTNAME':<34} {'NOTE':<20} LABELS")
    for a in alerts:
        labels = a["labels"]
        note = a.get("muted_by") or (f"acked by {a['acknowledged_by']}" if a.get("acknowledged_by") else "")
        rest = ",".join(
            f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity", "priority")
        )
        print(
            f"{a['fingerprint']:<17} {a['state']:<9} {labels.get('severity', ''):<9} "
            f"{labels.get('alertname', ''):<34} {note[:20]:<20} {rest}"
        )


def _cmd(args: argparse.Namespace) -> Any:
    what = args.alerts_command
    if what == "list":
        query = f"?state={args.state}" if args.state else ""
        result = _call(args, "GET", f"/api/v1/alerts{query}")
        return result if args.json else _print_alerts(result["alerts"])
    if what == "ack":
        by = args.by or getpass.getuser()
        result = _call(args, "POST", f"/api/v1/alerts/{args.fingerprint}/ack", {"by": by})
        return result if args.json else print(f"acknowledged {args.fingerprint} as {by}")
    if what == "resolve":
        result = _call(args, "POST", f"/api/v1/alerts/{args.fingerprint}/resolve", {})
        return result if args.json else print(f"resolved {args.fingerprint}")
    if what == "silence":
        if args.silence_command == "add":
            body: dict[str, Any] = {
                "matchers": _pairs(args.match),
                "comment": args.comment,
                "author": args.author or getpass.getuser(),
            }
            if args.until:
                body["ends_at"] = args.until
            else:
                body["duration"] = args.duration
            result = _call(args, "POST", "/api/v1/silences", body)
            return result if args.json else print(f"silence {result['id']} added")
        if args.silence_command == "delete":
            _call(args, "DELETE", f"/api/v1/silences/{args.id}")
            return None if args.json else print(f"silence {args.id} deleted")
        result = _call(args, "GET", "/api/v1/silences")
        if args.json:
            return result
        for s in result["silences"]:
            matchers = ",".join(f"{k}={v}" for k, v in s["matchers"].items())
            state = "active" if s["active"] else "inactive"
            print(f"{s['id']}  {state:<8} {matchers}  by {s['author']}: {s['comment']}")
        return None
    if what == "maintenance":
        if args.maintenance_command == "add":
            body = {"name": args.name, "match": _pairs(args.match)}
            if args.start_at or args.end_at:
                body.update(starts_at=args.start_at, ends_at=args.end_at)
            else:
                body["schedule"] = {
                    "weekdays": args.weekdays.split(",") if args.weekdays else None,
                    "start": args.start,
                    "end": args.end,
                    "timezone": args.timezone,
                }
                body["schedule"] = {k: v for k, v in body["schedule"].items() if v is not None}
            result = _call(args, "POST", "/api/v1/maintenance", body)
            return result if args.json else print(f"maintenance window {args.name} added")
        result = _call(args, "GET", "/api/v1/maintenance")
        if args.json:
            return result
        for m in result["maintenance"]:
            kind = "recurring" if m["recurring"] else "one-off"
            print(f"{m['name']:<24} {kind:<9} {'active' if m['active'] else 'inactive':<8} {m['match']}")
        return None
    raise ValueError("choose a subcommand: list, ack, resolve, silence, maintenance")


def run(args: argparse.Namespace) -> int:
    """Handler of ``spansignals alerts``; returns the exit code."""
    try:
        result = _cmd(args)
    except ApiError as exc:
        print(f"spansignals alerts: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"spansignals alerts: {exc}", file=sys.stderr)
        return 2
    if args.json and result is not None:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``alerts`` subcommand tree."""
    parser.add_argument("--url", help=f"management API base URL (default: ${ENV_URL} or {DEFAULT_URL})")
    parser.add_argument("--token", help=f"bearer token (default: ${ENV_TOKEN})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    sub = parser.add_subparsers(dest="alerts_command", metavar="ACTION")
    p = sub.add_parser("list", help="list alerts with their state")
    p.add_argument("--state", choices=["pending", "firing", "resolved"])
    p = sub.add_parser("ack", help="acknowledge an alert (stops escalation)")
    p.add_argument("fingerprint")
    p.add_argument("--by", help="who acknowledges (default: your user name)")
    p = sub.add_parser("resolve", help="resolve an alert by hand")
    p.add_argument("fingerprint")
    silence = sub.add_parser("silence", help="add, list or delete silences")
    ssub = silence.add_subparsers(dest="silence_command", metavar="ACTION")
    p = ssub.add_parser("add", help="silence alerts matching labels")
    p.add_argument("-m", "--match", action="append", required=True, metavar="KEY=VALUE")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--duration", default="1h", help="how long (default: 1h)")
    when.add_argument("--until", help="end time (ISO 8601)")
    p.add_argument("--comment", default="")
    p.add_argument("--author")
    ssub.add_parser("list", help="list silences")
    p = ssub.add_parser("delete", help="delete a silence")
    p.add_argument("id")
    maintenance = sub.add_parser("maintenance", help="add or list maintenance windows")
    msub = maintenance.add_subparsers(dest="maintenance_command", metavar="ACTION")
    p = msub.add_parser("add", help="add a one-off or weekly maintenance window")
    p.add_argument("name")
    p.add_argument("--from", dest="start_at", help="one-off start (ISO 8601)")
    p.add_argument("--to", dest="end_at", help="one-off end (ISO 8601)")
    p.add_argument("--weekdays", help="weekly: comma-separated mon..sun (default: every day)")
    p.add_argument("--start", help="weekly: HH:MM")
    p.add_argument("--end", help="weekly: HH:MM")
    p.add_argument("--timezone", help="weekly: IANA name (default: UTC)")
    p.add_argument(
        "-m", "--match", action="append", metavar="KEY=VALUE", help="alerts it mutes (default: all)"
    )
    msub.add_parser("list", help="list maintenance windows")
    silence.set_defaults(silence_command="list")
    maintenance.set_defaults(maintenance_command="list")
