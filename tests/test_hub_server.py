"""The real ``huggingface_hub`` client, end to end against the loopback Hub of ``tests/hub_server.py``."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from .hub_server import LoopbackHub, use_loopback_hub

REPO = "someone/tiny-bundle"
FILES = {
    "config.json": b'{"d_model": 32}\n',
    "README.md": b"---\nlicense: mit\n---\n# tiny\n",
    "semantic_ids/codes.json": b'{"item0": [1, 2, 3]}\n',
    "quantizer/deep/state.bin": random.Random(0).randbytes(100_000),  # binary, ~100 KB
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) as hub:
        yield hub


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def read_folder(folder: str | Path) -> dict[str, bytes]:
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def pushed(hub: LoopbackHub, tmp_path: Path) -> str:
    """``REPO`` created and ``FILES`` uploaded in one commit; returns the commit sha."""
    api = HfApi(endpoint=hub.url, token="hf_fake")
    url = api.create_repo(REPO, exist_ok=True, private=True)
    assert url.repo_id == REPO and api.create_repo(REPO, exist_ok=True).repo_id == REPO  # 409 => exist_ok
    info = api.upload_folder(repo_id=REPO, folder_path=write_folder(tmp_path / "src", FILES), commit_message="up")
    assert info.oid == hub.sha(REPO) and info.commit_url == f"{hub.url}/{REPO}/commit/{info.oid}"
    return info.oid


def test_upload_folder_then_snapshot_download_returns_identical_bytes(hub, pushed, tmp_path):
    assert hub.files(REPO) == FILES
    folder = snapshot_download(REPO, endpoint=hub.url, cache_dir=tmp_path / "dl")
    assert Path(folder).name == pushed
    assert read_folder(folder) == FILES
    assert not any("xet" in request.lower() for request in hub.requests)  # plain HTTP only, both ways


def test_repo_info_tree_and_file_exists(hub, pushed):
    api = HfApi(endpoint=hub.url)
    info = api.model_info(REPO)
    assert info.sha == pushed and info.private is True
    assert sorted(s.rfilename for s in info.siblings) == sorted(FILES)
    assert api.repo_info(REPO, revision=pushed).sha == pushed
    assert sorted(api.list_repo_files(REPO)) == sorted(FILES)
    top = {(e.path, type(e).__name__) for e in api.list_repo_tree(REPO)}
    files, folders = {"config.json", "README.md"}, {"semantic_ids", "quantizer"}
    assert top == {(p, "RepoFile") for p in files} | {(p, "RepoFolder") for p in folders}
    assert [e.path for e in api.list_repo_tree(REPO, "quantizer")] == ["quantizer/deep"]
    assert api.file_exists(REPO, "quantizer/deep/state.bin") and not api.file_exists(REPO, "nope.txt")
    assert not api.file_exists("someone/missing", "config.json")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, "no-such-folder"))


def test_tree_pagination_follows_link_header(hub, pushed):
    hub.tree_page_size = 2
    entries = list(HfApi(endpoint=hub.url).list_repo_tree(REPO, recursive=True))
    assert sorted(e.path for e in entries if type(e).__name__ == "RepoFile") == sorted(FILES)
    assert len(entries) == len(FILES) + 3  # + semantic_ids, quantizer, quantizer/deep
    assert sum("/tree/" in request for request in hub.requests) == 4  # 7 entries, 2 per page


def test_hf_hub_download_and_typed_errors(hub, pushed, tmp_path):
    cache = tmp_path / "dl"
    path = hf_hub_download(REPO, "quantizer/deep/state.bin", endpoint=hub.url, cache_dir=cache)
    assert Path(path).read_bytes() == FILES["quantizer/deep/state.bin"]
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt", endpoint=hub.url, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("someone/missing", "config.json", endpoint=hub.url, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("someone/missing", endpoint=hub.url, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-branch", endpoint=hub.url, cache_dir=cache)


def test_second_commit_updates_sha_and_downloads(hub, pushed, tmp_path):
    api, cache = HfApi(endpoint=hub.url), tmp_path / "dl"
    first = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache)
    assert Path(first).read_bytes() == FILES["config.json"]
    info = api.upload_file(path_or_fileobj=b'{"d_model": 64}\n', path_in_repo="config.json", repo_id=REPO)
    api.delete_file("README.md", repo_id=REPO)
    assert info.oid != pushed and hub.sha(REPO) not in (pushed, info.oid)
    path = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache)
    assert Path(path).read_bytes() == b'{"d_model": 64}\n'
    assert "README.md" not in read_folder(snapshot_download(REPO, endpoint=hub.url, cache_dir=cache))
    # the old commit stays downloadable, by sha
    old = hf_hub_download(REPO, "config.json", revision=pushed, endpoint=hub.url, cache_dir=tmp_path / "old")
    assert Path(old).read_bytes() == FILES["config.json"]


def test_unchanged_upload_is_skipped_like_on_the_hub(hub, pushed, tmp_path):
    commits = sum("/commit/" in request for request in hub.requests)
    info = HfApi(endpoint=hub.url).upload_folder(repo_id=REPO, folder_path=tmp_path / "src", commit_message="again")
    assert info.oid == pushed  # preupload's "oid" told the client that nothing changed: no commit was sent
    assert sum("/commit/" in request for request in hub.requests) == commits


def test_default_endpoint_and_cache_are_patched(hub, pushed):
    # no endpoint=, no cache_dir=: what library code (hf_genrec.bundle.hub) does
    import huggingface_hub

    assert huggingface_hub.model_info(REPO).sha == pushed
    folder = snapshot_download(REPO)
    assert Path(folder).is_relative_to(Path(constants.HF_HUB_CACHE).resolve()) and read_folder(folder) == FILES


def test_fresh_subprocess_reaches_the_hub_through_env_vars(hub, pushed, tmp_path):
    code = (
        "from huggingface_hub import snapshot_download, constants;"
        "assert not constants.HF_HUB_OFFLINE;"
        f"print(snapshot_download({REPO!r}))"
    )
    env = {**os.environ, **hub.env(str(tmp_path / "home"))}
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # would win over HF_HOME
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    folder = result.stdout.strip().splitlines()[-1]
    assert Path(folder).is_relative_to((tmp_path / "home").resolve()) and read_folder(folder) == FILES


def test_create_pr_commits_to_a_pr_ref(hub, pushed, tmp_path):
    api = HfApi(endpoint=hub.url)
    info = api.upload_file(path_or_fileobj=b"new", path_in_repo="extra.txt", repo_id=REPO, create_pr=True)
    assert info.pr_num == 1 and info.pr_revision == "refs/pr/1"
    assert hub.sha(REPO) == pushed and hub.files(REPO, "refs/pr/1")["extra.txt"] == b"new"
    path = hf_hub_download(REPO, "extra.txt", revision="refs/pr/1", endpoint=hub.url, cache_dir=tmp_path / "dl")
    assert Path(path).read_bytes() == b"new"
