"""Download public datasets into the data root, verifying what each publisher lets us verify."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..utils.paths import join_inside
from ..version import __version__
from ._io import PathLike
from .amazon import AMAZON_2014_CATEGORIES, amazon_file_stem, category_slug, parse_meta_record

logger = logging.getLogger(__name__)

DOWNLOAD_URL_ENV = "HF_GENREC_DOWNLOAD_URL"
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


def _fetch(url: str, dest: Path, expected: RemoteFile) -> None:
    """Stream `url` to `dest`, then check size and digests against `expected`."""
    request = urllib.request.Request(url, headers={"User-Agent": f"hf_genrec/{__version__}"})
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced and announced.isdigit() else expected.size
            with tqdm(total=total, unit="B", unit_scale=True, desc=expected.filename, disable=None) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"Downloading {url} failed: HTTP {e.code} {e.reason}. {_manual_hint(url)}") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise DownloadError(f"Downloading {url} failed: {e}. {_manual_hint(url)}") from e
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


def _manual_hint(url: str) -> str:
    return (
        f"Check the network connection, or download the file yourself and unpack it into the data folder "
        f"(set {DOWNLOAD_URL_ENV} to use a mirror; the URL tried was {url})."
    )


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

    Args:
        name: `"ml-100k"`, `"ml-1m"` or `"amazon-<category>"` (an Amazon 2014 5-core category, e.g.
            `"amazon-beauty"`; downloads `reviews_<Cat>_5.json.gz` and `meta_<Cat>.json.gz`).
        root: The data root.
        base_url: Download from this base URL instead of the publisher's (a mirror, or a local test server).
            Defaults to the environment variable `HF_GENREC_DOWNLOAD_URL`, then the publisher.

    Raises:
        ChecksumMismatchError: When the bytes do not match the recorded checksum (the message has both values
            and the URL).
        DownloadError: On network errors and damaged archives.
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
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".partial", dir=root))
    try:
        content = staging / "content"
        content.mkdir()
        for remote in files:
            url = base + remote.filename
            logger.info("Downloading %s", url)
            _fetch(url, staging / remote.filename, remote)
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
    logger.info("Saved %s to %s", name, target)
    return target
