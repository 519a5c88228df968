"""A real Alertmanager (Debian ``prometheus-alertmanager``) on a free loopback port, for tests.

Started with the flags PEERS.md gives (no gossip listener), polled until ready, stopped by PID.
A missing binary skips the test (fails under ``CI=true``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from peers import LOOPBACK, ManagedProcess, free_port, http_get, missing_peer, poll_until


class AlertmanagerPeer:
    """Alertmanager 0.25 routing everything to one webhook receiver (``send_resolved: true``)."""

    def __init__(
        self, workdir: Path, webhook_url: str, *, group_wait: str = "1s", group_interval: str = "1s"
    ) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            missing_peer("prometheus-alertmanager is not installed (see PEERS.md)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config: dict[str, Any] = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
        }
        path = workdir / "alertmanager.yml"
        path.write_text(json.dumps(config))
        self.process = ManagedProcess(
            [
                binary,
                f"--config.file={path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--cluster.listen-address=",
                f"--web.external-url={self.url}/",
            ],
            workdir / "alertmanager.log",
        )
        try:
            poll_until(self._ready, timeout=30, what="Alertmanager /-/ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        self.process.check_running("alertmanager")
        return http_get(f"{self.url}/-/ready", timeout=1)[0] == 200

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``."""
        return json.loads(http_get(f"{self.url}/api/v2/alerts")[1])

    def stop(self) -> None:
        self.process.stop()
