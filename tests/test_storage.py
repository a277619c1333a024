"""Reading files from servers (datasets/storage.py): retries that resume at the byte offset, one error naming
the file when it keeps failing, credentials kept out of messages and logs; HTTP and S3 servers on the loopback."""
import base64
import logging
import os
import re
import sys

import pytest

from datasets import storage
from datasets.storage import ShardReadError, open_stream, read_bytes, redact
from tests.servers import S3_CREDENTIALS, FileServer, s3_server, upload_folder

FAST = {"tries": 4, "first_backoff_s": 0.05}  # waits 0.05, 0.1, 0.2 s


@pytest.fixture
def blob(tmp_path):
    data = os.urandom(1_000_000)
    (tmp_path / "blob.bin").write_bytes(data)
    return data


@pytest.fixture
def small_blocks(monkeypatch):
    """Ranged requests of 64 KiB, so that a 1 MB file takes many of them."""
    monkeypatch.setattr(storage, "BLOCK_SIZE", 2**16)


def read_in_chunks(url, **retries):
    """The file's bytes read 10 kB at a time (up to 1 MB more than the test files, should bytes repeat)."""
    out = bytearray()
    with open_stream(url, **retries) as stream:
        while (chunk := stream.read(10_000)) and len(out) < 2_000_000:
            out += chunk
    return bytes(out)


def test_a_server_that_stops_mid_read_and_comes_back_gives_the_same_bytes(tmp_path, blob, small_blocks, caplog):
    with FileServer(tmp_path) as server:
        server.outage(after_bytes=300_000, down_s=0.1)
        assert read_in_chunks(server.url("blob.bin"), tries=8, first_backoff_s=0.05) == blob
    assert server.cuts == 1
    failed_at = int(re.search(r"failed at byte (\d+)", caplog.text)[1])
    after_cut = [r for method, _, r, _ in server.requests[server.cut_at_request + 1:] if method == "GET"]
    assert 0 < failed_at < 300_000 and after_cut[0].startswith(f"bytes={failed_at}-"), (failed_at, after_cut)


def test_answers_5xx_are_retried_and_4xx_fail_at_once(tmp_path, blob):
    with FileServer(tmp_path) as server:
        server.answer_errors(2, 503)
        assert read_bytes(server.url("blob.bin"), **FAST) == blob
        server.answer_errors(5, 403)
        with pytest.raises(ShardReadError, match="Forbidden"):
            read_bytes(server.url("blob.bin"), **FAST)
        assert server.failing == 3  # one try: fsspec asked for the size with HEAD, then with GET
        server.answer_errors(0, 403)
        with pytest.raises(ShardReadError, match=f"cannot read {server.url('missing.bin')}: no such file"):
            read_bytes(server.url("missing.bin"), **FAST)


def test_a_server_that_never_comes_back_ends_with_one_error_naming_the_file_without_credentials(tmp_path, blob,
                                                                                                small_blocks, caplog):
    caplog.set_level(logging.DEBUG, logger="datasets")
    secret_query = "?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=deadbeef0123"
    with FileServer(tmp_path) as server:
        url = server.url("blob.bin", credentials="alice:pa55word@") + secret_query
        server.outage(after_bytes=200_000)
        with pytest.raises(ShardReadError) as raised:
            read_in_chunks(url, **FAST)
    message = str(raised.value)
    assert re.match(re.escape(f"cannot read {server.url('blob.bin')}?X-Amz-Credential=***&X-Amz-Signature=*** ")
                    + r"at byte [1-9]\d* after 4 tries: ", message), message
    assert "\n" not in message
    assert base64.b64encode(b"alice:pa55word").decode() in server.requests[0][3]  # the credentials were sent
    for secret in ("alice", "pa55word", "AKIDSECRET", "deadbeef0123"):
        assert secret not in message and secret not in caplog.text
    assert caplog.text.count("failed at byte") == 3


def test_http_credentials_from_netrc(tmp_path, blob, monkeypatch):
    with FileServer(tmp_path) as server:
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login bob password n3trc\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        assert read_bytes(server.url("blob.bin")) == blob
    assert server.requests[-1][3] == "Basic " + base64.b64encode(b"bob:n3trc").decode()


def test_redact_removes_user_password_and_query_values():
    assert redact("https://u:p@host:8/a/b.tar?X-Amz-Signature=s&x=1") == \
        "https://host:8/a/b.tar?X-Amz-Signature=***&x=***"
    assert redact("s3://bucket/shards/000.tar") == "s3://bucket/shards/000.tar"
    assert redact("/data/shards/000.tar") == "/data/shards/000.tar"


def test_local_files_and_a_missing_protocol_package(tmp_path, blob, monkeypatch):
    assert read_bytes(tmp_path / "blob.bin") == blob
    with pytest.raises(ShardReadError, match=f"cannot read {tmp_path / 'nope.tar'}: no such file"):
        read_bytes(tmp_path / "nope.tar", **FAST)
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as on a machine without it
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "gs", raising=False)  # not imported before
    with pytest.raises(ShardReadError, match=r"cannot read gs://bucket/a.tar: gs:// needs the package gcsfs "
                                             r"\(pip install gcsfs\)"):
        read_bytes("gs://bucket/a.tar")


@pytest.mark.slow  # a second or two: moto's server starts in this process
def test_s3_round_trip_through_moto(tmp_path, blob, monkeypatch, caplog):
    with s3_server(monkeypatch, bucket="bike-test") as client:
        upload_folder(client, "bike-test", tmp_path, prefix="data/")
        assert read_in_chunks("s3://bike-test/data/blob.bin") == blob
        with pytest.raises(ShardReadError, match="cannot read s3://bike-test/data/nope.tar: no such file"):
            read_bytes("s3://bike-test/data/nope.tar", **FAST)
    assert S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in caplog.text
