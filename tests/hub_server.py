"""A loopback emulation of the Hugging Face Hub HTTP API, enough for the real ``huggingface_hub`` client (2.4).

Serves ``create_repo``, ``upload_folder``/``create_commit`` (incl. ``create_pr``; every file is answered "regular",
so no LFS or Xet transfer happens), ``hf_hub_download``, ``snapshot_download``, ``model_info``/``repo_info``,
``list_repo_files``/``list_repo_tree`` (paged by a ``Link`` header, as on the Hub) and ``file_exists``. Model repos
only, ids ``namespace/name``, any token accepted. Repos live in memory: ``repo -> commit sha -> {path: bytes}``.

In-process, ``with use_loopback_hub(monkeypatch, cache_dir) as hub:`` patches until the test ends:
``huggingface_hub.constants.HF_HUB_OFFLINE = False`` (read from the env at import; the HTTP client refuses every
request while it is true, and CI exports ``HF_HUB_OFFLINE=1``; ``datasets.config`` keeps a copy, patched when
loaded), ``constants.ENDPOINT`` *and* ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (built from the endpoint at import;
``hf_hub_url`` ignores ``ENDPOINT``), ``huggingface_hub.hf_api.api.endpoint`` (the instance behind the module-level
``create_repo``, ``model_info``...), ``constants.HF_HUB_CACHE`` (if ``cache_dir``), and the env vars of ``hub.env``
but ``HF_HOME`` (a fake ``HF_TOKEN``, so the real one is never sent). A subprocess needs only the env vars:
``subprocess.run(..., env={**os.environ, **hub.env(hf_home)})``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    import pytest

USER = "loopback-user"
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<op>revision|tree|preupload|commit)/(?P<rev>[^/]+))?")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_oid(data: bytes) -> str:
    """The git blob sha1: what the Hub uses as ETag and tree ``oid`` of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_sha(files: dict[str, bytes]) -> str:
    """A deterministic 40-hex commit id: sha1 of the sorted (path, blob oid) pairs."""
    return hashlib.sha1("".join(f"{p}\0{git_oid(d)}\n" for p, d in sorted(files.items())).encode()).hexdigest()


class HubError(Exception):
    """An HTTP error answered with the ``X-Error-Code`` header the client maps to its typed errors."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


@dataclass
class Repo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> snapshot: old shas stay resolvable
    refs: dict[str, str] = field(default_factory=dict)  # branch -> sha

    def resolve(self, revision: str) -> tuple[str, dict[str, bytes]]:
        sha = self.refs.get(revision, revision)
        if sha not in self.commits:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, self.commits[sha]


class LoopbackHub:
    """The in-memory Hub behind a ``ThreadingHTTPServer`` on 127.0.0.1 (daemon thread, random free port)."""

    def __init__(self, tree_page_size: int = 1000) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  # "METHOD /path?query", to assert what the client called
        self.tree_page_size = tree_page_size  # the Hub pages trees by 1000; lower it to exercise pagination
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> LoopbackHub:
        handler = type("Handler", (_Handler,), {"hub": self})  # one handler class per hub: no shared state
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="loopback-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` (a branch or a commit sha)."""
        return dict(self.repos[repo_id].resolve(revision)[1])

    def sha(self, repo_id: str, revision: str = "main") -> str:
        return self.repos[repo_id].resolve(revision)[0]

    def env(self, hf_home: str) -> dict[str, str]:
        """Environment variables that point a fresh process at this hub (loopback must bypass any proxy)."""
        env = {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HOME": hf_home}
        no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY")]))
        return {**env, "HF_TOKEN": "hf_loopback", "NO_PROXY": no_proxy, "no_proxy": no_proxy}

    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return self.repos[repo_id]

    # --- endpoints, called under self.lock: each returns the JSON body (and status) or raises HubError ---

    def create_repo(self, body: dict) -> tuple[int, dict]:
        if body.get("type", "model") != "model":
            raise HubError(400, None, "LoopbackHub only stores model repos")
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:  # create_repo(exist_ok=True) reads "url" from the 409 body too
            return 409, {"error": "You already created this model repo", "url": url}
        empty = commit_sha({})
        self.repos[repo_id] = Repo(body.get("visibility") == "private", commits={empty: {}}, refs={"main": empty})
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def info(self, repo_id: str, revision: str) -> dict:
        sha, files = self.repo(repo_id).resolve(revision)
        siblings = [{"rfilename": p, "size": len(d), "blobId": git_oid(d)} for p, d in sorted(files.items())]
        info = {"id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": sha, "tags": []}
        return {**info, "private": self.repos[repo_id].private, "siblings": siblings}

    def tree(self, repo_id: str, revision: str, path: str, recursive: bool) -> list[dict]:
        _, files = self.repo(repo_id).resolve(revision)
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries: dict[str, dict] = {}
        for name, data in files.items():
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            # recursive: every folder on the way down, then the file; else only the first level below `path`
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folder = prefix + "/".join(parts[:depth])
                oid = hashlib.sha1(folder.encode()).hexdigest()  # any stable id: the client never resolves it
                entries[folder] = {"type": "directory", "oid": oid, "path": folder}
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "oid": git_oid(data), "size": len(data), "path": name}
        if prefix and not entries:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        return [entries[key] for key in sorted(entries)]

    def preupload(self, repo_id: str, revision: str, body: dict) -> dict:
        _, files = self.repo(repo_id).resolve(revision)
        # "oid" of an unchanged file lets the client drop it from the commit, as on the Hub
        oids = {p: git_oid(files[p]) if p in files else None for p in (f["path"] for f in body["files"])}
        rows = [{"path": p, "uploadMode": "regular", "shouldIgnore": False, "oid": oid} for p, oid in oids.items()]
        return {"files": rows}

    def commit(self, repo_id: str, revision: str, lines: list[dict], create_pr: bool) -> dict:
        repo = self.repo(repo_id)
        parent, files = repo.resolve(revision)
        if revision not in repo.refs:
            raise HubError(400, None, f"Cannot commit to {revision}: not a branch")
        files = dict(files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header" and value.get("parentCommit") not in (None, parent):
                raise HubError(412, None, f"parentCommit {value['parentCommit']} is not the head of {revision}")
            elif key == "file":  # regular files only: preupload never answers "lfs"
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {value['path']}")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(folder)}
            elif key != "header":
                raise HubError(400, None, f"LoopbackHub does not support {key!r} commit operations")
        sha = commit_sha(files)
        repo.commits[sha] = files
        pr_url = None
        if create_pr:
            number = 1 + sum(ref.startswith("refs/pr/") for ref in repo.refs)
            repo.refs[f"refs/pr/{number}"] = sha
            pr_url = f"{self.url}/{repo_id}/discussions/{number}"
        else:
            repo.refs[revision] = sha
        return {"commitOid": sha, "commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "pullRequestUrl": pr_url}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the Hub; every response therefore carries Content-Length
    hub: LoopbackHub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _reply(self, status: int, body: bytes | dict | list, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # always drain, for keep-alive
        hub, url = self.hub, urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        hub.requests.append(f"{self.command} {self.path}")
        try:
            with hub.lock:
                self._route(url.path, query, body)
        except HubError as error:
            headers = {"X-Error-Message": str(error), **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._reply(error.status, {"error": str(error)}, headers)

    def _route(self, path: str, query: dict[str, str], body: bytes) -> None:
        hub, method = self.hub, self.command
        if method == "GET" and path == "/api/whoami-v2":
            auth = {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}}
            return self._reply(200, {"type": "user", "id": USER, "name": USER, "orgs": [], "auth": auth})
        if method == "POST" and path == "/api/repos/create":
            return self._reply(*hub.create_repo(json.loads(body)))
        if method == "POST" and path == "/api/validate-yaml":  # create_commit validates README.md front matter
            return self._reply(200, {"errors": [], "warnings": []})
        if match := _API.match(path):
            repo_id, op, rev = match["repo"], match["op"], unquote(match["rev"] or "main")
            rest = unquote(path[match.end() :])
            if method == "GET" and op in (None, "revision") and not rest:
                return self._reply(200, hub.info(repo_id, rev))
            if method == "GET" and op == "tree":
                entries = hub.tree(repo_id, rev, rest, query.get("recursive", "").lower() in ("1", "true"))
                start = int(query.get("cursor", 0))
                end = start + hub.tree_page_size
                headers = {}
                if end < len(entries):  # the client follows rel="next" like GitHub's pagination
                    next_query = urlencode({**query, "cursor": end})
                    headers["Link"] = f'<{hub.url}{quote(path)}?{next_query}>; rel="next"'
                return self._reply(200, entries[start:end], headers)
            if method == "POST" and op == "preupload":
                return self._reply(200, hub.preupload(repo_id, rev, json.loads(body)))
            if method == "POST" and op == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                return self._reply(200, hub.commit(repo_id, rev, lines, query.get("create_pr") == "1"))
        if method in ("GET", "HEAD") and (match := _RESOLVE.match(path)):
            repo_id, rev, filename = match["repo"], unquote(match["rev"]), unquote(match["path"])
            sha, files = hub.repo(repo_id).resolve(rev)
            if filename not in files:  # the client caches the miss under .no_exist/<X-Repo-Commit>
                raise HubError(404, "EntryNotFound", f"{filename} not found", {"X-Repo-Commit": sha})
            data = files[filename]
            # No X-Xet-Hash header: the client then downloads with a plain GET on this same url.
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_oid(data)}"', "Content-Type": "application/octet-stream"}
            return self._reply(200, data, headers)
        # e.g. GET /api/agent-harnesses, fetched once per process by the client's user-agent builder: a 404 makes
        # it fall back to an empty registry instead of caching our answer under the real HF_HOME
        raise HubError(404, None, f"LoopbackHub has no route for {method} {path}")

    do_GET = do_HEAD = do_POST = _handle


@contextmanager
def use_loopback_hub(monkeypatch: pytest.MonkeyPatch, cache_dir: str | None = None) -> Iterator[LoopbackHub]:
    """Start a hub and point ``huggingface_hub`` (and subprocesses) at it; see the module docstring."""
    from huggingface_hub import close_session, constants, hf_api

    hub = LoopbackHub().start()
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(hf_api.api, "endpoint", hub.url)
        # transformers keeps its own HfApi, made on first use with the endpoint of that moment (5.25: utils.hub.hf_api);
        # a later test's hub would otherwise be reached at the stopped one's address, retried for 90 s
        if "transformers.utils.hub" in sys.modules:
            monkeypatch.setattr(sys.modules["transformers.utils.hub"], "_hf_api", None, raising=False)
        if cache_dir is not None:
            monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
        if "datasets.config" in sys.modules:
            monkeypatch.setattr(sys.modules["datasets.config"], "HF_HUB_OFFLINE", False)
        for name, value in hub.env(constants.HF_HOME).items():
            if name != "HF_HOME":  # a subprocess gets its own HF_HOME from hub.env(...)
                monkeypatch.setenv(name, value)
        yield hub
    finally:
        hub.stop()
        close_session()  # drop pooled keep-alive connections to the stopped server
