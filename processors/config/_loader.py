"""YAML loading with line numbers, duplicate-key detection and ``${ENV}`` interpolation.

PyYAML's ``safe_load`` forgets where each value came from and silently keeps the last of two
equal keys; a config error that names ``slos[2].objective`` should also name its line. So the
file is *composed* into PyYAML nodes and converted here, recording the line of every path.

``${VAR}`` in a string is replaced by the environment variable (``${VAR:-default}`` gives a
fallback; ``$${`` is a literal ``${``). An unset variable without a default is an error naming the
field, never an empty string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["ConfigError", "Path", "compose_yaml", "format_path", "interpolate_env"]

Path = tuple[str | int, ...]

_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration problem; ``errors`` holds ``(path, line, message)`` triples."""

    def __init__(self, errors: list[tuple[str, int | None, str]], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        lines = [
            f"{source}:{line}: {path}: {msg}" if line else f"{source}: {path}: {msg}"
            for path, line, msg in errors
        ]
        super().__init__("invalid configuration\n  " + "\n  ".join(lines))


def format_path(path: Path) -> str:
    """``('slos', 2, 'objective')`` → ``slos[2].objective``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def interpolate_env(value: str, path: Path, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` references; raises KeyError-like ValueError naming the variable."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set (use ${{{name}:-default}} for a fallback)")

    return _ENV.sub(sub, value) if "$" in value else value


def compose_yaml(text: str, source: str, env: Mapping[str, str] | None = None) -> tuple[Any, dict[Path, int]]:
    """Parse ``text`` into plain Python data and a map of path → 1-based line."""
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("(yaml)", line, f"not valid YAML: {problem}")], source) from None
    lines: dict[Path, int] = {}
    errors: list[tuple[str, int | None, str]] = []
    if node is None:
        return {}, lines
    constructor = yaml.SafeLoader("")

    def convert(n: yaml.Node, path: Path) -> Any:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool):
                    errors.append((format_path(path), key_node.start_mark.line + 1, "keys must be scalars"))
                    continue
                key = str(key)
                child = (*path, key)
                if key in out:
                    errors.append((format_path(child), key_node.start_mark.line + 1, "duplicate key"))
                    continue
                lines[child] = key_node.start_mark.line + 1
                out[key] = convert(value_node, child)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [convert(item, (*path, i)) for i, item in enumerate(n.value)]
        value = constructor.construct_object(n, deep=True)
        if isinstance(value, str):
            try:
                value = interpolate_env(value, path, env)
            except ValueError as exc:
                errors.append((format_path(path), n.start_mark.line + 1, str(exc)))
        return value

    data = convert(node, ())
    if errors:
        raise ConfigError(errors, source)
    return data, lines


def line_for(lines: Mapping[Path, int], path: Path) -> int | None:
    """The line of ``path`` or of its closest ancestor that has one."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())
