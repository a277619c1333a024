"""tools/app.py stopped as a service manager stops it: SIGTERM (systemd, Docker, Kubernetes) ends the app
and removes its upload folder, uploads and all, as Ctrl+C does; an app removes nothing that is not its own
(another app's uploads, a killed app's old folder, anything else in the temporary folder).

The apps run as a user starts them (their command line, a free local port, a temporary folder of the
test's own through TMPDIR); files go in through Gradio's upload route, as a browser sends them. Every
app started is stopped, also when the test fails, and no wait is unbounded.
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.data_factory import write_video
from tests.processes import free_port

REPO = Path(__file__).resolve().parent.parent
START_SECONDS = 240  # two apps start side by side on two shared cores
STOP_SECONDS = 60


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A config of an untrained tiny CLIP (zero-shot) with two classes: all the app needs to start."""
    folder = tmp_path_factory.mktemp("app_stop")
    (folder / "labels.csv").write_text("id,name\n0,archery\n1,biking\n")
    data = dict(dataset="tiny", modality="video", num_segments=2, batch_size=2, workers=0, num_classes=2,
                input_size=32, val_root=str(folder), label_list=str(folder / "labels.csv"))
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 1, "data": data, "network": {"arch": "ViT-Tiny/16", "init": False}}))
    return folder / "config.yaml"


class App:
    """One tools/app.py process, its port and its log file (stdout and stderr: no pipe to fill)."""

    def __init__(self, config, temp, log):
        self.port, self.log = free_port(), log
        with open(log, "w") as output:
            # SIGINT as a terminal delivers it (a background job's children would ignore it); TMPDIR: the
            # temporary folder the app's own folder goes in.
            self.process = subprocess.Popen(
                [sys.executable, "tools/app.py", "--config", str(config), "--port", str(self.port), "--cpu"],
                cwd=REPO, env=dict(os.environ, TMPDIR=str(temp), GRADIO_ANALYTICS_ENABLED="False"),
                stdout=output, stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                                        signal.SIG_DFL))

    def text(self):
        return Path(self.log).read_text()

    def wait_until_serving(self, deadline):
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the app ended with status {self.process.returncode}:\n{self.text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError(f"the app did not answer on port {self.port} in time:\n{self.text()}")
        found = re.search(r"uploads are kept in (\S+) until the app stops", self.text())
        assert found, self.text()
        self.folder = Path(found[1])

    def upload(self, path):
        """Sends `path` as the page does (multipart POST to Gradio's upload route); the path the app keeps."""
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{Path(path).name}\"\r\n"
                "Content-Type: video/mp4\r\n\r\n")
        body = head.encode() + Path(path).read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/gradio_api/upload", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            kept = json.loads(response.read())
        assert len(kept) == 1, kept
        return Path(kept[0])

    def terminate(self):
        """SIGTERM, and the exit status once the app has ended."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the app did not end within {STOP_SECONDS} s of SIGTERM:\n{self.text()}") from None

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)


@pytest.mark.slow
def test_sigterm_removes_the_apps_uploads_and_nothing_else(config, tmp_path):
    pytest.importorskip("gradio")
    temp = tmp_path / "tmp"
    foreign = [temp / "gradio" / "someone_elses.mp4",  # Gradio's default cache folder, shared by every user
               temp / "bike-app-1-killed" / "upload.mp4",  # the folder of an app that was killed (SIGKILL)
               temp / "notes.txt"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not the app's")
    video = write_video(str(tmp_path / "clip.mp4"), num_frames=8)
    with contextlib.ExitStack() as stack:
        apps = []
        for name in ("first", "second"):
            apps.append(App(config, temp, tmp_path / f"{name}.log"))
            stack.callback(apps[-1].kill)  # whatever happens: no app left running
        first, second = apps
        deadline = time.monotonic() + START_SECONDS
        for app in (first, second):
            app.wait_until_serving(deadline)
        assert first.folder != second.folder and {first.folder.parent, second.folder.parent} == {temp}
        uploads = {app: app.upload(video) for app in (first, second)}
        for app, kept in uploads.items():
            assert kept.is_file() and kept.is_relative_to(app.folder), (kept, app.folder)
            assert kept.read_bytes() == Path(video).read_bytes()

        assert second.terminate() == 0, second.text()
        assert not second.folder.exists(), second.text()
        assert uploads[first].is_file() and all(path.is_file() for path in foreign), second.text()

        assert first.terminate() == 0, first.text()
        assert not first.folder.exists(), first.text()
        assert all(path.read_text() == "not the app's" for path in foreign)
        assert sorted(temp.iterdir()) == sorted({temp / "gradio", temp / "bike-app-1-killed", temp / "notes.txt"}), \
            f"left in the temporary folder: {sorted(temp.iterdir())}"
        assert "Traceback" not in first.text() + second.text(), first.text() + second.text()


def test_sigterm_inside_the_upload_folder_block_ends_it_quietly_and_removes_the_folder(monkeypatch):
    """SIGTERM before the server runs (while the model loads): the block ends without an exception, the folder
    is gone, and the process's SIGTERM handling and GRADIO_TEMP_DIR are as before."""
    from workflows.app import upload_folder

    monkeypatch.setenv("GRADIO_TEMP_DIR", "before")
    handler = signal.getsignal(signal.SIGTERM)
    with upload_folder() as folder:
        assert os.environ["GRADIO_TEMP_DIR"] == folder and f"bike-app-{os.getpid()}-" in folder
        (Path(folder) / "upload.mp4").write_bytes(b"video")
        # a handler of the block's own, or this signal would end the test run itself
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None, handler)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this at once
        raise AssertionError("SIGTERM did not end the block")
    assert not os.path.exists(folder)
    assert os.environ["GRADIO_TEMP_DIR"] == "before" and signal.getsignal(signal.SIGTERM) == handler
