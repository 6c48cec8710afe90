#!/usr/bin/env python3
"""Capture real ClientHellos on loopback for sluice-tls parser tests.

For each client below: listen on 127.0.0.1 port 0, start the client against that
port, read the first TLS records until the ClientHello is complete, save those
bytes as <name>.bin, then close (the client's handshake fails; that is fine).
Only loopback is used. Run from this directory: python3 capture.py
"""
import socket
import ssl
import subprocess
import sys
import threading

CLIENTS = {
    "curl-h2": ["curl", "-sk", "--http2", "--max-time", "3", "https://localhost:{port}/"],
    "curl-http11": ["curl", "-sk", "--http1.1", "--max-time", "3", "https://localhost:{port}/"],
    "openssl-alpn": ["openssl", "s_client", "-connect", "127.0.0.1:{port}",
                     "-servername", "example.com", "-alpn", "h2,http/1.1"],
    "openssl-tls12": ["openssl", "s_client", "-connect", "127.0.0.1:{port}",
                      "-servername", "example.com", "-tls1_2"],
    "openssl-nosni": ["openssl", "s_client", "-connect", "127.0.0.1:{port}",
                      "-noservername"],
    "python-ssl": None,  # in-process, see python_client()
}


def python_client(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            with ctx.wrap_socket(s, server_hostname="python.example"):
                pass
    except (OSError, ssl.SSLError):
        pass


def hello_complete(buf):
    """True once the records in buf carry a whole handshake message."""
    body, i = b"", 0
    while i + 5 <= len(buf):
        n = int.from_bytes(buf[i + 3:i + 5], "big")
        if i + 5 + n > len(buf):
            break
        body += buf[i + 5:i + 5 + n]
        i += 5 + n
        if len(body) >= 4 and len(body) >= 4 + int.from_bytes(body[1:4], "big"):
            return buf[:i]
    return None


def capture(name, argv):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    if argv is None:
        t = threading.Thread(target=python_client, args=(port,))
        t.start()
        proc = None
    else:
        argv = [a.replace("{port}", str(port)) for a in argv]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv.settimeout(5)
    conn, _ = srv.accept()
    conn.settimeout(5)
    buf = b""
    while (hello := hello_complete(buf)) is None:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit(f"{name}: closed before a full ClientHello")
        buf += chunk
    conn.close()
    srv.close()
    if proc is not None:
        proc.wait(timeout=5)
    else:
        t.join()
    with open(f"{name}.bin", "wb") as f:
        f.write(hello)
    print(f"{name}.bin: {len(hello)} bytes")


if __name__ == "__main__":
    for name, argv in CLIENTS.items():
        capture(name, argv)
