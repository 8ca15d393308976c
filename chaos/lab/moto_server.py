"""moto in server mode on a port the OS picks, reported through a file.

    python chaos/lab/moto_server.py --port-file PATH [--host 127.0.0.1] [--quiet]

Why not `moto_server -p 0`: it binds port 0 but never says which port it got
(it prints "Running on ...:0"), and it sets MOTO_PORT to 0. Picking a "free"
port first (bind, read, close, hand the number on) races with every other
process on the machine: the OS may hand the same port out again before moto
binds it. So this launcher builds the same server moto's own `moto.server`
does (werkzeug's threaded server, moto's `DomainDispatcherApplication` over
`create_backend_app`, moto's request handler), binds 127.0.0.1:0 itself,
and only then tells the world the port.

MOTO_PORT matters: moto's Step Functions interpreter calls service tasks
(`aws-sdk:dynamodb:putItem.waitForTaskToken`, ...) on
`http://localhost:$MOTO_PORT`, read at call time. It is set to the bound port
before the first request is served, whatever the environment said.

Route 53 throttling, which moto does not model: `POST
/_lab/route53-throttle?seconds=N` makes every Route 53 API call (paths under
`/2013-04-01/`) answer 400 `Throttling` (Route 53's code for its API rate
limit) for the next N seconds; `seconds=0` ends it. The drill uses it to
measure detection right after a throttling episode (`chaos/lab.sh drill
--throttle-route53 45`).

The port file gets the port as one line, written to a temporary file in the
same folder and renamed, so a reader never sees half a number. The server
stops on SIGTERM or SIGINT (exit 0), like `moto_server`.
"""

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moto-port-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


ROUTE53_THROTTLING = (
    b'<?xml version="1.0"?>\n'
    b'<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
    b"<Error><Type>Sender</Type><Code>Throttling</Code>"
    b"<Message>Rate exceeded</Message></Error>"
    b"<RequestId>lab-throttle</RequestId></ErrorResponse>"
)


class Route53Throttle:
    """WSGI middleware: Route 53 answers Throttling until a deadline."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.until = 0.0

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_lab/route53-throttle" and environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                seconds = float(query.get("seconds", ["0"])[0])
            except ValueError:
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"seconds must be a number\n"]
            with self.lock:
                self.until = time.monotonic() + max(seconds, 0.0)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"route53 throttled for {seconds} s\n".encode()]
        if path.startswith("/2013-04-01/"):
            with self.lock:
                throttled = time.monotonic() < self.until
            if throttled:
                start_response(
                    "400 Bad Request",
                    [
                        ("Content-Type", "text/xml"),
                        ("Content-Length", str(len(ROUTE53_THROTTLING))),
                    ],
                )
                return [ROUTE53_THROTTLING]
        return self.app(environ, start_response)


def stop(signum: int, _frame: object) -> None:
    # Raised in the main thread, inside serve_forever: the loop unwinds and
    # the finally below closes the socket.
    sys.exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (port 0)")
    parser.add_argument(
        "--port-file", required=True, help="write the bound port here (atomically)"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no line per request (errors and tracebacks are still logged)",
    )
    args = parser.parse_args()
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # The same app and handler as moto.server.main (moto 5.2.5).
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    server = make_server(
        args.host,
        0,
        Route53Throttle(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    try:
        port = server.port
        os.environ["MOTO_PORT"] = str(port)
        # The socket is listening already: a client that reads the file and
        # connects at once waits in the backlog until serve_forever runs.
        write_atomically(args.port_file, f"{port}\n")
        print(
            f"moto serving on http://{args.host}:{port} (MOTO_PORT={port})",
            file=sys.stderr,
            flush=True,
        )
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
