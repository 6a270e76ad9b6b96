"""A loopback Hugging Face Hub for tests.

`HubServer` serves, on 127.0.0.1, the subset of the Hub HTTP API that the real `huggingface_hub`
client (and through it `transformers`) uses to create repos, push commits (regular files inline,
large/binary files through the LFS batch API), read repo info and trees, resolve and download files
at a branch or a commit, create branches and validate model card metadata.

It is written against the wire format of `huggingface_hub` 2.4 with Xet disabled
(`HF_HUB_DISABLE_XET=1`): the client then uploads through the legacy LFS "basic" transfer.

Storage is in memory: commits are immutable snapshots of the whole tree, branches point to commits,
LFS objects are stored once per server by their sha256. Behaviour that tests rely on follows the
real Hub: a commit that changes nothing creates no new commit, `parentCommit` mismatches are
rejected, a failed commit leaves the branch where it was, errors carry `X-Error-Code` /
`X-Error-Message` headers so that the client raises its usual typed errors.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import re
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

__all__ = ["HubServer", "HubError", "HubFixture", "client_env", "patch_client_constants", "run_python", "validate_card_metadata"]

DEFAULT_BRANCH = "main"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# Files of this size or more always go through LFS, as on the Hub.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

# The `.gitattributes` the Hub writes in the initial commit of a new model repo. Its `filter=lfs`
# patterns decide, with size and binary content, which files the preupload endpoint routes to LFS.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
        "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
        "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
        "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip",
        "*.zst", "*tfevents*", "*.gguf",
    )
)

# Pipeline tags the Hub accepts in model card metadata (the Hub's task list).
KNOWN_PIPELINE_TAGS = frozenset(
    {
        "text-classification", "token-classification", "table-question-answering", "question-answering",
        "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation",
        "fill-mask", "sentence-similarity", "text-to-speech", "text-to-audio", "automatic-speech-recognition",
        "audio-to-audio", "audio-classification", "audio-text-to-text", "voice-activity-detection",
        "depth-estimation", "image-classification", "object-detection", "image-segmentation", "text-to-image",
        "image-to-text", "image-to-image", "image-to-video", "unconditional-image-generation",
        "video-classification", "reinforcement-learning", "robotics", "tabular-classification",
        "tabular-regression", "tabular-to-text", "table-to-text", "multiple-choice", "text-ranking",
        "text-retrieval", "time-series-forecasting", "text-to-video", "image-text-to-text",
        "image-text-to-image", "image-text-to-video", "visual-question-answering",
        "document-question-answering", "zero-shot-image-classification", "graph-ml", "mask-generation",
        "zero-shot-object-detection", "text-to-3d", "image-to-3d", "image-feature-extraction",
        "video-text-to-text", "keypoint-detection", "visual-document-retrieval", "any-to-any",
        "video-to-video", "other",
    }
)

_REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_MODEL_ID_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
_YAML_BLOCK_RE = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
_API_ACTIONS = frozenset({"revision", "tree", "preupload", "commit", "branch", "refs", "commits", "paths-info"})


def _now() -> str:
    """Timestamp in the format the client's `parse_datetime` expects."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(content: bytes) -> str:
    """Git's blob id: what the Hub reports as ETag / `oid` for files stored in git."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubError(Exception):
    """An HTTP error response, with the Hub's `X-Error-Code` where the client dispatches on it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body


@dataclass(frozen=True)
class Blob:
    """File content at a path in a commit; LFS files keep their content here too (by reference)."""

    content: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def oid(self) -> str:
        """Git blob id: of the pointer file for LFS files, as in git."""
        if self.lfs:
            return git_blob_oid(lfs_pointer(self.sha256, self.size))
        return git_blob_oid(self.content)

    @property
    def etag(self) -> str:
        """What the client caches the file under: sha256 for LFS, the git blob id otherwise."""
        return self.sha256 if self.lfs else git_blob_oid(self.content)


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of the whole tree."""

    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    """A repository: its commits and the branches (and tags) pointing into them."""

    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """Branch, tag, full commit id or unambiguous commit prefix (>= 7 hex) -> commit."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.tags:
            return self.commits[self.tags[revision]]
        if revision in self.commits:
            return self.commits[revision]
        if re.fullmatch(r"[0-9a-f]{7,39}", revision):
            matches = [oid for oid in self.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return self.commits[matches[0]]
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def history(self, start: Commit) -> list[Commit]:
        """Commits reachable from `start`, newest first."""
        out = [start]
        while out[-1].parent is not None:
            out.append(self.commits[out[-1].parent])
        return out


@dataclass
class _Request:
    """What a handler sees of an HTTP request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    user: str | None

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise HubError(400, f"Invalid JSON body: {exc}") from exc


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def of_json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
        return cls(status=status, body=json.dumps(payload).encode(), headers=headers or {})


class HubServer:
    """An in-memory Hub speaking the `huggingface_hub` client's protocol, on 127.0.0.1.

    Use it as a context manager or call `start()` / `stop()`. Knobs for tests:

    - `token` / `user`: the default account; `add_user()` adds more (with organisations).
    - `require_token`: when true, every request without a valid `Authorization: Bearer` gets 401,
      reads of public repos included (the Hub itself lets anonymous users read public repos, and
      always requires a token for writes, which this server also does).
    - `fail_next_commit = 500` (or any status): the next commit request fails with that status and
      changes nothing. `fail_next["<endpoint>"] = status` does the same for other endpoints
      ("create_repo", "preupload", "lfs_batch", "lfs_upload", "lfs_verify", "resolve", "info",
      "tree", "validate_yaml"). Note that the client retries 5xx on preupload, LFS batch and LFS
      uploads (not on commits).
    - `requests`: every (method, path) received, to assert what a client did or did not do;
      `unhandled`: requests to endpoints this server does not implement.
    - `seed_repo()`: create a repo with files directly (any namespace, no HTTP), e.g. to plant a
      base model under its real Hub id.
    """

    def __init__(
        self,
        *,
        user: str = "user",
        token: str = "hf_loopback_test_token_0123456789",
        require_token: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.token = token
        self.require_token = require_token
        self.fail_next: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self._tokens: dict[str, str] = {}
        self._orgs: dict[str, set[str]] = {}
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_user(user, token)

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL, to be used as `HF_ENDPOINT`."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> HubServer:
        """Bind (port 0 = a free port) and serve in a daemon thread."""
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- test controls

    @property
    def fail_next_commit(self) -> int | None:
        """Status the next commit request fails with (None: no failure pending)."""
        return self.fail_next.get("commit")

    @fail_next_commit.setter
    def fail_next_commit(self, status: int | None) -> None:
        if status is None:
            self.fail_next.pop("commit", None)
        else:
            self.fail_next["commit"] = int(status)

    def add_user(self, name: str, token: str, orgs: tuple[str, ...] | list[str] = ()) -> None:
        """Register an account: its token, and organisations it may write to."""
        with self._lock:
            self._tokens[token] = name
            self._orgs[name] = set(orgs)

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The stored repo (raises KeyError if absent), for assertions."""
        return self.repos[(repo_type, repo_id)]

    def head(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> str:
        """Commit id a branch points to."""
        return self.repo(repo_id, repo_type).resolve(revision).oid

    def seed_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | str],
        *,
        repo_type: str = "model",
        private: bool = False,
        commit_message: str = "Seed",
        branch: str = DEFAULT_BRANCH,
    ) -> str:
        """Create (if needed) `repo_id` and commit `files` to `branch` directly; returns the commit id."""
        with self._lock:
            repo = self.repos.get((repo_type, repo_id)) or self._create_repo(repo_id, repo_type, private, "seed")
            base = repo.resolve(branch) if branch in repo.branches else repo.resolve(DEFAULT_BRANCH)
            new_files = dict(base.files)
            for path, data in files.items():
                raw = data.encode() if isinstance(data, str) else data
                lfs = self._wants_lfs(base, path, len(raw), raw[:512])
                if lfs:
                    self.lfs_objects[hashlib.sha256(raw).hexdigest()] = raw
                new_files[path] = Blob(raw, lfs)
            commit = self._make_commit(repo, base, new_files, commit_message, "", "seed")
            repo.branches[branch] = commit.oid
            return commit.oid

    # ----------------------------------------------------------------------------- storage

    def _create_repo(self, repo_id: str, repo_type: str, private: bool, author: str) -> Repo:
        repo = Repo(repo_id=repo_id, repo_type=repo_type, private=private, created_at=_now())
        # The Hub starts every repo with a commit holding `.gitattributes`, so `main` always exists.
        initial = {".gitattributes": Blob(DEFAULT_GITATTRIBUTES.encode(), False)}
        commit = self._make_commit(repo, None, initial, "initial commit", "", author)
        repo.branches[DEFAULT_BRANCH] = commit.oid
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def _make_commit(
        self, repo: Repo, parent: Commit | None, files: dict[str, Blob], title: str, message: str, author: str
    ) -> Commit:
        self._counter += 1
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_type}/{repo.repo_id}\n{parent.oid if parent else ''}\n{title}\n{message}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].oid}\n".encode())
        digest.update(f"{time.time_ns()}/{self._counter}".encode())
        commit = Commit(
            oid=digest.hexdigest(),
            parent=parent.oid if parent else None,
            title=title,
            message=message,
            author=author,
            date=_now(),
            files=dict(files),
        )
        repo.commits[commit.oid] = commit
        return commit

    @staticmethod
    def _lfs_patterns(commit: Commit) -> list[str]:
        attributes = commit.files.get(".gitattributes")
        text = attributes.content.decode("utf-8", "replace") if attributes else DEFAULT_GITATTRIBUTES
        patterns = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and "filter=lfs" in parts[1:] and not parts[0].startswith("#"):
                patterns.append(parts[0])
        return patterns

    def _wants_lfs(self, commit: Commit, path: str, size: int, sample: bytes) -> bool:
        """The Hub's routing: `.gitattributes` LFS patterns, large files and binary files go to LFS."""
        if size == 0:
            return False
        if size >= LFS_SIZE_THRESHOLD or b"\x00" in sample:
            return True
        name = path.rsplit("/", 1)[-1]
        for pattern in self._lfs_patterns(commit):
            target = path if "/" in pattern else name
            if fnmatch.fnmatchcase(target, pattern.replace("**/", "*")):
                return True
        return False

    # ----------------------------------------------------------------------------- auth helpers

    def _user_for(self, headers: Any) -> str | None:
        """User of a valid bearer token; None without one; 401 for a token the server doesn't know."""
        auth = headers.get("Authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self._tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self._tokens[token.strip()]

    @staticmethod
    def _need_user(req: _Request) -> str:
        if req.user is None:
            raise HubError(401, "Invalid username or password.")
        return req.user

    def _can_write(self, user: str, repo_id: str) -> bool:
        namespace = repo_id.split("/")[0] if "/" in repo_id else user
        return namespace == user or namespace in self._orgs.get(user, set())

    def _get_repo(self, req: _Request, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        visible = repo is not None and (
            not repo.private or (req.user is not None and self._can_write(req.user, repo_id))
        )
        if not visible:
            # As on the Hub: anonymous callers get 401, others 404, both flagged RepoNotFound.
            status = 401 if req.user is None else 404
            raise HubError(status, "Repository not found", code="RepoNotFound")
        assert repo is not None
        if write:
            user = self._need_user(req)
            if not self._can_write(user, repo_id):
                raise HubError(403, f"You don't have the rights to write to {repo_type}s/{repo_id}")
        return repo

    def _take_fault(self, endpoint: str) -> None:
        status = self.fail_next.pop(endpoint, None)
        if status is not None:
            raise HubError(status, f"Injected failure on '{endpoint}' (HubServer.fail_next)")

    # ----------------------------------------------------------------------------- dispatch

    def handle(self, req: _Request) -> _Response:
        """Route a request; every error becomes a Hub-shaped error response."""
        with self._lock:
            self.requests.append((req.method, req.path))
        try:
            req.user = self._user_for(req.headers)
            if self.require_token and req.user is None and not self._is_public_endpoint(req.path):
                raise HubError(401, "Invalid username or password.")
            with self._lock:
                return self._route(req)
        except HubError as err:
            headers = dict(err.headers)
            headers["X-Error-Message"] = err.message
            if err.code:
                headers["X-Error-Code"] = err.code
            body = err.body if err.body is not None else {"error": err.message}
            return _Response.of_json(body, status=err.status, headers=headers)

    @staticmethod
    def _is_public_endpoint(path: str) -> bool:
        # Card validation is anonymous in the client (`ModelCard.validate` sends no token), and LFS
        # object uploads are authorised by the signed URL itself, like pre-signed storage URLs.
        return path == "/api/validate-yaml" or path.startswith("/_lfs/upload/")

    def _route(self, req: _Request) -> _Response:
        seg = req.path.strip("/").split("/")
        m = req.method
        if req.path == "/api/whoami-v2" and m == "GET":
            return self._whoami(req)
        if req.path == "/api/validate-yaml" and m == "POST":
            return self._validate_yaml(req)
        if req.path == "/api/repos/create" and m == "POST":
            return self._create_repo_endpoint(req)
        if req.path == "/api/repos/delete" and m == "DELETE":
            return self._delete_repo_endpoint(req)
        if seg[0] == "_lfs" and len(seg) == 3:
            if seg[1] == "upload" and m == "PUT":
                return self._lfs_upload(req, seg[2])
            if seg[1] == "verify" and m == "POST":
                return self._lfs_verify(req, seg[2])
        if req.path.endswith(".git/info/lfs/objects/batch") and m == "POST":
            repo_type, repo_id = self._split_git_path(req.path[: -len(".git/info/lfs/objects/batch")])
            return self._lfs_batch(req, repo_type, repo_id)
        if seg[0] == "api" and len(seg) >= 3 and seg[1] in REPO_TYPES:
            return self._api_repo(req, REPO_TYPES[seg[1]], seg[2:])
        if "resolve" in seg and m in ("GET", "HEAD"):
            return self._resolve(req, seg)
        self.unhandled.append((m, req.path))
        raise HubError(404, f"Endpoint not implemented by the test Hub server: {m} {req.path}")

    @staticmethod
    def _split_git_path(prefix: str) -> tuple[str, str]:
        parts = prefix.strip("/").split("/")
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type = REPO_TYPES[parts[0]]
            parts = parts[1:]
        return repo_type, "/".join(parts)

    def _api_repo(self, req: _Request, repo_type: str, rest: list[str]) -> _Response:
        # repo ids are `namespace/name`, or a bare legacy `name` if such a repo exists.
        if len(rest) >= 2 and rest[1] in _API_ACTIONS and (repo_type, rest[0]) in self.repos:
            repo_id, rest = rest[0], rest[1:]
        else:
            repo_id, rest = "/".join(rest[:2]), rest[2:]
        action = rest[0] if rest else None
        arg = unquote(rest[1]) if len(rest) > 1 else None
        m = req.method
        if action is None and m == "GET":
            return self._repo_info(req, repo_type, repo_id, None)
        if action == "revision" and arg and m == "GET":
            return self._repo_info(req, repo_type, repo_id, arg)
        if action == "tree" and arg and m == "GET":
            sub = unquote("/".join(rest[2:])) if len(rest) > 2 else ""
            return self._tree(req, repo_type, repo_id, arg, sub)
        if action == "paths-info" and arg and m == "POST":
            return self._paths_info(req, repo_type, repo_id, arg)
        if action == "preupload" and arg and m == "POST":
            return self._preupload(req, repo_type, repo_id, arg)
        if action == "commit" and arg and m == "POST":
            return self._commit(req, repo_type, repo_id, arg)
        if action == "branch" and arg and m in ("POST", "DELETE"):
            return self._branch(req, repo_type, repo_id, arg)
        if action == "refs" and m == "GET":
            return self._refs(req, repo_type, repo_id)
        if action == "commits" and arg and m == "GET":
            return self._commits(req, repo_type, repo_id, arg)
        self.unhandled.append((m, req.path))
        raise HubError(404, f"Endpoint not implemented by the test Hub server: {m} {req.path}")

    # ----------------------------------------------------------------------------- endpoints

    def _whoami(self, req: _Request) -> _Response:
        user = self._need_user(req)
        orgs = [{"type": "org", "name": org, "roleInOrg": "write"} for org in sorted(self._orgs.get(user, ()))]
        return _Response.of_json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.invalid",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    def _create_repo_endpoint(self, req: _Request) -> _Response:
        self._take_fault("create_repo")
        user = self._need_user(req)
        payload = req.json() or {}
        name = payload.get("name")
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        if not isinstance(name, str) or not _REPO_NAME_RE.match(name) or "--" in name or name.endswith(".git"):
            raise HubError(400, f"Invalid repo name: {name!r}")
        repo_id = f"{namespace}/{name}"
        if not self._can_write(user, repo_id):
            raise HubError(403, f"You don't have the rights to create a {repo_type} under the namespace \"{namespace}\"")
        url = f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo", body={"error": f"You already created this {repo_type} repo", "url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = self._create_repo(repo_id, repo_type, private, user)
        return _Response.of_json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "private": repo.private})

    def _delete_repo_endpoint(self, req: _Request) -> _Response:
        user = self._need_user(req)
        payload = req.json() or {}
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        repo_type = payload.get("type") or "model"
        self._get_repo(req, repo_type, repo_id, write=True)
        del self.repos[(repo_type, repo_id)]
        return _Response.of_json({})

    def _repo_info(self, req: _Request, repo_type: str, repo_id: str, revision: str | None) -> _Response:
        self._take_fault("info")
        repo = self._get_repo(req, repo_type, repo_id)
        commit = repo.resolve(revision or DEFAULT_BRANCH)
        card = _parse_card(commit.files.get("README.md"))
        config = None
        if "config.json" in commit.files:
            try:
                config = json.loads(commit.files["config.json"].content)
            except ValueError:
                config = None
        siblings = []
        for path in sorted(commit.files):
            blob = commit.files[path]
            entry: dict[str, Any] = {"rfilename": path, "size": blob.size, "blobId": blob.oid}
            if blob.lfs:
                entry["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(lfs_pointer(blob.sha256, blob.size))}
            siblings.append(entry)
        namespace = repo_id.split("/")[0] if "/" in repo_id else None
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []) if isinstance(card.get("tags"), list) else [],
            "siblings": siblings,
            "cardData": card or None,
            "usedStorage": sum(b.size for b in commit.files.values()),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
            info["library_name"] = card.get("library_name")
            info["pipeline_tag"] = card.get("pipeline_tag")
            if isinstance(config, dict):
                info["config"] = {k: config[k] for k in ("architectures", "model_type", "auto_map") if k in config}
        return _Response.of_json(info)

    def _tree_entry(self, path: str, blob: Blob | None, commit: Commit, expand: bool) -> dict[str, Any]:
        if blob is None:
            entry: dict[str, Any] = {
                "type": "directory",
                "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
        else:
            entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(lfs_pointer(blob.sha256, blob.size))}
        if expand:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _tree(self, req: _Request, repo_type: str, repo_id: str, revision: str, sub: str) -> _Response:
        self._take_fault("tree")
        repo = self._get_repo(req, repo_type, repo_id)
        commit = repo.resolve(revision)
        recursive = _flag(req.query, "recursive")
        expand = _flag(req.query, "expand")
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"Entry not found: {sub}", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        entries: dict[str, dict[str, Any]] = {}
        for path, blob in commit.files.items():
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):].split("/")
            # Every folder on the way is listed (recursive) or only the first level (not recursive).
            for depth in range(1, len(rel)):
                folder = prefix + "/".join(rel[:depth])
                if folder not in entries:
                    entries[folder] = self._tree_entry(folder, None, commit, expand)
                if not recursive:
                    break
            if recursive or len(rel) == 1:
                entries[path] = self._tree_entry(path, blob, commit, expand)
        return _Response.of_json([entries[k] for k in sorted(entries)])

    def _paths_info(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        commit = repo.resolve(revision)
        form = parse_qs(req.body.decode())
        expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                out.append(self._tree_entry(path, commit.files[path], commit, expand))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(self._tree_entry(path, None, commit, expand))
        return _Response.of_json(out)

    def _preupload(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        self._take_fault("preupload")
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if revision not in repo.branches:
            # Uploads target branches; the client creates missing ones itself (create_branch).
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        commit = repo.resolve(revision)
        payload = req.json() or {}
        files = []
        for item in payload.get("files", []):
            path = item["path"]
            sample = base64.b64decode(item.get("sample", ""))
            lfs = self._wants_lfs(commit, path, int(item.get("size", 0)), sample)
            existing = commit.files.get(path)
            # The client skips files whose `oid` equals its own hash: sha256 for LFS, git blob id otherwise.
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else git_blob_oid(existing.content)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return _Response.of_json({"files": files, "commitOid": commit.oid})

    def _sign(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), hashlib.sha256).hexdigest()

    def _lfs_batch(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        self._take_fault("lfs_batch")
        self._get_repo(req, repo_type, repo_id, write=True)
        payload = req.json() or {}
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' LFS operation is supported by the test Hub server")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": int(size or 0), "error": {"code": 422, "message": "Invalid object"}})
                continue
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.lfs_objects:
                # Content already stored gets no actions: the client then skips its upload.
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/_lfs/upload/{oid}?size={size}&sig={self._sign(oid)}"},
                    "verify": {"href": f"{self.url}/_lfs/verify/{oid}"},
                }
            objects.append(entry)
        return _Response(
            body=json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_upload(self, req: _Request, oid: str) -> _Response:
        self._take_fault("lfs_upload")
        sig = req.query.get("sig", [""])[0]
        if not hmac.compare_digest(sig, self._sign(oid)):
            raise HubError(403, "Invalid or missing upload signature")
        expected_size = int(req.query.get("size", ["-1"])[0])
        if hashlib.sha256(req.body).hexdigest() != oid or (expected_size >= 0 and len(req.body) != expected_size):
            raise HubError(400, "Uploaded content does not match its sha256 oid / size")
        self.lfs_objects[oid] = req.body
        return _Response(status=200, headers={"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'}, content_type="text/plain")

    def _lfs_verify(self, req: _Request, oid: str) -> _Response:
        self._take_fault("lfs_verify")
        self._need_user(req)
        payload = req.json() or {}
        data = self.lfs_objects.get(oid)
        if data is None or payload.get("oid") != oid or payload.get("size") != len(data):
            raise HubError(404, f"LFS object {oid} not found or size mismatch")
        return _Response.of_json({"success": True})

    def _commit(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        user = self._need_user(req)
        self._take_fault("commit")
        if _flag(req.query, "create_pr"):
            raise HubError(400, "Pull requests (create_pr) are not supported by the test Hub server")
        if revision not in repo.branches:
            # Commits go to branches only; a commit id or missing branch is not a valid target.
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        lines = [json.loads(line) for line in req.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a 'header' line")
        header = lines[0]["value"]
        title = header.get("summary") or ""
        if not title:
            raise HubError(400, "Commit summary must not be empty")
        base = repo.resolve(revision)
        parent_commit = header.get("parentCommit")
        if parent_commit and parent_commit != base.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(base.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = str(value.get("path", "")).strip("/")
            if not path or path.startswith("../") or "/../" in path:
                raise HubError(400, f"Invalid path in commit: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "Only base64-encoded regular files are supported")
                content = base64.b64decode(value.get("content", ""))
                if b"\x00" in content or len(content) >= LFS_SIZE_THRESHOLD:
                    raise HubError(400, f"Your push was rejected because it contains binary or large files ({path}). Use LFS.")
                files[path] = Blob(content, False)
            elif key == "lfsFile":
                oid = value.get("oid")
                if value.get("algo", "sha256") != "sha256" or oid not in self.lfs_objects:
                    raise HubError(422, f"Your push was rejected because an LFS pointer pointed to a file that does not exist ({path})")
                files[path] = Blob(self.lfs_objects[oid], True)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/")]
                if not doomed:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation: {key!r}")
        if files == base.files:
            # Nothing changed: no empty commit, the branch stays where it is.
            oid = base.oid
        else:
            commit = self._make_commit(repo, base, files, title, header.get("description") or "", user)
            repo.branches[revision] = oid = commit.oid
        return _Response.of_json(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}/commit/{oid}",
                "pullRequestUrl": None,
            }
        )

    def _branch(self, req: _Request, repo_type: str, repo_id: str, branch: str) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if req.method == "DELETE":
            if branch == DEFAULT_BRANCH or branch not in repo.branches:
                raise HubError(400 if branch == DEFAULT_BRANCH else 404, f"Cannot delete branch {branch}")
            del repo.branches[branch]
            return _Response.of_json({})
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or branch.startswith("refs/") or ".." in branch:
            raise HubError(400, f"Invalid branch name: {branch}")
        start = (req.json() or {}).get("startingPoint") or DEFAULT_BRANCH
        repo.branches[branch] = repo.resolve(start).oid
        return _Response.of_json({})

    def _refs(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        return _Response.of_json(
            {
                "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o} for b, o in sorted(repo.branches.items())],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": o} for t, o in sorted(repo.tags.items())],
                "converts": [],
                "pullRequests": [],
            }
        )

    def _commits(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        return _Response.of_json(
            [
                {"id": c.oid, "title": c.title, "message": c.message, "authors": [{"user": c.author}], "date": c.date}
                for c in repo.history(repo.resolve(revision))
            ]
        )

    def _resolve(self, req: _Request, seg: list[str]) -> _Response:
        self._take_fault("resolve")
        repo_type = "model"
        if seg[0] in ("datasets", "spaces"):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        idx = seg.index("resolve")
        if idx not in (1, 2) or len(seg) < idx + 3:
            raise HubError(404, "Invalid resolve URL")
        repo_id = "/".join(seg[:idx])
        revision = unquote(seg[idx + 1])
        filename = unquote("/".join(seg[idx + 2:]))
        repo = self._get_repo(req, repo_type, repo_id)
        commit = repo.resolve(revision)
        blob = commit.files.get(filename)
        if blob is None:
            raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename.rsplit('/', 1)[-1])}",
        }
        if blob.lfs:
            # Real LFS resolves redirect to a CDN and describe the object with these two headers.
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(blob.size)
        body = blob.content
        status = 200
        byte_range = req.headers.get("Range")
        if byte_range and req.method == "GET":
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", byte_range.strip())
            if not m or int(m.group(1)) >= max(blob.size, 1):
                raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{blob.size}"})
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else blob.size - 1, blob.size - 1)
            body = blob.content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
            status = 206
        return _Response(status=status, body=body, headers=headers, content_type="application/octet-stream")

    def _validate_yaml(self, req: _Request) -> _Response:
        self._take_fault("validate_yaml")
        payload = req.json() or {}
        content = payload.get("content")
        if not isinstance(content, str):
            raise HubError(400, "'content' must be a string")
        match = _YAML_BLOCK_RE.search(content)
        warnings: list[dict[str, str]] = []
        errors: list[str] = []
        if match is None:
            warnings.append({"message": "empty or missing yaml metadata in repo card"})
        else:
            try:
                metadata = yaml.safe_load(match.group(2))
            except yaml.YAMLError as exc:
                errors.append(f"Invalid YAML in the metadata block: {exc}")
            else:
                if metadata is None:
                    warnings.append({"message": "empty or missing yaml metadata in repo card"})
                else:
                    errors.extend(validate_card_metadata(metadata, payload.get("repoType") or "model"))
        if errors:
            text = "\n".join(errors)
            if "text/plain" in (req.headers.get("Accept") or "") and "json" not in (req.headers.get("Accept") or ""):
                return _Response(status=400, body=text.encode(), content_type="text/plain; charset=utf-8")
            return _Response.of_json(
                {"error": "Invalid metadata in README.md", "errors": [{"message": e} for e in errors], "warnings": warnings},
                status=400,
            )
        return _Response.of_json({"errors": [], "warnings": warnings})


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() in ("1", "true", "yes")


def _parse_card(blob: Blob | None) -> dict[str, Any]:
    """Metadata of a README, or {} when absent or unparseable (the Hub shows no cardData then)."""
    if blob is None:
        return {}
    match = _YAML_BLOCK_RE.search(blob.content.decode("utf-8", "replace"))
    if match is None:
        return {}
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def validate_card_metadata(metadata: Any, repo_type: str = "model") -> list[str]:
    """Check repo card metadata the way the Hub does for the fields it types; returns error messages."""
    if not isinstance(metadata, dict):
        return ['"metadata" must be a YAML mapping (key: value pairs)']
    errors: list[str] = []
    for key in ("library_name", "license", "license_name", "license_link", "model_name"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string')
    if "pipeline_tag" in metadata:
        tag = metadata["pipeline_tag"]
        if not isinstance(tag, str) or tag not in KNOWN_PIPELINE_TAGS:
            errors.append(f'"pipeline_tag" must be a known pipeline tag, got {tag!r}')
    for key in ("tags", "datasets", "metrics"):
        if key in metadata and not _is_str_list(metadata[key]):
            errors.append(f'"{key}" must be an array of strings')
    if "language" in metadata and not (isinstance(metadata["language"], str) or _is_str_list(metadata["language"])):
        errors.append('"language" must be a string or an array of strings')
    if "base_model" in metadata:
        base = metadata["base_model"]
        bases = [base] if isinstance(base, str) else base
        if not _is_str_list(bases) or not bases:
            errors.append('"base_model" must be a string or an array of strings')
        else:
            for b in bases:
                if not _MODEL_ID_RE.match(b):
                    errors.append(f'"base_model" is not a valid model ID: {b!r}')
    if "model-index" in metadata:
        errors.extend(_validate_model_index(metadata["model-index"]))
    return errors


def _validate_model_index(model_index: Any) -> list[str]:
    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty array']
    errors: list[str] = []
    for i, model in enumerate(model_index):
        where = f'"model-index[{i}]"'
        if not isinstance(model, dict):
            errors.append(f"{where} must be an object")
            continue
        if not isinstance(model.get("name"), str):
            errors.append(f'{where}.name must be a string')
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f"{where}.results must be an array")
            continue
        for j, result in enumerate(results):
            rwhere = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                errors.append(f"{rwhere} must be an object")
                continue
            task = result.get("task")
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f"{rwhere}.task.type must be a string")
            dataset = result.get("dataset")
            if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str) or not isinstance(dataset.get("type"), str):
                errors.append(f"{rwhere}.dataset must have string 'name' and 'type'")
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f"{rwhere}.metrics must be a non-empty array")
                continue
            for k, metric in enumerate(metrics):
                mwhere = f"{rwhere}.metrics[{k}]"
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
                    errors.append(f"{mwhere}.type must be a string")
                elif metric.get("value") is None:
                    errors.append(f"{mwhere}.value is required")
                elif not isinstance(metric["value"], (int, float, str)) or isinstance(metric["value"], bool):
                    errors.append(f"{mwhere}.value must be a number or a string")
    return errors


class _Handler(BaseHTTPRequestHandler):
    """Translates stdlib HTTP requests to `HubServer.handle` calls."""

    hub: HubServer
    # HTTP/1.1 keeps the client's pooled connections alive; every response sets Content-Length.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean; `HubServer.requests` records the traffic

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        req = _Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers=self.headers,
            body=self._read_body(),
            user=None,
        )
        try:
            resp = self.hub.handle(req)
        except Exception as exc:  # a server bug must surface as a 500, not a hung client
            resp = _Response.of_json({"error": f"Test Hub server error: {exc!r}"}, status=500)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("X-Request-Id", secrets.token_hex(8))
        for key, value in resp.headers.items():
            # http.server writes headers as strict latin-1: keep messages about odd paths sendable.
            safe = " ".join(str(value).split()).encode("latin-1", "replace").decode("latin-1")
            self.send_header(key, safe)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


# --------------------------------------------------------------------------------- client wiring

# Environment that points a fresh process's `huggingface_hub` / `transformers` at a loopback server.
def client_env(server: HubServer, home: str, *, token: str | None = None) -> dict[str, str]:
    """Env vars for a client process: endpoint, no Xet, online, no telemetry, private cache, token.

    `token=None` uses the server's default token; pass "" to leave the token out.
    """
    env = {
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "",
        "HF_HOME": home,
        "HF_HUB_CACHE": f"{home}/hub",
        "HF_ASSETS_CACHE": f"{home}/assets",
        "HF_XET_CACHE": f"{home}/xet",
        "HF_TOKEN_PATH": f"{home}/token",
        "HF_MODULES_CACHE": f"{home}/modules",
        "HF_TOKEN": server.token if token is None else token,
    }
    return env


def patch_client_constants(monkeypatch: Any, server: HubServer, home: str) -> None:
    """Make an already-imported `huggingface_hub` use `server` and the private cache in `home`.

    `huggingface_hub.constants` reads its environment once, at import; several values are also
    copied into other modules at import (the module-level `HfApi` behind `create_repo` & co keeps
    its `endpoint`, the redirect allow-list keeps the endpoint's origin). Setting env vars is
    therefore not enough in a process where the library is already loaded: patch the copies too.
    """
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    endpoint = server.url
    values = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname or server.host},
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        "HF_HOME": home,
        "HF_HUB_CACHE": f"{home}/hub",
        "HUGGINGFACE_HUB_CACHE": f"{home}/hub",
        "HF_ASSETS_CACHE": f"{home}/assets",
        "HUGGINGFACE_ASSETS_CACHE": f"{home}/assets",
        "HF_XET_CACHE": f"{home}/xet",
        "HF_TOKEN_PATH": f"{home}/token",
        "HF_STORED_TOKENS_PATH": f"{home}/stored_tokens",
        "CHECK_FOR_UPDATE_DONE_PATH": f"{home}/.check_for_update_done",
    }
    for name, value in values.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    monkeypatch.setattr(hf_api.api, "_whoami_cache", {})
    if hasattr(_http, "_HUB_ORIGINS"):
        monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(endpoint)})
    # Modules that did `from ..constants import X` at import time.
    for module_name, attr, value in (
        ("huggingface_hub.utils._cache_manager", "HF_HUB_CACHE", f"{home}/hub"),
        ("huggingface_hub.utils._cache_assets", "HF_ASSETS_CACHE", f"{home}/assets"),
        ("huggingface_hub.utils._git_credential", "ENDPOINT", endpoint),
    ):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            monkeypatch.setattr(module, attr, value)
    # transformers keeps one shared `HfApi`, whose endpoint is fixed when first created: whatever test created it
    # first (against the real Hub or an earlier, stopped loopback server) would otherwise keep being asked.
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)


def run_python(
    code: str,
    env: dict[str, str],
    *,
    cwd: str | None = None,
    timeout: float = 600,
    block_imports: tuple[str, ...] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter whose Hub client env is `env` (see `client_env`).

    `block_imports` names top-level packages the child must not be able to import (e.g.
    `("frozen_hf",)` to prove that a pushed model loads with stock transformers and remote code
    only); the child's `sys.path` also leaves out the repository root for the same reason.
    """
    prelude = ""
    if block_imports:
        # A meta-path finder that refuses the names: robust even if the package is pip-installed.
        prelude = textwrap.dedent(
            f"""
            import sys as _sys
            class _Block:
                names = {tuple(block_imports)!r}
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in self.names:
                        raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
                    return None
            _sys.meta_path.insert(0, _Block())
            """
        )
    child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child_env.update(env)
    child_env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=child_env,
        cwd=cwd or env.get("HF_HOME"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"subprocess failed with exit code {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


class HubFixture:
    """What the `hub_server` pytest fixture yields: the running server plus client wiring.

    Attributes/methods: `url`, `token`, `user`, `server` (the `HubServer`, with its knobs
    `require_token`, `fail_next_commit`, `fail_next`, `requests`, `seed_repo`, `repo`, `head`),
    `home` (the private HF_HOME), `env` (env vars for a child process), `run_python(code, ...)`.
    """

    def __init__(self, server: HubServer, home: str) -> None:
        self.server = server
        self.home = home

    url = property(lambda self: self.server.url)
    token = property(lambda self: self.server.token)
    user = property(lambda self: self.server.user)

    @property
    def require_token(self) -> bool:
        return self.server.require_token

    @require_token.setter
    def require_token(self, value: bool) -> None:
        self.server.require_token = value

    @property
    def fail_next_commit(self) -> int | None:
        return self.server.fail_next_commit

    @fail_next_commit.setter
    def fail_next_commit(self, status: int | None) -> None:
        self.server.fail_next_commit = status

    def __getattr__(self, name: str) -> Any:
        # Everything else (seed_repo, repo, head, requests, fail_next, add_user...) is the server's.
        return getattr(self.server, name)

    def env(self, *, token: str | None = None) -> dict[str, str]:
        """Env vars for a child process pointed at this server (token=\"\" for none)."""
        return client_env(self.server, self.home, token=token)

    def run_python(self, code: str, *, token: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`run_python` with this server's env; kwargs: cwd, timeout, block_imports, check."""
        return run_python(code, self.env(token=token), **kwargs)
