"""The real download code against a loopback HTTP server (127.0.0.1, in a thread); nothing touches the internet."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import logging
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from hf_genrec.data import ChecksumMismatchError, DownloadError, download_dataset, load_interactions
from hf_genrec.data import download as download_module
from hf_genrec.data.download import RemoteFile

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve `tmp_path / "www"` on a free loopback port; point HF_GENREC_DOWNLOAD_URL at it."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv("HF_GENREC_DOWNLOAD_URL", url)
    for variable in OFFLINE_VARIABLES:  # a runner set to offline must not turn these tests into errors
        monkeypatch.delenv(variable, raising=False)
    yield www, url
    httpd.shutdown()
    httpd.server_close()


def ml100k_zip() -> bytes:
    flags = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    files = {
        "ml-100k/u.data": "1\t10\t5\t100\n1\t20\t3\t50\n2\t10\t4\t70\n",
        "ml-100k/u.item": f"10|Ten (1990)|01-Jan-1990||u|{flags}\n20|Twenty (1995)|01-Jan-1995||u|{flags}\n",
        "ml-100k/u.user": "1|20|M|writer|00000\n2|30|F|other|11111\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("latin-1"))
    return buffer.getvalue()


def pin(monkeypatch, payload: bytes, **override) -> RemoteFile:
    entry = RemoteFile(
        "ml-100k.zip",
        sha256=hashlib.sha256(payload).hexdigest(),
        md5=hashlib.md5(payload).hexdigest(),
        size=len(payload),
    )
    entry = RemoteFile(**{**entry.__dict__, **override})
    monkeypatch.setitem(download_module.MOVIELENS_FILES, "ml-100k", entry)
    return entry


def test_published_movielens_checksums_are_recorded():
    assert download_module.MOVIELENS_FILES["ml-100k"].md5 == "0e33842e24a9c977be4e0107933c0723"
    assert download_module.MOVIELENS_FILES["ml-1m"].size == 5917549
    assert all(len(f.sha256) == 64 for f in download_module.MOVIELENS_FILES.values())


def test_download_then_read_movielens_zip(server, tmp_path, monkeypatch):
    www, _ = server
    payload = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(payload)
    pin(monkeypatch, payload)
    root = tmp_path / "root"
    data = load_interactions("ml-100k", root)
    assert (data.num_users, data.num_items, data.num_interactions) == (2, 2, 3)
    assert data.sequences["item_ids"] == [["20", "10"], ["10"]]
    assert data.items["title"] == ["Twenty", "Ten"]
    assert sorted(p.name for p in root.iterdir()) == ["ml-100k"]  # no archive or staging folder left over
    assert sorted(p.name for p in (root / "ml-100k").iterdir()) == ["u.data", "u.item", "u.user"]
    # A second call finds the folder and does not download again.
    (www / "ml-100k.zip").unlink()
    assert load_interactions("ml-100k", root).num_interactions == 3


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path, monkeypatch):
    www, url = server
    payload = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(payload)
    pin(monkeypatch, payload, sha256="0" * 64)
    root = tmp_path / "root"
    with pytest.raises(ChecksumMismatchError) as info:
        download_dataset("ml-100k", root)
    message = str(info.value)
    assert "expected sha256 " + "0" * 64 in message
    assert "got " + hashlib.sha256(payload).hexdigest() in message
    assert url + "ml-100k.zip" in message
    assert list(root.iterdir()) == []


def test_size_mismatch_is_a_checksum_error(server, tmp_path, monkeypatch):
    www, _ = server
    payload = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(payload)
    pin(monkeypatch, payload, size=len(payload) + 1)
    with pytest.raises(ChecksumMismatchError, match=f"expected size {len(payload) + 1}, got {len(payload)}"):
        download_dataset("ml-100k", tmp_path / "root")


def test_http_error_names_the_url(server, tmp_path, monkeypatch):
    _, url = server
    pin(monkeypatch, b"x")
    with pytest.raises(DownloadError, match=f"{url}ml-100k.zip failed: HTTP 404") as info:
        download_dataset("ml-100k", tmp_path / "root")
    assert not isinstance(info.value, ChecksumMismatchError)
    assert list((tmp_path / "root").iterdir()) == []


def test_zip_member_escaping_the_folder_is_refused(server, tmp_path, monkeypatch):
    www, _ = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    (www / "ml-100k.zip").write_bytes(buffer.getvalue())
    pin(monkeypatch, buffer.getvalue())
    with pytest.raises(DownloadError, match="outside the target folder"):
        download_dataset("ml-100k", tmp_path / "root")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "root").iterdir()) == []


def amazon_files(www: Path) -> None:
    reviews = [
        {"reviewerID": "U1", "asin": "A", "unixReviewTime": 2},
        {"reviewerID": "U1", "asin": "B", "unixReviewTime": 1},
    ]
    (www / "reviews_Beauty_5.json.gz").write_bytes(gzip.compress("\n".join(map(json.dumps, reviews)).encode()))
    meta = "{'asin': 'A', 'title': 'Alpha', 'categories': [['Beauty']]}\n{'asin': 'B', 'title': 'Beta'}\n"
    (www / "meta_Beauty.json.gz").write_bytes(gzip.compress(meta.encode()))


def test_download_amazon_category_with_explicit_base_url(server, tmp_path, monkeypatch):
    www, url = server
    amazon_files(www)
    monkeypatch.setenv("HF_GENREC_DOWNLOAD_URL", "http://127.0.0.1:9/unused/")  # the parameter wins
    folder = download_dataset("amazon-beauty", tmp_path / "root", base_url=url)
    assert sorted(p.name for p in folder.iterdir()) == ["meta_Beauty.json.gz", "reviews_Beauty_5.json.gz"]
    data = load_interactions("amazon-beauty", tmp_path / "root")
    assert data.sequences["item_ids"] == [["B", "A"]]
    assert data.items["title"] == ["Beta", "Alpha"]


def test_truncated_amazon_gzip_is_rejected(server, tmp_path):
    www, url = server
    amazon_files(www)
    whole = (www / "meta_Beauty.json.gz").read_bytes()
    (www / "meta_Beauty.json.gz").write_bytes(whole[:-6])
    with pytest.raises(DownloadError, match=f"{url}meta_Beauty.json.gz is not a complete gzip file"):
        load_interactions("amazon-beauty", tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []


def test_unknown_amazon_category_is_not_downloaded(server, tmp_path):
    with pytest.raises(ValueError, match="not one of the Amazon 2014 5-core categories"):
        download_dataset("amazon-garden-gnomes", tmp_path)


# --- Saying what it does, and failing fast when the source cannot be reached --------------------------------------


def assert_says_how_to_use_a_local_copy(message: str, root: Path) -> None:
    assert str(root / "ml-100k") in message
    assert "--data_dir" in message and "data_dir=" in message and "HF_GENREC_DATA_DIR" in message


def test_download_logs_source_size_and_destination(server, tmp_path, monkeypatch, caplog):
    www, url = server
    payload = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(payload)
    pin(monkeypatch, payload)
    root = tmp_path / "root"
    with caplog.at_level(logging.INFO, logger="hf_genrec.data"):
        load_interactions("ml-100k", root)
    text = caplog.text
    assert f"{url}ml-100k.zip ({len(payload):,} bytes)" in text  # source and the size the server announced
    assert f"to {root / 'ml-100k'}" in text  # destination, said before the download starts
    assert text.index(f"to {root / 'ml-100k'}") < text.index("ml-100k.zip (")


def test_download_progress_bar_follows_the_switch(server, tmp_path, monkeypatch, capsys):
    www, _ = server
    payload = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(payload)
    pin(monkeypatch, payload)
    monkeypatch.setattr("hf_genrec.utils.progress._disabled", False)
    download_dataset("ml-100k", tmp_path / "shown")
    bar = capsys.readouterr().err
    assert "ml-100k.zip" in bar and "100%" in bar  # shown even though pytest's stderr is no terminal
    monkeypatch.setattr("hf_genrec.utils.progress._disabled", True)
    download_dataset("ml-100k", tmp_path / "hidden")
    assert "ml-100k.zip" not in capsys.readouterr().err


@pytest.fixture
def closed_port_url(monkeypatch):
    """A loopback URL where nothing listens (connections are refused at once); no offline variable set."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    url = f"http://127.0.0.1:{port}/"
    monkeypatch.setenv("HF_GENREC_DOWNLOAD_URL", url)
    return url


def test_unreachable_source_fails_with_how_to_use_a_local_copy(closed_port_url, tmp_path):
    root = tmp_path / "root"
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        load_interactions("ml-100k", root)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert closed_port_url in message and "offline" in message
    assert_says_how_to_use_a_local_copy(message, root)
    assert not root.exists() or list(root.iterdir()) == []


def test_dns_lookup_that_never_answers_fails_within_seconds(tmp_path, monkeypatch):
    # Without network the system resolver can wait minutes per name; the download must give up after its own
    # deadline (the default one: this is what a user without network gets).
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hanging_getaddrinfo(host, *args, **kwargs):
        if host == "datasets.example.invalid":
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_GENREC_DOWNLOAD_URL", "http://datasets.example.invalid/movielens/")
    start = time.perf_counter()
    try:
        with pytest.raises(DownloadError, match="DNS lookup of datasets.example.invalid did not answer") as info:
            download_dataset("ml-100k", tmp_path / "root")
        elapsed = time.perf_counter() - start
    finally:
        release.set()
    assert elapsed < download_module.CONNECT_TIMEOUT + 3
    assert_says_how_to_use_a_local_copy(str(info.value), tmp_path / "root")


def test_server_that_never_answers_times_out(tmp_path, monkeypatch):
    # The TCP handshake completes (the kernel queues it) but no HTTP reply ever comes.
    monkeypatch.setattr(download_module, "READ_TIMEOUT", 1.0)
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        monkeypatch.setenv("HF_GENREC_DOWNLOAD_URL", f"http://127.0.0.1:{listener.getsockname()[1]}/")
        start = time.perf_counter()
        with pytest.raises(DownloadError, match="no answer within 1 s") as info:
            download_dataset("ml-100k", tmp_path / "root")
        assert time.perf_counter() - start < 4
    assert_says_how_to_use_a_local_copy(str(info.value), tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []


@pytest.mark.parametrize("variable", OFFLINE_VARIABLES)
def test_offline_variable_fails_at_once_without_a_request(server, tmp_path, monkeypatch, variable):
    www, _ = server
    payload = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(payload)  # reachable: only the variable stops the download
    pin(monkeypatch, payload)
    monkeypatch.setenv(variable, "1")
    root = tmp_path / "root"
    start = time.perf_counter()
    with pytest.raises(DownloadError, match=f"{variable}=1 asks for offline mode") as info:
        load_interactions("ml-100k", root)
    assert time.perf_counter() - start < 1
    assert_says_how_to_use_a_local_copy(str(info.value), root)
    assert not root.exists()


def test_cli_train_offline_says_how_to_point_at_a_local_copy(closed_port_url, tmp_path, monkeypatch, capsys):
    from hf_genrec.cli.main import main

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    root = tmp_path / "data"
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(root), "--output_dir", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "hf-genrec train: error: Not downloading ml-100k" in err and "HF_DATASETS_OFFLINE=1" in err
    assert "Traceback" not in err
    assert_says_how_to_use_a_local_copy(err, root)
