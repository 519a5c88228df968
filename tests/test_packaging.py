"""Tests of the distribution: layout mapping, entry points, CLI basics."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [whl] = out.glob("spansignals-*.whl")
    return whl


def _source_packages() -> set[str]:
    mapping = {
        "src/spansignals": "spansignals",
        "sdk": "spansignals.sdk",
        "processors": "spansignals.processors",
    }
    found = set()
    for folder, package in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_wheel_maps_sdk_and_processors_under_spansignals(wheel: Path):
    """The wheel holds only spansignals/ (no top-level sdk/ or processors/) and every package."""
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"spansignals", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    missing = _source_packages() - packages
    assert not missing, f"packages missing from pyproject's packages list: {sorted(missing)}"
    assert "spansignals/py.typed" in names


@pytest.mark.parametrize("module", ["_native", "_wirecheck"])
def test_wheel_carries_the_native_modules(wheel: Path, module: str):
    """The span path's C modules are compiled into the wheel (optional only without a compiler)."""
    names = zipfile.ZipFile(wheel).namelist()
    built = [n for n in names if n.startswith(f"spansignals/processors/{module}.")]
    assert built and all(n.endswith((".so", ".pyd", ".pyi")) for n in built), built
    assert any(n.endswith((".so", ".pyd")) for n in built), built


def test_wheel_registers_console_script_and_otel_entry_points(wheel: Path):
    """The console script and the OTel distro/configurator entry points are declared."""
    zf = zipfile.ZipFile(wheel)
    [ep] = [n for n in zf.namelist() if n.endswith("entry_points.txt")]
    text = zf.read(ep).decode()
    assert "spansignals = spansignals.cli:main" in text
    assert "[opentelemetry_distro]" in text and "[opentelemetry_configurator]" in text


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spansignals", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_version_and_help():
    """--version prints the version; --help lists every subcommand; no command is a usage error."""
    from spansignals import __version__

    assert _cli("--version").stdout.strip() == f"spansignals {__version__}"
    help_text = _cli("--help").stdout
    for command in ("collector", "check-config", "rules"):
        assert command in help_text
    assert _cli().returncode == 2


def test_check_config_exit_codes(tmp_path: Path):
    """check-config exits 0 on the DESIGN example and 2 naming field and line on a bad file."""
    import os

    env = {**os.environ, "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"}
    ok = _cli("check-config", str(ROOT / "examples" / "config" / "spansignals.yaml"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("service:\n  name: x\nslos:\n  - {name: a, objective: 2}\n")
    res = _cli("check-config", str(bad))
    assert res.returncode == 2
    assert f"{bad}:4: slos[0].objective:" in res.stderr
    assert "Traceback" not in res.stderr
