"""A TCP proxy the tests can cut and mend: a broker outage for real, on loopback."""

from __future__ import annotations

import selectors
import socket
import threading

from sensorwatch.pipeline.dev.broker import EmbeddedBroker


class BehindProxy(EmbeddedBroker):
    """The embedded broker, advertising a proxy's port: every client connection goes through it.
    ``args`` go to tansu as they are (``--authentication``); ``plain=False`` when clients cannot
    reach it in plaintext (behind TLS, or with logins required): ready once it listens."""

    def __init__(
        self,
        proxy_port: int | None = None,
        args: tuple[str, ...] = (),
        plain: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.proxy_port, self.args, self.plain = proxy_port, args, plain

    def _spawn(self, binary) -> None:
        import subprocess as sp

        listen = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.proxy_port or self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
            *self.args,
        ]
        with self.log_path.open("wb") as out:
            self._proc = sp.Popen(
                cmd, stdout=out, stderr=sp.STDOUT, stdin=sp.DEVNULL, start_new_session=True
            )

    def _answers_metadata(self, deadline: float) -> bool:
        return super()._answers_metadata(deadline) if self.plain else True


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


class TlsProxy:
    """Terminates TLS on 127.0.0.1:``port`` with ``cert``/``key`` and forwards the plain bytes to
    127.0.0.1:``target``: a broker that clients can reach only over TLS. ``handshakes`` counts the
    TLS sessions it accepted; ``refused`` the handshakes that failed."""

    def __init__(self, target: int, port: int, cert: str, key: str) -> None:
        import ssl

        self.target, self.port = target, port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.handshakes = self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def _accept(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._session, args=(client,), daemon=True).start()
        finally:
            self._listener.close()

    def _session(self, client: socket.socket) -> None:
        import ssl

        client.settimeout(10)
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            client.close()
            return
        self.handshakes += 1
        tls.settimeout(None)
        upstream = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=_pump, args=(upstream, tls), daemon=True).start()
        _pump(tls, upstream)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass
