"""Servers on the loopback for the storage tests, in this process (threads): an HTTP file server with Range
requests that can go down and come back on the same port, and moto's S3 server. Both are context managers
that stop the server however the test ends. benchmarks/bench_data.py runs the HTTP server in a child process
(`file_server_process`)."""
import contextlib
import http.server
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import boto3
import fsspec


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the files under the server's root, whole or one `Range: bytes=a-b`."""

    def log_message(self, *args):  # the tests' output stays quiet
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body):
        server = self.server.owner
        server.requests.append((self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        if server.failing:
            server.failing -= 1
            self.send_error(server.failure_status)
            return
        path = server.root / urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if not path.is_file() or server.root not in path.resolve().parents:
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted:
            start, end = int(wanted[1]), min(int(wanted[2] or end), end)
            if start > end:
                self.send_error(416)
                return
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            server.send_body(self, data[start:end + 1])


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FileServer:
    """Serves the files under `root` at http://127.0.0.1:<port>/<relative path> (HTTP/1.0: a connection per
    request), with Range requests; `requests` records (method, path, Range, Authorization) of each,
    `cuts` the responses cut, `cut_at_request` the index of the last one.
    `stop()` and `start()` again keep the port. `outage(after_bytes, down_s)` makes the server cut the
    response that would pass `after_bytes` more body bytes in the middle of its body, go down, and come
    back `down_s` seconds later (never: None)."""

    def __init__(self, root):
        self.root = Path(root).resolve()
        self.port = None
        self.requests, self.cuts, self.cut_at_request = [], 0, None
        self.failing, self.failure_status = 0, 503
        self._server = self._thread = self._return = None
        self._closed = False
        self._fault, self._lock, self._switch = None, threading.Lock(), threading.Lock()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._closed = True
        if self._return is not None:
            self._return.cancel()
        self.stop()

    def url(self, relative="", credentials=""):
        return f"http://{credentials}127.0.0.1:{self.port}/{relative}"

    @property
    def running(self):
        return self._server is not None

    def start(self):
        with self._switch:
            self._server = _HTTPServer(("127.0.0.1", self.port or 0), _RangeHandler)
            self._server.owner = self
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()

    def stop(self):
        with self._switch:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._thread.join()
                self._server = self._thread = None

    def answer_errors(self, count, status):
        """The next `count` requests get the error `status` (e.g. 503 for an overloaded server)."""
        self.failing, self.failure_status = count, status

    def outage(self, after_bytes, down_s=None):
        with self._lock:
            self._fault = (after_bytes, down_s)

    def send_body(self, handler, data):
        """Writes `data`, or its part within the outage's byte budget before cutting the connection."""
        with self._lock:
            budget, down_s = self._fault or (None, None)
            cut = budget is not None and budget < len(data)
            if budget is not None:
                self._fault = None if cut else (budget - len(data), down_s)
                self.cuts += cut
                self.cut_at_request = len(self.requests) - 1 if cut else self.cut_at_request
        if not cut:
            handler.wfile.write(data)
            return
        handler.wfile.write(data[:budget])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        threading.Thread(target=self._go_down, args=(down_s,), daemon=True).start()

    def _go_down(self, down_s):
        self.stop()
        if down_s is not None:
            self._return = threading.Timer(down_s, self._come_back)
            self._return.start()

    def _come_back(self):
        if not self._closed:
            self.start()


@contextlib.contextmanager
def file_server_process(root):
    """A FileServer of `root` in a child process (the benchmarks: its CPU time is not the reader's); yields its
    base URL. The child is ended when the block ends."""
    child = subprocess.Popen([sys.executable, "-m", "tests.servers", str(root)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        port = child.stdout.readline().strip()
        if not port:
            raise RuntimeError(f"the file server process ended with status {child.wait()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait()


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fake-access-key-id", "AWS_SECRET_ACCESS_KEY": "fake-secret-access-key",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server(monkeypatch, bucket="bike-test"):
    """moto's S3 server on the loopback with `bucket` created; fake credentials and its address in the
    environment (where boto3 and s3fs look for them). Yields a boto3 S3 client."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            monkeypatch.delenv(name, raising=False)
        fsspec.get_filesystem_class("s3").clear_instance_cache()  # a file system made for another endpoint
        client = boto3.client("s3")
        client.create_bucket(Bucket=bucket)
        yield client
    finally:
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        server.stop()
        server._server.server_close()  # moto's stop() leaves the listening socket open


def upload_folder(client, bucket, folder, prefix=""):
    """Every file under `folder` to s3://bucket/prefix/<relative path>."""
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}{path.relative_to(folder).as_posix()}")



if __name__ == "__main__":  # file_server_process's child: serves the folder given until terminated
    with FileServer(sys.argv[1]) as file_server:
        print(file_server.port, flush=True)
        threading.Event().wait()
