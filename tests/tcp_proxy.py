"""
A TCP relay between a daemon and its Redis that can lose Redis' answers:
Redis does what it is asked, the daemon never hears back (as when Redis is
killed, or the network breaks, after it ran a command and before its
answer arrived).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from tests.daemon import free_port


class AnswerLosingRelay:
    """
    Relays 127.0.0.1:C{port} to C{target_port}; while L{losing} is set,
    everything Redis sends is dropped.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.losing = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            dead = threading.Event()
            with self._lock:
                self._pairs.append((client, server, dead))
            threading.Thread(target=self._pump, args=(client, server, False, dead),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True, dead),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool,
              dead: threading.Event) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or dead.is_set():
                    break
                if answers and self.losing.is_set():
                    continue
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop_losing(self) -> None:
        """
        Answers flow again, on new connections only: the ones that lost an
        answer would hand the next answers to the wrong commands.
        """
        self.reset(then=self.losing.clear)

    def reset(self, then: Callable[[], None] = lambda: None) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
            for _, _, dead in pairs:
                dead.set()
            then()
        for client, server, _ in pairs:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset()
