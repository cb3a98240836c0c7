"""A TCP proxy on 127.0.0.1 that can be cut: the database blip of a fault test.

Put between the daemon and a server (PostgreSQL, a helpdesk), ``cut()`` resets every open
connection and refuses new ones until ``restore()``, as a network partition or a server restart
would. Shipped with the sandbox so staging checks can cut a connection the same way the tests do.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._reset_all()
        self._thread.join(timeout=5)

    def cut(self) -> None:
        """Reset every connection now and refuse new ones until ``restore``."""
        with self._lock:
            self._cut = True
        self._reset_all()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def _reset_all(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._cut
            if refused:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True,
                             name="tcp-proxy-pipe").start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy both ways until either side closes (or ``cut`` resets both)."""
        peer = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peer:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._stopped.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peer[key.fileobj].setblocking(True)  # type: ignore[index]
                        peer[key.fileobj].sendall(data)  # type: ignore[index]
                        peer[key.fileobj].setblocking(False)  # type: ignore[index]
            except OSError:
                return
            finally:
                for sock in peer:
                    _reset(sock)
                with self._lock:
                    self._open.difference_update(peer)


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees a broken connection, not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()
