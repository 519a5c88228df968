"""A TCP fault proxy for tests: forwards loopback connections to a target, or resets them.

``FaultProxy(target_host, target_port)`` listens on a free loopback port (``port``). Its
``reset_next(n)`` makes the next ``n`` connections be reset (RST via ``SO_LINGER`` 0) as soon as
the client has sent its first bytes, before anything reaches the target; other connections are
piped both ways. ``resets`` counts what was reset. ``silence_open()`` turns the connections open
at that moment into black holes: both directions are read and dropped, nothing is closed, as with
a peer that vanished without a FIN or RST (a crashed host, a middlebox that lost its state);
connections made afterwards are piped normally. Threads only; stop with ``stop()``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from peers import LOOPBACK

__all__ = ["FaultProxy"]


class FaultProxy:
    """See the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"{LOOPBACK}:{self.port}"
        self._lock = threading.Lock()
        self._to_reset = 0
        self.resets = 0
        self._accepted = 0  # connections accepted so far; each is numbered by it
        self._silenced_below = 0  # connections numbered below this are black holes
        self._stopped = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def reset_next(self, n: int) -> None:
        with self._lock:
            self._to_reset += n

    def silence_open(self) -> None:
        """From now on, drop everything on the connections open now (see the module docstring)."""
        with self._lock:
            self._silenced_below = self._accepted

    def _silenced(self, number: int) -> bool:
        with self._lock:
            return number < self._silenced_below

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                reset = self._to_reset > 0
                if reset:
                    self._to_reset -= 1
                    self.resets += 1
                number = self._accepted
                self._accepted += 1
            threading.Thread(target=self._handle, args=(client, reset, number), daemon=True).start()

    def _handle(self, client: socket.socket, reset: bool, number: int) -> None:
        if reset:
            with contextlib.suppress(OSError):
                client.settimeout(5)
                client.recv(1)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        try:
            upstream = socket.create_connection(self._target, timeout=5)
        except OSError:
            client.close()
            return
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst, number), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, number: int) -> None:
        src.settimeout(None)
        try:
            while data := src.recv(65536):
                if not self._silenced(number):
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            if not self._silenced(number):  # a black hole never closes either
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
