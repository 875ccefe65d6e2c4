"""Download public datasets into the data root, verifying what each publisher lets us verify."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..utils.paths import join_inside
from ..utils.progress import progress_bar
from ..version import __version__
from ._io import PathLike
from .amazon import AMAZON_2014_CATEGORIES, amazon_file_stem, category_slug, parse_meta_record

logger = logging.getLogger(__name__)

DOWNLOAD_URL_ENV = "HF_GENREC_DOWNLOAD_URL"
DATA_DIR_ENV = "HF_GENREC_DATA_DIR"
#: Set to 1 (as for `huggingface_hub` and `datasets`), these stop any download at once.
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
#: Seconds the DNS lookup, and then the TCP connection to each address, may take before the source counts as
#: unreachable. Short, so that a machine without network fails in seconds rather than after minutes of retries.
CONNECT_TIMEOUT = 5.0
#: Seconds any single read may wait once connected (huggingface_hub's default download timeout is 10 s too).
READ_TIMEOUT = 10.0
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/"
AMAZON_2014_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """
    One file to download and what is known about it.

    Args:
        filename: File name, appended to the base URL.
        sha256: Expected SHA-256 hex digest, or `None` when none is published.
        md5: Expected MD5 hex digest, or `None`.
        size: Expected size in bytes, or `None`.
    """

    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


# MovieLens zips. sha256 and size: TensorFlow Datasets, `tensorflow_datasets/url_checksums/movielens.txt`
# (tensorflow/datasets @ 1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c). md5: the values GroupLens publishes next to
# the zips (`ml-100k.zip.md5`), as recorded in eli-osherovich/papers_with_code `datasets/movielens/dl_config.py`
# and in DataRec's MovieLens1M builder (`CHECKSUM = "c4d9eecf..."`). All three are checked.
MOVIELENS_FILES: dict[str, RemoteFile] = {
    "ml-100k": RemoteFile(
        "ml-100k.zip",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        md5="0e33842e24a9c977be4e0107933c0723",
        size=4924029,
    ),
    "ml-1m": RemoteFile(
        "ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        md5="c4d9eecfca2ab87c1945afe126590906",
        size=5917549,
    ),
}

# Amazon 2014 (McAuley): no checksum or size is published for `reviews_<Cat>_5.json.gz` / `meta_<Cat>.json.gz`
# (none found on the dataset page or in projects that download them), so none is invented here. What can be
# verified is: the byte count against the server's Content-Length, the gzip stream's own CRC-32 and length trailer
# (read to the end), and that the first record parses. Add an entry here to pin a file you have checked yourself.
AMAZON_FILES: dict[str, RemoteFile] = {}


class DownloadError(OSError):
    """A download failed or its content did not verify. Nothing is left in the target folder."""


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not match the recorded checksum or size."""


def _amazon_files(name: str) -> list[RemoteFile]:
    stem = amazon_file_stem(name)
    if stem not in AMAZON_2014_CATEGORIES:
        known = ", ".join(f"amazon-{category_slug(c)}" for c in AMAZON_2014_CATEGORIES)
        raise ValueError(f"{name!r} is not one of the Amazon 2014 5-core categories that can be downloaded: {known}.")
    return [
        AMAZON_FILES.get(f"reviews_{stem}_5.json.gz", RemoteFile(f"reviews_{stem}_5.json.gz")),
        AMAZON_FILES.get(f"meta_{stem}.json.gz", RemoteFile(f"meta_{stem}.json.gz")),
    ]


def _fetch(url: str, dest: Path, expected: RemoteFile, hint: str) -> None:
    """Stream `url` to `dest`, then check size and digests against `expected`. `hint` ends network errors."""
    request = urllib.request.Request(url, headers={"User-Agent": f"hf_genrec/{__version__}"})
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=READ_TIMEOUT) as response, open(dest, "wb") as out:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced and announced.isdigit() else expected.size
            size = _human_size(total) if total is not None else "size unknown: the server sent no Content-Length"
            logger.info("Fetching %s (%s)", url, size)
            with progress_bar(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=expected.filename
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"Downloading {url} failed: HTTP {e.code} {e.reason}. {hint}") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {READ_TIMEOUT:g} s"
        raise DownloadError(f"Downloading {url} failed: {reason}. {hint}") from e
    if announced and announced.isdigit() and received != int(announced):
        raise DownloadError(f"Downloading {url} stopped after {received} of {announced} bytes. Try again.")
    checks = [("size", expected.size, received), ("sha256", expected.sha256, sha256.hexdigest())]
    checks.append(("md5", expected.md5, md5.hexdigest()))
    for kind, want, got in checks:
        if want is not None and str(want).lower() != str(got).lower():
            raise ChecksumMismatchError(
                f"Checksum mismatch for {url}: expected {kind} {want}, got {got}. The download is corrupt or the "
                "file changed upstream; it was deleted and nothing was written to the data folder. Try again; if it "
                "keeps failing, check the file by hand and report it."
            )


def _human_size(n: int) -> str:
    value, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}, {n:,} bytes"


def _local_copy_hint(name: str, target: Path, files: Sequence[RemoteFile]) -> str:
    """How to use a copy of `name` the user already has: the folder it belongs in and the three ways to point at
    a data root (the CLI flag, the Python argument, the environment variable)."""
    names = " and ".join(f.filename for f in files)
    what = f"the unpacked contents of {names}" if names.endswith(".zip") else names
    return (
        f"To use a copy you already have, put it in {target} ({what}), or point at a data root that holds a "
        f"{name}/ folder: `--data_dir DIR` for hf-genrec, `data_dir=DIR` for load_interactions, or the "
        f"{DATA_DIR_ENV} environment variable. To download from a mirror instead, set {DOWNLOAD_URL_ENV}."
    )


def _offline_variable() -> str | None:
    """The first of `OFFLINE_ENVS` set to a true value, as `NAME=value`, or `None`."""
    for variable in OFFLINE_ENVS:
        value = os.environ.get(variable, "").strip()
        if value.upper() in ("1", "ON", "YES", "TRUE"):
            return f"{variable}={value}"
    return None


def _resolve(host: str, port: int) -> list[tuple]:
    """`socket.getaddrinfo` with a deadline: without network the system resolver can take minutes to give up."""
    result: list = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as e:
            result.append(e)

    # A daemon thread, so a lookup that never returns cannot keep the interpreter alive.
    thread = threading.Thread(target=lookup, name=f"hf_genrec-resolve-{host}", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT)
    if not result:
        raise TimeoutError(f"the DNS lookup of {host} did not answer within {CONNECT_TIMEOUT:g} s")
    if isinstance(result[0], OSError):
        raise OSError(f"the DNS lookup of {host} failed ({result[0]})") from result[0]
    return result[0]


def _check_reachable(url: str, hint: str) -> None:
    """
    Fail in seconds when the host of `url` (or the proxy in front of it) takes no TCP connection: look it up and
    connect, each with a short deadline, before the download opens its own connection with the longer read timeout.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    host, port, via = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_parts.hostname:
            host, port, via = proxy_parts.hostname, proxy_parts.port or 80, f" through the proxy {proxy}"
    try:
        addresses = _resolve(host, port)
        deadline = time.monotonic() + 2 * CONNECT_TIMEOUT
        error: OSError = TimeoutError("no address to connect to")
        for family, kind, proto, _, address in addresses:
            if time.monotonic() >= deadline:
                break
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(min(CONNECT_TIMEOUT, max(deadline - time.monotonic(), 0.1)))
                    sock.connect(address)
                return
            except TimeoutError:
                error = TimeoutError(f"no TCP connection to {host}:{port} within {CONNECT_TIMEOUT:g} s")
            except OSError as e:
                error = e
        raise error
    except OSError as e:
        raise DownloadError(
            f"Cannot download {url}{via}: {e}. Is this machine offline? Check the network connection. {hint}"
        ) from e


def _check_gzip(path: Path, url: str, kind: str) -> None:
    """Read a gzip file to the end (which checks its CRC-32 and length) and parse its first record."""
    first = None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            first = f.readline()
            while f.read(_CHUNK):
                pass
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise DownloadError(f"{url} is not a complete gzip file ({e}). Try again.") from e
    try:
        if kind == "reviews":
            record = json.loads(first)
            if not {"reviewerID", "asin", "unixReviewTime"} <= set(record):
                raise ValueError("missing reviewerID/asin/unixReviewTime")
        else:
            parse_meta_record(first, path, 1)
    except ValueError as e:
        raise DownloadError(f"{url} does not hold Amazon 2014 {kind} records ({e}).") from e


def _unpack_zip(archive: Path, dest: Path, url: str) -> Path:
    """Unpack `archive` into `dest` and return the folder holding the data (the zip's single top folder)."""
    dest.mkdir()
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DownloadError(f"{url}: member {bad} of the zip fails its CRC check. Try again.")
            root = dest.resolve()
            for member in zf.namelist():
                # Refuse members that would land outside the destination ("zip slip").
                if not (dest / member).resolve().is_relative_to(root):
                    raise DownloadError(f"{url}: zip member {member!r} points outside the target folder; refusing it.")
            zf.extractall(dest)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{url} is not a valid zip file ({e}). Try again.") from e
    entries = [p for p in dest.iterdir() if not p.name.startswith("__MACOSX")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def download_dataset(name: str, root: PathLike, *, base_url: str | None = None) -> Path:
    """
    Download a dataset from its public source into `<root>/<name>` and return that folder.

    The files go to a temporary folder inside `root` first; they are verified (checksums where published, gzip/zip
    integrity otherwise) and only then renamed into place, so a failed or corrupt download leaves nothing behind.
    An existing non-empty `<root>/<name>` is returned as is.

    The source URL, the destination and each file's size (when the server or the pinned entry gives it) are
    logged at INFO level, and a progress bar (silenced by `hf_genrec.utils.progress.disable_progress_bars`) follows
    the bytes. A source that cannot be reached fails within seconds (`CONNECT_TIMEOUT` for the DNS lookup and for
    the connection), and with `HF_HUB_OFFLINE=1` or `HF_DATASETS_OFFLINE=1` set nothing is tried at all; either
    error says how to point at a local copy instead.

    Args:
        name: `"ml-100k"`, `"ml-1m"` or `"amazon-<category>"` (an Amazon 2014 5-core category, e.g.
            `"amazon-beauty"`; downloads `reviews_<Cat>_5.json.gz` and `meta_<Cat>.json.gz`).
        root: The data root.
        base_url: Download from this base URL instead of the publisher's (a mirror, or a local test server).
            Defaults to the environment variable `HF_GENREC_DOWNLOAD_URL`, then the publisher.

    Raises:
        ChecksumMismatchError: When the bytes do not match the recorded checksum (the message has both values
            and the URL).
        DownloadError: On network errors (unreachable source, offline mode, HTTP errors) and damaged archives.
    """
    name = name.strip().lower()
    if name.startswith("amazon-"):
        name = f"amazon-{category_slug(amazon_file_stem(name))}"  # the folder name load_interactions reads
    root = Path(root).expanduser()
    target = join_inside(root, name, what="dataset name")
    if target.is_dir() and any(target.iterdir()):
        logger.info("%s already exists; not downloading.", target)
        return target
    if name in MOVIELENS_FILES:
        files, default_base = [MOVIELENS_FILES[name]], MOVIELENS_URL
    elif name.startswith("amazon-"):
        files, default_base = _amazon_files(name), AMAZON_2014_URL
    else:
        raise ValueError(f"No download source for {name!r}; known: {sorted(MOVIELENS_FILES)} and amazon-<category>.")
    base = (base_url or os.environ.get(DOWNLOAD_URL_ENV) or default_base).rstrip("/") + "/"
    hint = _local_copy_hint(name, target, files)
    offline = _offline_variable()
    if offline is not None:
        raise DownloadError(f"Not downloading {name} from {base}: {offline} asks for offline mode. {hint}")
    logger.info("Downloading %s from %s to %s", name, base, target)
    _check_reachable(base, hint)
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".partial", dir=root))
    try:
        content = staging / "content"
        content.mkdir()
        for remote in files:
            url = base + remote.filename
            _fetch(url, staging / remote.filename, remote, hint)
            if remote.filename.endswith(".zip"):
                content = _unpack_zip(staging / remote.filename, staging / "unpacked", url)
            else:
                _check_gzip(
                    staging / remote.filename, url, "reviews" if remote.filename.startswith("reviews_") else "meta"
                )
                (staging / remote.filename).rename(content / remote.filename)
        if target.is_dir():
            target.rmdir()  # an empty leftover folder
        content.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Saved %s to %s (%.1f s)", name, target, time.perf_counter() - started)
    return target
