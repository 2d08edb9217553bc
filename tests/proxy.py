"""A TCP proxy the tests can cut and mend: a broker outage for real, on loopback."""

from __future__ import annotations

import selectors
import socket
import threading


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``; ``cut()`` drops every connection and
    stops listening, ``mend()`` listens again on the same port."""

    def __init__(self, target: int, port: int) -> None:
        self.target, self.port = target, port
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def mend(self) -> Proxy:
        self._stop.clear()
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._thread = threading.Thread(target=self._serve, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self, listener: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, None)
        pairs: dict[socket.socket, socket.socket] = {}
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    if key.fileobj is listener:
                        client, _ = listener.accept()
                        upstream = socket.create_connection(("127.0.0.1", self.target))
                        for a, b in ((client, upstream), (upstream, client)):
                            pairs[a] = b
                            sel.register(a, selectors.EVENT_READ, None)
                        continue
                    src = key.fileobj
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        pairs[src].sendall(data)
                    else:
                        for s in (src, pairs[src]):
                            if s in pairs:
                                sel.unregister(s)
                                s.close()
                                pairs.pop(s)
        finally:
            for s in list(pairs):
                s.close()
            listener.close()
            sel.close()
