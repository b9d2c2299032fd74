"""A local JWKS endpoint for tests: serves the public keys it is given, counts fetches,
and can be made slow (a key server that hangs must not stall the gateway)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    """The JWK of ``private_key``'s public half, for ``alg`` (RS256 or ES256)."""
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


class JwksServer:
    """``GET /jwks.json`` on 127.0.0.1; ``keys`` and ``delay`` may change at any time."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.body: bytes | None = None
        """Served instead of the key set when set (a broken key server)."""
        self.delay = 0.0
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                time.sleep(server.delay)
                body = server.body or json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/jwks.json"

    @contextmanager
    def serving(self) -> Iterator[JwksServer]:
        thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._http.shutdown()
            self._http.server_close()
            thread.join(timeout=10)
