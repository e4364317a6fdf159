"""A raw HTTP server on loopback for client tests: each connection runs a handler the test
scripts, so the client sees exactly the bytes (and the hang-ups) the test wants."""
import socket
import ssl
import threading
from collections.abc import Callable

Handler = Callable[[socket.socket, int], None]  # (connection, its index from 0)


def read_request(conn: socket.socket) -> bytes:
    """One request's head and body (by its Content-Length); b"" if the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


class Server:
    """Accepts connections and runs `handler` on each in its own thread; counts them."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http{'s' if tls else ''}://127.0.0.1:{self.sock.getsockname()[1]}"
        self.handler, self.tls = handler, tls
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            index, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                self.handler(conn, index)
        except OSError:
            pass  # the client hung up: what several tests do on purpose

    def answer_each(self, conn: socket.socket, answers: list[bytes]) -> None:
        """Read a request and send the next of `answers`, until they run out."""
        for answer in answers:
            request = read_request(conn)
            if not request:
                return
            self.requests.append(request)
            conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


def start_answering(serve: Callable[..., Server], *answers: bytes,
                    tls: ssl.SSLContext | None = None) -> Server:
    """A server (from the `serve` fixture) answering the requests on each connection with
    `answers` in turn."""
    holder: list[Server] = []
    server = serve(lambda conn, index: holder[0].answer_each(conn, list(answers)), tls)
    holder.append(server)
    return server
