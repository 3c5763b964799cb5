#!/usr/bin/env python3
"""Servers of a Bordergate test host, run inside its network namespace by scripts/testnet.sh.

- HTTP on port 80 (IPv4 and IPv6): GET / greets; GET /bytes/N sends N deterministic bytes;
  POST /sha256 answers with the SHA-256 of the request body; GET /peer shows the client address.
  Personal data for the masking tests (the values are in PII below): GET /pii.json (JSON with
  Content-Length), /pii.chunked (text, chunked, each value split across two chunks), /pii.gz
  (gzip JSON), /pii.deflate, /pii.br (an encoding Bordergate cannot decode), /pii.untyped (no
  Content-Type), /pii.cookie (a Set-Cookie header), /pii.lying (Content-Length larger than the
  body, then close), /text/N (N bytes of text with a value every 4 KiB, chunked), and /upgrade
  (101 Switching Protocols, then an echo of whatever arrives).
- HTTPS on 443 with the same routes, a certificate from the test CA in $BG_TLS_DIR (names
  secure.test.example, *.test.example and the test host's addresses), and on 8443 with a
  self-signed one (an upstream nobody trusts). GET/POST /git/... is `git http-backend` (smart
  HTTP) over the repositories in $BG_GIT_ROOT.
- UDP echo on port 7.
- "echo digest" on port 7: reads until the client half-closes, then answers with the SHA-256 and
  length of everything read, and closes. A relay that mishandles half-close fails it.
"""
import gzip
import hashlib
import json
import os
import zlib
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 1 << 16


def pattern(n):
    """N bytes of a fixed pattern, generated in chunks."""
    block = bytes(range(256)) * (CHUNK // 256)
    while n > 0:
        take = min(n, CHUNK)
        yield block[:take]
        n -= take


# Values the masking tests expect never to reach a tool, nor the state directory, unmasked.
PII = {
    "email": "ada.lovelace@example.org",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "password": "correct horse battery staple",
    "cookie": "session=s3cr3t-cookie-value-42",
}


def pii_json():
    return json.dumps({"customers": [{"name": "Ada", "email": PII["email"], "card": PII["card"],
                                      "iban": PII["iban"], "password": PII["password"], "order": "ORD-20261204-0001"}]},
                      indent=1).encode() + b"\n"


def text_body(n):
    """n bytes of text lines, one e-mail address in every 4 KiB."""
    line = b"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\n"
    value = ("contact " + PII["email"] + "\n").encode()
    block = (line * (4096 // len(line) + 1))[: 4096 - len(value)] + value
    while n > 0:
        take = min(n, len(block) * 16)
        yield (block * 16)[:take]
        n -= take


class HTTP(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, body, status=200, ctype="text/plain", headers=()):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _git(self):
        """git http-backend as CGI: smart HTTP for `git ls-remote` and `git clone`."""
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)) if self.command == "POST" else b""
        env = {"GIT_PROJECT_ROOT": os.environ.get("BG_GIT_ROOT", "/nonexistent"), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path[len("/git"):], "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self._send(payload, status, ctype=None, headers=headers)

    def do_GET(self):
        if self.path.startswith("/git/"):
            return self._git()
        self.path = self.path.split("?", 1)[0]  # routes by path; a query is the client's business
        if self.path == "/":
            self._send(b"hello from the test host\n")
        elif self.path == "/peer":
            self._send(f"{self.client_address[0]}\n".encode())
        elif self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for chunk in pattern(n):
                self.wfile.write(chunk)
        elif self.path == "/pii.json":
            self._send(pii_json(), ctype="application/json")
        elif self.path == "/pii.gz":
            self._send(gzip.compress(pii_json()), ctype="application/json", headers=[("Content-Encoding", "gzip")])
        elif self.path == "/pii.deflate":
            self._send(zlib.compress(pii_json()), ctype="application/json", headers=[("Content-Encoding", "deflate")])
        elif self.path == "/pii.br":
            self._send(b"not really brotli: " + pii_json(), ctype="application/json", headers=[("Content-Encoding", "br")])
        elif self.path == "/pii.untyped":
            self._send(("mail " + PII["email"] + "\n").encode(), ctype=None)
        elif self.path == "/pii.cookie":
            self._send(b"ok\n", headers=[("Set-Cookie", PII["cookie"])])
        elif self.path == "/pii.chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            text = f"mail {PII['email']} card {PII['card']} iban {PII['iban']} end\n".encode()
            # cut in the middle of every value, so no chunk holds a whole one
            cuts = [text.index(PII[k].encode()) + len(PII[k]) // 2 for k in ("email", "card", "iban")]
            pieces, start = [], 0
            for c in cuts + [len(text)]:
                pieces.append(text[start:c])
                start = c
            for p in pieces:
                self.wfile.write(f"{len(p):x}\r\n".encode() + p + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/pii.lying":
            body = pii_json()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 1000))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
        elif self.path.startswith("/text/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in text_body(n):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/upgrade":
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(CHUNK)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
        else:
            self._send(b"not found\n", 404)

    def do_HEAD(self):
        body = pii_json()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_POST(self):
        if self.path.startswith("/git/"):
            return self._git()
        if self.path != "/sha256":
            self._send(b"not found\n", 404)
            return
        remaining = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        while remaining > 0:
            data = self.rfile.read(min(remaining, CHUNK))
            if not data:
                break
            h.update(data)
            remaining -= len(data)
        self._send(f"{h.hexdigest()}\n".encode())


class DualStackHTTP(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class EchoDigest(socketserver.BaseRequestHandler):
    def handle(self):
        h = hashlib.sha256()
        total = 0
        while True:
            data = self.request.recv(CHUNK)
            if not data:
                break
            h.update(data)
            total += len(data)
        self.request.sendall(f"{h.hexdigest()} {total}\n".encode())
        self.request.shutdown(socket.SHUT_WR)


class DualStackTCP(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_echo(address):
    """UDP echo on port 7: answers each datagram with "echo:" and the datagram (UDP verdict tests).
    One socket per address, so a reply leaves from the address the client sent to (a connected
    UDP client drops replies from any other)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((address, 7))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(b"echo:" + data, peer)


def https(port, cert, key):
    """The HTTP routes inside TLS (1.2 and 1.3, ALPN http/1.1)."""
    server = DualStackHTTP(("::", port), HTTP)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    tls = os.environ.get("BG_TLS_DIR")
    if tls:
        https(443, f"{tls}/server.pem", f"{tls}/server.key")
        https(8443, f"{tls}/selfsigned.pem", f"{tls}/selfsigned.key")
    http = DualStackHTTP(("::", 80), HTTP)
    echo = DualStackTCP(("::", 7), EchoDigest)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    for address in os.environ.get("BG_UDP_ADDRESSES", "0.0.0.0").split():
        threading.Thread(target=udp_echo, args=(address,), daemon=True).start()
    print("test host serving HTTP :80, echo-digest :7 and UDP echo :7", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
