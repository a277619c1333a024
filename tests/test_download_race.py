"""Two processes that need the same CLIP weights at once: one downloads, the other waits and verifies."""
import hashlib
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two downloading subprocesses

REPO = Path(__file__).resolve().parent.parent
CONTENT = os.urandom(1 << 18)
DIGEST = hashlib.sha256(CONTENT).hexdigest()

# Each process imports the package, then waits until both are ready, so that their downloads overlap.
CLIENT = """
import sys, time
from pathlib import Path
import clip.clip as api
url, cache, ready, name = sys.argv[1:]
Path(ready, name).touch()
while len(list(Path(ready).iterdir())) < 2:
    time.sleep(0.01)
print(api.download(url, cache))
"""


class SlowWeightsServer(BaseHTTPRequestHandler):
    """Serves CONTENT at /<sha256>/RN-Tiny-weights.pt in 8 pieces over about a second; counts the requests."""

    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        if self.path != f"/{DIGEST}/RN-Tiny-weights.pt":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(CONTENT)))
        self.end_headers()
        piece = len(CONTENT) // 8
        for start in range(0, len(CONTENT), piece):
            self.wfile.write(CONTENT[start:start + piece])
            self.wfile.flush()
            time.sleep(0.15)

    def log_message(self, *args):
        pass


def test_two_processes_with_an_empty_cache_download_once_and_both_get_the_verified_file(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowWeightsServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{DIGEST}/RN-Tiny-weights.pt"
    cache, ready = tmp_path / "cache", tmp_path / "ready"
    ready.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    try:
        clients = [subprocess.Popen([sys.executable, "-c", CLIENT, url, str(cache), str(ready), f"p{i}"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        results = [client.communicate(timeout=120) for client in clients]
    finally:
        server.shutdown()
    target = cache / "RN-Tiny-weights.pt"
    for client, (stdout, stderr) in zip(clients, results):
        assert client.returncode == 0, stderr[-3000:]
        assert stdout.strip() == str(target)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == DIGEST
    assert SlowWeightsServer.requests == [f"/{DIGEST}/RN-Tiny-weights.pt"]  # one download, not two
    assert [path.name for path in cache.iterdir()] == [target.name]  # no part or lock file left
