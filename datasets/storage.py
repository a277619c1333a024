"""Reading files that may live on another machine: local paths, http(s)://, s3:// and gs:// through fsspec.

A read from a server can fail in passing (a connection refused or reset while a server restarts, a
timeout, a 5xx answer, a body cut short). `open_stream` retries such a read with exponential backoff,
reopening the file at the byte where the last successful read ended (an HTTP Range request, an S3 ranged
GET), so the caller sees every byte once. A file that keeps failing, or that is missing or forbidden, ends
with a `ShardReadError` (a user error: one `error:` line) naming it.

Credentials come from where each library looks for them (S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_ENDPOINT_URL_S3 / AWS_PROFILE ...; gs: GOOGLE_APPLICATION_CREDENTIALS ...; http: ~/.netrc and the proxy
variables, or user:password@ in the URL). They never appear in a message or a log line: `redact` removes a
URL's user:password@ and the values of its query string (signatures of pre-signed URLs).
"""
import contextlib
import io
import logging
import time
import urllib.parse

import fsspec
import fsspec.implementations.local
from fsspec.registry import known_implementations

from datasets.decoding import SampleReadError

logger = logging.getLogger(__name__)

READ_TRIES = 6  # reads of one byte range before a file counts as unreadable
FIRST_BACKOFF_S = 1.0  # wait before the second try; doubled before each next one
MAX_BACKOFF_S = 30.0
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 30, 60  # http(s): a server that stops answering is a failed read
BLOCK_SIZE = 8 * 2**20  # bytes of one ranged request to a server
RETRIED_HTTP_STATUSES = (408, 429)  # and every 5xx: the server may answer later


class ShardReadError(SampleReadError):
    """A file (a shard, a manifest) cannot be read: missing, forbidden, or failing after every retry."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message  # webdataset's tar readers append the stream and URL to an error's args on its way up


def redact(url: str) -> str:
    """`url` without credentials: no user:password@, the query's values replaced by '***'."""
    parts = urllib.parse.urlsplit(str(url))
    if not parts.scheme or "://" not in str(url):
        return str(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{name}=***" for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redacted_text(text: str, url: str) -> str:
    """`text` (a library's message, which may quote the URL) with the URL's credentials removed: its
    password, its query string and the query's longer values (tokens, signatures; short ones such as a
    part number are left, as they may be a part of anything)."""
    parts = urllib.parse.urlsplit(url)
    text = text.replace(url, redact(url))
    values = [value for _, value in urllib.parse.parse_qsl(parts.query) if len(value) >= 8]
    for secret in sorted(filter(None, values + [parts.password, parts.query]), key=len, reverse=True):
        text = text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")
    return text


def _storage_options(protocol: str) -> dict:
    """http(s): ~/.netrc and the proxy variables apply (aiohttp's trust_env); a server that stops answering
    times out instead of holding the reader for aiohttp's default five minutes."""
    if protocol not in ("http", "https"):
        return {}
    import aiohttp  # fsspec's HTTP file system is built on it
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    return {"client_kwargs": {"trust_env": True, "timeout": timeout}}


def _file_system(url: str):
    """fsspec's file system for `url` and the path on it; ShardReadError naming the package a protocol needs."""
    protocol = fsspec.utils.get_protocol(url)
    try:
        return fsspec.core.url_to_fs(url, **_storage_options(protocol))
    except ImportError as err:
        package = known_implementations.get(protocol, {}).get("class", protocol).split(".")[0]
        raise ShardReadError(f"cannot read {redact(url)}: {protocol}:// needs the package {package} "
                             f"(pip install {package})") from err
    except ValueError as err:
        raise ShardReadError(f"cannot read {redact(url)}: fsspec knows no protocol {protocol}://") from err


def _decisive(error: BaseException) -> BaseException:
    """The innermost network or file error in `error`'s chain of causes: fsspec's HTTP file system reports a
    refused connection as FileNotFoundError raised from the connection error, aiohttp a body cut short as
    ClientPayloadError raised from a parser error."""
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return next((e for e in reversed(chain) if isinstance(e, _transport_errors() + (EOFError,))), error)


def _transport_errors() -> tuple:
    """Exceptions of the file system and the installed network libraries: a transfer failed or a server
    answered with an error (`_passing` tells which may succeed when tried again)."""
    errors = [OSError, TimeoutError, fsspec.exceptions.FSTimeoutError]
    with contextlib.suppress(ImportError):
        import aiohttp
        errors.append(aiohttp.ClientError)
    with contextlib.suppress(ImportError):
        import botocore.exceptions
        errors += [botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError,
                   botocore.exceptions.ResponseStreamingError, botocore.exceptions.ClientError]
    return tuple(errors)


def _status(cause: BaseException):
    """The HTTP status of the server's answer an error reports (aiohttp's, botocore's), or None."""
    with contextlib.suppress(ImportError):
        import aiohttp
        if isinstance(cause, aiohttp.ClientResponseError):
            return cause.status
    with contextlib.suppress(ImportError):
        import botocore.exceptions
        if isinstance(cause, botocore.exceptions.ClientError):
            return cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _passing(error: BaseException) -> bool:
    """Whether a failed read may succeed when tried again (a connection, a timeout, a 5xx answer) rather
    than fail the same way (a missing or forbidden file, another 4xx answer)."""
    cause = _decisive(error)
    status = _status(cause)
    if status is not None:
        return status >= 500 or status in RETRIED_HTTP_STATUSES
    permanent = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    return isinstance(cause, _transport_errors() + (EOFError,)) and not isinstance(cause, permanent)


def _reason(cause: BaseException) -> str:
    """What went wrong, on one line."""
    status = _status(cause)
    if isinstance(cause, FileNotFoundError) or status == 404:
        return "no such file"
    if status is not None and hasattr(cause, "message"):  # aiohttp's message is the status's reason phrase
        return f"the server answered {status} {cause.message}"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return " ".join(f"{type(cause).__name__}: {cause}".split()) if str(cause) else type(cause).__name__


class RetryingReader(io.RawIOBase):
    """A sequential, read-only view of one file whose failed reads are retried at the same byte offset."""

    def __init__(self, url: str, tries: int, first_backoff_s: float):
        super().__init__()
        self.url, self.tries, self.first_backoff_s = str(url), tries, first_backoff_s
        self.fs, self.path = _file_system(self.url)
        self.position, self._file, self._size = 0, None, None
        self._retrying(self._open)

    def readable(self):
        return True

    def tell(self):
        return self.position

    def read(self, size=-1):
        data = self._retrying(self._read, size)
        self.position += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        self._drop_file()
        super().close()

    def _drop_file(self):
        """Closes the file of the last try, which may have failed half-way (its close may fail too)."""
        if self._file is not None:
            with contextlib.suppress(*_transport_errors()):
                self._file.close()
            self._file = None

    def _open(self):
        remote = not isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)
        self._file = self.fs.open(self.path, "rb", **({"block_size": BLOCK_SIZE} if remote else {}))
        self._size = getattr(self._file, "size", None)
        if self.position:
            self._file.seek(self.position)

    def _read(self, size):
        if self._file is None:
            self._open()
        data = self._file.read(size)
        remaining = self._size - self.position if self._size is not None else None
        if remaining and (not data or (size < 0 and len(data) < remaining)):
            raise EOFError(f"the file ended at byte {self.position + len(data)} of {self._size}")
        return data

    def _retrying(self, action, *args):
        """`action(*args)`, tried again after a passing failure (reopening at `position`) up to `tries` times."""
        for attempt in range(1, self.tries + 1):
            try:
                return action(*args)
            except (*_transport_errors(), EOFError) as err:
                reason = _redacted_text(_reason(_decisive(err)), self.url)
                if not _passing(err):
                    raise ShardReadError(f"cannot read {redact(self.url)}: {reason}") from None
                if attempt == self.tries:
                    raise ShardReadError(f"cannot read {redact(self.url)} at byte {self.position} after "
                                         f"{self.tries} tries: {reason}") from None
                wait = min(self.first_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                logger.warning("reading %s failed at byte %d (%s); try %d of %d in %.1f s", redact(self.url),
                               self.position, reason, attempt + 1, self.tries, wait)
                self._drop_file()
                time.sleep(wait)


@contextlib.contextmanager
def open_stream(url_or_path, tries=None, first_backoff_s=None):
    """A readable binary file object over `url_or_path` (local path, http(s)://, s3://, gs://), read front
    to back; failed reads are retried (`tries`, default READ_TRIES; waits from `first_backoff_s`, default
    FIRST_BACKOFF_S, doubling), then ShardReadError naming the file."""
    reader = RetryingReader(url_or_path, READ_TRIES if tries is None else tries,
                            FIRST_BACKOFF_S if first_backoff_s is None else first_backoff_s)
    try:
        yield reader
    finally:
        reader.close()


def read_bytes(url_or_path, tries=None, first_backoff_s=None) -> bytes:
    """The whole content of a small file (a manifest), with `open_stream`'s retries."""
    with open_stream(url_or_path, tries, first_backoff_s) as stream:
        return stream.read()
