"""A loopback TCP proxy that a test can cut, to stage a broker outage without touching the
broker: every open connection is closed and new ones are refused until it is restored. It
can also hold what clients send, so a client's acknowledgements never reach the broker."""

import socket
import struct
import threading
from types import TracebackType

ACCEPT_POLL_SECONDS = 0.2
CHUNK = 65536
# SO_LINGER on, zero seconds: close() sends a reset instead of a graceful FIN.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)

Pair = tuple[socket.socket, socket.socket]


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; ``cut()``, ``hold()`` and
    ``restore()`` stage faults.

    While cut, the port keeps listening but resets every connection it accepts, so a
    client's handshake fails as it would against a broker that is down. Closing the port
    instead is not safe: a client retrying a connect to a free ephemeral port can be handed
    that very port as its own and connect to itself, keeping the port taken.
    """

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._lock = threading.Lock()
        self._pairs: set[Pair] = set()
        self._refusing = False
        # Cleared while held: what clients send waits here instead of going upstream.
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._running = threading.Event()
        self._running.set()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        # A thread blocked in accept() is not woken by close() on Linux, so it polls.
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> "CuttableProxy":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def cut(self) -> int:
        """Close every open connection and refuse new ones; returns how many were open.
        Whatever was held is dropped, never delivered."""
        with self._lock:
            self._refusing = True
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            _close_pair(pair)
        self._forwarding.set()  # wakes held pumps; their pairs are gone, so they drop it
        return len(pairs)

    def hold(self) -> None:
        """Stop passing on what clients send (acknowledgements, publishes, heartbeats):
        ``restore()`` delivers it, ``cut()`` drops it. Upstream still reaches the clients."""
        self._forwarding.clear()

    def restore(self) -> None:
        """Accept new connections and forward everything again."""
        with self._lock:
            self._refusing = False
        self._forwarding.set()

    def close(self) -> None:
        self.cut()
        self._running.clear()
        self._acceptor.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while self._running.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            with self._lock:
                refusing = self._refusing
            if refusing:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                if self._refusing:  # cut while this connection was being set up
                    _close_pair(pair)
                    continue
                self._pairs.add(pair)
            for source, target in (pair, pair[::-1]):
                threading.Thread(
                    target=self._pump, args=(source, target, pair), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, pair: Pair) -> None:
        from_client = source is pair[0]
        try:
            while data := source.recv(CHUNK):
                if from_client:
                    self._forwarding.wait()
                    with self._lock:
                        if pair not in self._pairs:  # cut while held
                            break
                target.sendall(data)
        except OSError:
            pass
        # One side ended: end the other too, as a single real connection would.
        with self._lock:
            self._pairs.discard(pair)
        _close_pair(pair)


def _reset(connection: socket.socket) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    connection.close()


def _close_pair(pair: Pair) -> None:
    for connection in pair:
        # shutdown() first: it wakes the thread blocked in recv() on this socket; close()
        # alone would not.
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        connection.close()
