"""A small, real stand-in for the Hugging Face Hub, for tests that push and pull without the internet.

`HubServer` is a stdlib `ThreadingHTTPServer` on 127.0.0.1 (a free port, background thread) that keeps repos
in memory and file contents in a temp folder. It speaks enough of the Hub's HTTP API that the *real*
`huggingface_hub` client (2.4, read from its source: `hf_api.py`, `_commit_api.py`, `_upload_pipeline.py`,
`file_download.py`, `_snapshot_download.py`) and `transformers`' `from_pretrained` / `push_to_hub` work
against it unchanged.

Using it from a test
--------------------
In `tests/conftest.py` (works under `python -m pytest` from the repo root, which puts the root on `sys.path`;
for a bare `pytest` add `pythonpath = ["."]` to the pytest config)::

    from tests.hubserver import hub_network, hub_online, hub_server  # noqa: F401  (registers the fixtures)

Fixtures:

* `hub_server` -> a started `HubServer` (stopped afterwards): `.url`, `.token`, `.user`,
  `.fail_next_commits(n)`, `.requests` (a `Counter` per endpoint name, see `ENDPOINTS`), `.log`,
  `.auth_failures`, `.space_variables(repo)`, `.space_secrets(repo)`, `.files(repo)`, `.commits(repo)`,
  `.is_private(repo)`. Nothing else is changed, so by itself it is only reachable once offline mode is lifted.
* `hub_network` -> lifts `HF_HUB_OFFLINE` for the test only, and lets `huggingface_hub` reach loopback
  addresses only: any request to another host raises `OfflineModeIsEnabled` at once (no 24 s retries, no
  real Hub). Enough for tests that pass `endpoint=` explicitly::

      api = HfApi(endpoint=hub_server.url, token=hub_server.token)
      api.create_repo("test-user/tiny", exist_ok=True, private=False)
      api.upload_folder(repo_id="test-user/tiny", folder_path=saved_dir)
      hf_hub_download("test-user/tiny", "config.json", endpoint=hub_server.url, cache_dir=tmp_path)
      snapshot_download("test-user/tiny", endpoint=hub_server.url, cache_dir=tmp_path)

* `hub_online` -> `hub_network` plus the *default* endpoint pointed at the server, yielding the server.
  This is what code that takes no endpoint needs: `AutoModelForMaskedLM.from_pretrained("test-user/tiny")`,
  `model.push_to_hub(...)`, `HfApi()`, `huggingface_hub.model_info(...)`, `dlm.loading.load("test-user/tiny")`.

Why patching, and what is patched
---------------------------------
`HF_ENDPOINT` and `HF_HUB_OFFLINE` are read once, when `huggingface_hub.constants` is imported, and several
values are derived from them at that moment, so setting the environment variables inside a test is too late.
`hub_environment()` (used by `hub_online`) therefore patches, for the test only:

* `huggingface_hub.constants.ENDPOINT` and `HUGGINGFACE_CO_URL_TEMPLATE` (`hf_hub_url` formats the template
  and only swaps the prefix when `endpoint=` is passed), and adds 127.0.0.1 to `HF_URL_HOSTS`;
* `huggingface_hub.hf_api.api.endpoint` (the module-level `HfApi()` behind `huggingface_hub.model_info`,
  `create_repo`, ... is built at import);
* `transformers.utils.hub._hf_api` -> `None` (transformers caches one `HfApi` for `resolve_revision`,
  `push_to_hub`, ...; it is rebuilt lazily against the patched endpoint, and reset again afterwards);
* `huggingface_hub.constants.HF_HUB_CACHE` -> a per-test folder (so nothing leaks between tests), and
  `AGENT_HARNESSES_PATH` (a registry huggingface_hub fetches from the endpoint and caches for a day) beside it;
* env `HF_ENDPOINT`, `HF_TOKEN` (= the server token, so implicit-token code such as `push_to_hub()` or
  `HfApi()` authenticates; pass `token=False` to act anonymous), `HF_HUB_CACHE`, `HF_HUB_OFFLINE=0`, for
  subprocesses started by the test.

Offline mode: `huggingface_hub` checks `constants.HF_HUB_OFFLINE` (via `is_offline_mode()`) on every request,
and transformers 5 only asks `huggingface_hub.is_offline_mode()`, so patching that one constant lifts it for
both. `loopback_network()` also installs, through `huggingface_hub.set_client_factory`, a client whose request
hook refuses non-loopback hosts, and restores the previous factory afterwards.

Outside pytest: `with HubServer() as hub, loopback_network(), hub_environment(hub, cache_dir): ...`.

Endpoints implemented (repo type prefix `{t}` = `models` | `datasets` | `spaces`; `{repo}` = `ns/name`)
-------------------------------------------------------------------------------------------------------
* `GET  /api/whoami-v2`
* `POST /api/repos/create` (`name`, `organization`, `type`, `visibility`/`private`, `sdk`, `secrets`,
  `variables`; 409 when it exists), `DELETE /api/repos/delete`, `PUT /api/{t}/{repo}/settings`
* `POST /api/validate-yaml` (always ok), `POST /api/telemetry/...` (ignored), `GET /api/agent-harnesses`
  (empty registry; huggingface_hub fetches it once for its user agent)
* `GET  /api/{t}/{repo}` and `/api/{t}/{repo}/revision/{rev}` (`id`, `sha`, `private`, `siblings`, ...)
* `GET  /api/{t}/{repo}/tree/{rev}[/{path}]` (`recursive`), `POST /api/{t}/{repo}/paths-info/{rev}`
* `GET  /api/{t}/{repo}/refs`, `GET /api/{t}/{repo}/commits/{rev}`
* `POST/DELETE /api/{t}/{repo}/branch/{branch}`, `POST /api/{t}/{repo}/tag/{rev}`
* `POST /api/{t}/{repo}/preupload/{rev}` -> every file `uploadMode: "regular"` (with the git oid of the
  current file, so unchanged files are skipped like on the Hub)
* `POST /api/{t}/{repo}/commit/{rev}` NDJSON (`header`, `file` base64, `deletedFile`, `deletedFolder`,
  `lfsFile` only for content already stored); `?create_pr=1`; `parentCommit` checked (412). Each commit is a
  revision with a 40-hex sha; branch `main` exists from the start (with `.gitattributes`, like the Hub).
* `POST /api/{t}/{repo}/discussions` (pull requests only) and `GET /api/{t}/{repo}/discussions/{num}`
* `GET/POST/DELETE /api/spaces/{repo}/variables`, `/secrets`; `GET /api/spaces/{repo}/runtime`
* `HEAD/GET /{repo}/resolve/{rev}/{path}` (and `/datasets/...`, `/spaces/...`): `ETag` (git blob sha1),
  `X-Repo-Commit`, `Content-Length`, `Range: bytes=N-`; 404 with `X-Error-Code` `RepoNotFound` /
  `RevisionNotFound` / `EntryNotFound` so the client raises its usual errors.

Auth: every write (POST/PUT/DELETE other than validate-yaml/telemetry) needs `Authorization: Bearer <token>`
and gets 401 otherwise (`HfHubHTTPError`, status 401). Private repos are invisible (404 `RepoNotFound`,
i.e. `RepositoryNotFoundError`) without the token; a wrong token is a 401 on any request.

Failure injection: `fail_next_commits(n, status=500)` makes the next n commit requests fail. Note that
`create_commit` / `upload_file` do not retry (the error surfaces as `HfHubHTTPError`), while `upload_folder`
(with `hf_xet` installed it goes through `_upload_pipeline`, which posts the commit with `http_backoff`)
retries 429/5xx after 1, 2, 4, 8, 8 s. `fail_next(endpoint, n, status)` does the same for any endpoint name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

__all__ = [
    "ENDPOINTS",
    "HubServer",
    "hub_environment",
    "hub_network",
    "hub_online",
    "hub_server",
    "loopback_network",
]

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

# Names used as keys of `HubServer.requests` (and of `fail_next`).
ENDPOINTS = (
    "whoami", "create_repo", "delete_repo", "settings", "validate_yaml", "telemetry", "agent_harnesses",
    "repo_info", "tree", "paths_info", "refs", "commits", "branch", "tag", "preupload", "commit", "discussions",
    "space_variables", "space_secrets", "space_runtime", "resolve_head", "resolve_get", "unknown",
)

GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""


def _now() -> str:
    """The Hub's date format, which `huggingface_hub.utils.parse_datetime` expects."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}  # more fields for the JSON body


@dataclass
class _File:
    sha256: str
    size: int
    oid: str  # git blob sha1, what the Hub returns as ETag / tree oid for regular files


@dataclass
class _Commit:
    sha: str
    parent: str | None
    files: dict[str, _File]
    title: str
    message: str
    date: str
    author: str


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    sdk: str | None = None
    hardware: str | None = None
    gated: Any = False
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)  # PR number -> head commit of refs/pr/N
    discussions: dict[int, dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    secrets: dict[str, dict] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """Branch, tag, `refs/pr/N`, `refs/heads/x` or a (7+ char) commit sha -> full commit sha."""
        if revision.startswith("refs/heads/"):
            return self.branches.get(revision[len("refs/heads/"):])
        if revision.startswith("refs/tags/"):
            return self.tags.get(revision[len("refs/tags/"):])
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision.startswith("refs/pr/") and revision[len("refs/pr/"):].isdigit():
            return self.prs.get(int(revision[len("refs/pr/"):]))
        rev = revision.lower()
        if len(rev) >= 7 and all(c in "0123456789abcdef" for c in rev):
            matches = [sha for sha in self.commits if sha.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
        return None


class HubServer:
    """In-process stand-in Hub. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, token: str = "test", user: str = "test-user", root: str | Path | None = None):
        self.token = token
        self.user = user
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hubserver-")) if root is None else Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.requests: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "HubServer":
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def fail_next_commits(self, n: int = 1, status: int = 500) -> None:
        """Make the next `n` commit requests (`POST /api/{t}/{repo}/commit/{rev}`) answer `status`."""
        self.fail_next("commit", n, status)

    def fail_next(self, endpoint: str, n: int = 1, status: int = 500) -> None:
        """Make the next `n` requests to `endpoint` (a name from `ENDPOINTS`) answer `status`."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; choose from {ENDPOINTS}")
        with self._lock:
            self._failures.setdefault(endpoint, []).extend([status] * n)

    def space_variables(self, repo_id: str) -> dict[str, str]:
        """Variables set on a Space (`add_space_variable` or `create_repo(space_variables=...)`): key -> value."""
        with self._lock:
            return {k: v["value"] for k, v in self._repo(repo_id, "space").variables.items()}

    def space_secrets(self, repo_id: str) -> dict[str, str]:
        """Secrets set on a Space: key -> value (the real Hub never gives these back; the stand-in does)."""
        with self._lock:
            return {k: v["value"] for k, v in self._repo(repo_id, "space").secrets.items()}

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Path -> content of every file at `revision`."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(f"no revision {revision!r} in {repo_type} {repo_id}")
            return {p: self._blob_path(f.sha256).read_bytes() for p, f in repo.commits[sha].files.items()}

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[tuple[str, str]]:
        """(sha, title) of each commit reachable from `revision`, newest first."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            sha, out = repo.resolve(revision), []
            while sha is not None:
                out.append((sha, repo.commits[sha].title))
                sha = repo.commits[sha].parent
            return out

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return self._repo(repo_id, repo_type).private

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def _repo(self, repo_id: str, repo_type: str) -> _Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the stand-in hub") from None

    # ------------------------------------------------------------------ storage helpers
    def _blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def _store(self, data: bytes) -> _File:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._blob_path(sha256)
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return _File(sha256=sha256, size=len(data), oid=_git_blob_oid(data))

    def _new_commit(self, repo: _Repo, parent: str | None, files: dict[str, _File], title: str, message: str) -> str:
        tree = json.dumps(sorted((p, f.oid) for p, f in files.items()))
        seed = f"{repo.repo_type}/{repo.repo_id}\n{parent}\n{tree}\n{title}\n{message}\n{uuid.uuid4().hex}"
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[sha] = _Commit(sha, parent, dict(files), title, message, _now(), self.user)
        return sha

    def _take_failure(self, endpoint: str) -> int | None:
        with self._lock:
            pending = self._failures.get(endpoint)
            return pending.pop(0) if pending else None


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the subclass built in HubServer.start
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    timeout = 60  # idle keep-alive connections end after this
    server_version = "StandInHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        self.method = method
        self.body = self._read_body()
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.segments = [unquote(s) for s in parts.path.split("/")[1:]]
        self.endpoint = "unknown"
        status = 500
        try:
            try:
                handler, self.endpoint, args = self._route(method, self.segments)
            finally:
                with hub._lock:
                    hub.requests[self.endpoint] += 1
            injected = hub._take_failure(self.endpoint)
            if injected is not None:
                raise _HTTPError(injected, f"Injected failure for {self.endpoint} (HubServer.fail_next)")
            self._check_auth(write=method in ("POST", "PUT", "DELETE") and self.endpoint not in (
                "validate_yaml", "telemetry"))
            with hub._lock:
                status = handler(*args)
        except _HTTPError as e:
            status = e.status
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError):
            status = 499  # the client went away mid-response
        except Exception as e:  # a bug in the stand-in: report it as a 500 the client can show
            status = 500
            self._send_error(_HTTPError(500, f"stand-in hub error: {type(e).__name__}: {e}"))
        finally:
            with hub._lock:
                hub.log.append((method, self.path, status))

    def _check_auth(self, write: bool) -> None:
        auth = self.headers.get("Authorization")
        self.authenticated = False
        if auth is None:
            if write:
                self.hub.auth_failures[self.endpoint] += 1
                raise _HTTPError(401, "Invalid credentials in Authorization header")
            return
        if auth != f"Bearer {self.hub.token}":
            self.hub.auth_failures[self.endpoint] += 1
            raise _HTTPError(401, "Invalid credentials in Authorization header")
        self.authenticated = True

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json", length: int | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.method != "HEAD" and body:
            self.wfile.write(body)
        return status

    def _json(self, obj: Any, status: int = 200, headers: dict | None = None) -> int:
        return self._send(status, json.dumps(obj).encode(), headers)

    def _send_error(self, e: _HTTPError) -> None:
        headers = {"X-Error-Message": e.message, **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        self._send(e.status, json.dumps({"error": e.message, **e.extra}).encode(), headers)

    def _payload(self) -> dict:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise _HTTPError(400, "request body is not valid JSON") from None

    # ------------------------------------------------------------------ routing
    def _route(self, method: str, seg: list[str]):
        m = method
        if seg[:2] == ["api", "whoami-v2"] and m == "GET":
            return self._whoami, "whoami", ()
        if seg[:3] == ["api", "repos", "create"] and m == "POST":
            return self._create_repo, "create_repo", ()
        if seg[:3] == ["api", "repos", "delete"] and m == "DELETE":
            return self._delete_repo, "delete_repo", ()
        if seg[:2] == ["api", "validate-yaml"] and m == "POST":
            return self._validate_yaml, "validate_yaml", ()
        if seg[:2] == ["api", "telemetry"]:
            return (lambda: self._json({})), "telemetry", ()
        if seg[:2] == ["api", "agent-harnesses"] and m == "GET":  # huggingface_hub's user-agent registry
            return (lambda: self._json({"standardEnvVars": [], "harnesses": {}})), "agent_harnesses", ()
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:]
            return self._route_repo_api(m, repo_type, repo_id, rest)
        # /{repo}/resolve/{rev}/{path}, /datasets/{repo}/resolve/..., /spaces/{repo}/resolve/...
        repo_type, tail = "model", seg
        if seg and seg[0] in REPO_TYPES and seg[0] != "models":
            repo_type, tail = REPO_TYPES[seg[0]], seg[1:]
        if len(tail) >= 5 and tail[2] == "resolve" and m in ("GET", "HEAD"):
            name = "resolve_head" if m == "HEAD" else "resolve_get"
            return self._resolve, name, (repo_type, f"{tail[0]}/{tail[1]}", tail[3], "/".join(tail[4:]))
        raise _HTTPError(404, f"stand-in hub does not implement {method} {self.path}")

    def _route_repo_api(self, m: str, repo_type: str, repo_id: str, rest: list[str]):
        head = rest[0] if rest else ""
        if not rest and m == "GET":
            return self._repo_info, "repo_info", (repo_type, repo_id, None)
        if head == "revision" and len(rest) >= 2 and m == "GET":
            return self._repo_info, "repo_info", (repo_type, repo_id, "/".join(rest[1:]))
        if head == "tree" and len(rest) >= 2 and m == "GET":
            return self._tree, "tree", (repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if head == "paths-info" and len(rest) == 2 and m == "POST":
            return self._paths_info, "paths_info", (repo_type, repo_id, rest[1])
        if head == "preupload" and len(rest) == 2 and m == "POST":
            return self._preupload, "preupload", (repo_type, repo_id, rest[1])
        if head == "commit" and len(rest) == 2 and m == "POST":
            return self._commit, "commit", (repo_type, repo_id, rest[1])
        if head == "refs" and m == "GET":
            return self._refs, "refs", (repo_type, repo_id)
        if head == "commits" and len(rest) == 2 and m == "GET":
            return self._list_commits, "commits", (repo_type, repo_id, rest[1])
        if head == "branch" and len(rest) >= 2 and m in ("POST", "DELETE"):
            return self._branch, "branch", (repo_type, repo_id, "/".join(rest[1:]))
        if head == "tag" and len(rest) >= 2 and m == "POST":
            return self._tag, "tag", (repo_type, repo_id, "/".join(rest[1:]))
        if head == "settings" and m == "PUT":
            return self._settings, "settings", (repo_type, repo_id)
        if head == "discussions" and len(rest) == 1 and m == "POST":
            return self._create_discussion, "discussions", (repo_type, repo_id)
        if head == "discussions" and len(rest) == 2 and m == "GET":
            return self._discussion_details, "discussions", (repo_type, repo_id, rest[1])
        if repo_type == "space" and head in ("variables", "secrets") and len(rest) == 1:
            return self._space_kv, f"space_{head}", (repo_id, head)
        if repo_type == "space" and head == "runtime" and m == "GET":
            return self._space_runtime, "space_runtime", (repo_id,)
        raise _HTTPError(404, f"stand-in hub does not implement {m} {self.path}")

    # ------------------------------------------------------------------ repo lookups
    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.authenticated):
            raise _HTTPError(404, "Repository not found", code="RepoNotFound")
        return repo

    def _get_commit(self, repo: _Repo, revision: str) -> _Commit:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.commits[sha]

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.hub.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ------------------------------------------------------------------ account / repo management
    def _whoami(self) -> int:
        if not self.authenticated:
            raise _HTTPError(401, "Invalid credentials in Authorization header")
        return self._json({
            "type": "user", "id": "0" * 24, "name": self.hub.user, "fullname": self.hub.user,
            "email": f"{self.hub.user}@example.invalid", "emailVerified": True, "isPro": False, "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
        })

    def _create_repo(self) -> int:
        p = self._payload()
        name = p.get("name")
        if not name:
            raise _HTTPError(400, "missing repo name")
        repo_type = p.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise _HTTPError(400, f"unsupported repo type {repo_type!r}")
        repo_id = f"{p.get('organization') or self.hub.user}/{name}"
        existing = self.hub._repos.get((repo_type, repo_id))
        url = f"{self.hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if existing is not None:
            # The Hub's 409 carries the url: `create_repo(exist_ok=True)` reads it from the error body.
            raise _HTTPError(409, f"You already created this {repo_type} repo", extra={"url": url})
        if repo_type == "space" and p.get("sdk") is None:
            raise _HTTPError(400, "a Space needs an sdk")
        private = p.get("visibility", "private" if p.get("private") else "public") != "public"
        repo = _Repo(repo_type, repo_id, private, _now(), sdk=p.get("sdk"), hardware=p.get("hardware"))
        for item in p.get("variables") or []:
            repo.variables[item["key"]] = {"value": item["value"], "description": item.get("description"),
                                           "updatedAt": _now()}
        for item in p.get("secrets") or []:
            repo.secrets[item["key"]] = {"value": item["value"], "description": item.get("description"),
                                         "updatedAt": _now()}
        files = {".gitattributes": self.hub._store(GITATTRIBUTES)}
        repo.branches["main"] = self.hub._new_commit(repo, None, files, "initial commit", "")
        self.hub._repos[(repo_type, repo_id)] = repo
        return self._json({"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _delete_repo(self) -> int:
        p = self._payload()
        repo_type = p.get("type") or "model"
        repo_id = f"{p.get('organization') or self.hub.user}/{p.get('name')}"
        self._get_repo(repo_type, repo_id)
        del self.hub._repos[(repo_type, repo_id)]
        return self._json({})

    def _settings(self, repo_type: str, repo_id: str) -> int:
        repo, p = self._get_repo(repo_type, repo_id), self._payload()
        if "private" in p:
            repo.private = bool(p["private"])
        if "visibility" in p:
            repo.private = p["visibility"] != "public"
        if "gated" in p:
            repo.gated = p["gated"]
        return self._json({})

    def _validate_yaml(self) -> int:
        return self._json({"errors": [], "warnings": []})

    # ------------------------------------------------------------------ reading
    def _repo_info(self, repo_type: str, repo_id: str, revision: str | None) -> int:
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision or "main")
        siblings = [{"rfilename": p, "size": f.size, "blobId": f.oid} for p, f in sorted(commit.files.items())]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": commit.sha, "lastModified": commit.date,
            "createdAt": repo.created_at, "private": repo.private, "gated": repo.gated, "disabled": False,
            "likes": 0, "tags": [], "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if repo_type == "model":
            info.update({"modelId": repo_id, "downloads": 0})
        elif repo_type == "dataset":
            info.update({"downloads": 0})
        elif repo_type == "space":
            info.update({
                "sdk": repo.sdk, "subdomain": repo_id.replace("/", "-"),
                "host": f"{self.hub.url}/spaces/{repo_id}", "runtime": self._runtime(repo),
            })
        return self._json(info)

    @staticmethod
    def _tree_entries(files: dict[str, _File], base: str, recursive: bool) -> list[dict]:
        base = base.strip("/")
        prefix = base + "/" if base else ""
        entries: dict[str, dict] = {}
        for path, f in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # folders on the way to the file
                if depth > 1 and not recursive:
                    break
                folder = prefix + "/".join(parts[:depth])
                if folder not in entries:
                    children = sorted((p, g.oid) for p, g in files.items() if p.startswith(folder + "/"))
                    oid = hashlib.sha1(json.dumps(children).encode()).hexdigest()
                    entries[folder] = {"type": "directory", "oid": oid, "size": 0, "path": folder}
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
        return list(entries.values())

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = self._tree_entries(commit.files, path, recursive)
        if path.strip("/") and not entries:
            raise _HTTPError(404, f"Path {path} not found", code="EntryNotFound",
                             headers={"X-Repo-Commit": commit.sha})
        return self._json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            p = self._payload()
            paths = p.get("paths", [])
        else:
            paths = parse_qs(self.body.decode(), keep_blank_values=True).get("paths", [])
        everything = self._tree_entries(commit.files, "", recursive=True)
        wanted = {p.strip("/") for p in paths}
        return self._json([e for e in everything if e["path"] in wanted])

    def _refs(self, repo_type: str, repo_id: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        out = {
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()],
            "converts": [],
        }
        if self.query.get("include_prs"):
            out["pullRequests"] = [{"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": s}
                                   for n, s in repo.prs.items()]
        return self._json(out)

    def _list_commits(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        commit: _Commit | None = self._get_commit(repo, revision)
        out = []
        while commit is not None:
            out.append({"id": commit.sha, "title": commit.title, "message": commit.message,
                        "date": commit.date, "authors": [{"user": commit.author}]})
            commit = repo.commits[commit.parent] if commit.parent else None
        return self._json(out)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        f = commit.files.get(path)
        if f is None:
            raise _HTTPError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        headers = {"ETag": f'"{f.oid}"', "X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes",
                   "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"'}
        data = b"" if self.method == "HEAD" else self.hub._blob_path(f.sha256).read_bytes()
        start, status = 0, 200
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
            start = int(rng[6:].split("-")[0])
            if start >= f.size:
                raise _HTTPError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{f.size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{f.size - 1}/{f.size}"
        return self._send(status, data[start:], headers, "application/octet-stream", length=f.size - start)

    # ------------------------------------------------------------------ writing
    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        sha = repo.resolve(revision)
        if sha is None and not self.query.get("create_pr"):
            raise _HTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        files = repo.commits[sha].files if sha else {}
        out = []
        for item in self._payload().get("files", []):
            entry: dict[str, Any] = {"path": item["path"], "uploadMode": "regular", "shouldIgnore": False}
            if item["path"] in files:
                entry["oid"] = files[item["path"]].oid
            out.append(entry)
        return self._json({"files": out, "commitOid": sha})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except ValueError:
            raise _HTTPError(400, "commit payload is not NDJSON") from None
        if not lines or lines[0].get("key") != "header":
            raise _HTTPError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = bool(self.query.get("create_pr"))
        base_sha = repo.resolve(revision)
        if base_sha is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        is_pr_ref = revision.startswith("refs/pr/")
        if not create_pr and not is_pr_ref and revision.removeprefix("refs/heads/") not in repo.branches:
            raise _HTTPError(400, f"Cannot commit to {revision!r}: not a branch")
        parent_commit = header.get("parentCommit")
        if parent_commit and not create_pr and not base_sha.startswith(parent_commit.lower()):
            raise _HTTPError(412, "A commit has happened since. Please refresh and try again.")
        parent = repo.resolve(parent_commit) if (create_pr and parent_commit) else base_sha
        if parent is None:
            raise _HTTPError(404, f"Invalid parent commit: {parent_commit}", code="RevisionNotFound")
        files = dict(repo.commits[parent].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "").strip("/")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HTTPError(400, f"unsupported encoding {value.get('encoding')!r}")
                files[path] = self.hub._store(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                known = next((f for c in repo.commits.values() for f in c.files.values()
                              if f.sha256 == value.get("oid")), None)
                if known is None:
                    raise _HTTPError(422, f"LFS object {value.get('oid')} was never uploaded (the stand-in hub "
                                          "only accepts regular uploads)")
                files[path] = known
            elif key == "deletedFile":
                if path not in files:
                    raise _HTTPError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(path + "/")}
            else:
                raise _HTTPError(400, f"unknown commit operation {key!r}")
        title = header.get("summary") or "Commit"
        sha = self.hub._new_commit(repo, parent, files, title, header.get("description") or "")
        pr_url = None
        if create_pr:
            num = self._open_pr(repo, title, header.get("description") or "", sha)
            pr_url = f"{self._repo_url(repo)}/discussions/{num}"
        elif is_pr_ref:
            repo.prs[int(revision[len("refs/pr/"):])] = sha
        else:
            repo.branches[revision.removeprefix("refs/heads/")] = sha
        return self._json({"success": True, "commitOid": sha, "commitUrl": f"{self._repo_url(repo)}/commit/{sha}",
                           "commitMessage": title, "hookOutput": "", "pullRequestUrl": pr_url})

    def _open_pr(self, repo: _Repo, title: str, description: str, head_sha: str) -> int:
        num = max([0, *repo.discussions]) + 1
        repo.prs[num] = head_sha
        repo.discussions[num] = {"num": num, "title": title, "description": description, "createdAt": _now()}
        return num

    def _create_discussion(self, repo_type: str, repo_id: str) -> int:
        repo, p = self._get_repo(repo_type, repo_id), self._payload()
        if not p.get("pullRequest"):
            raise _HTTPError(400, "the stand-in hub only opens pull requests, not discussions")
        num = self._open_pr(repo, p.get("title", ""), p.get("description", ""), repo.branches["main"])
        return self._json({"num": num, "url": f"{self._repo_url(repo)}/discussions/{num}",
                           "pullRequest": {"ref": f"refs/pr/{num}"}})

    def _discussion_details(self, repo_type: str, repo_id: str, num: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        d = repo.discussions.get(int(num)) if num.isdigit() else None
        if d is None:
            raise _HTTPError(404, f"Discussion {num} not found")
        return self._json({
            "num": d["num"], "title": d["title"], "createdAt": d["createdAt"], "status": "open",
            "author": {"name": self.hub.user}, "repo": {"name": repo.repo_id, "type": repo.repo_type},
            "isPullRequest": True, "events": [], "changes": {"base": "refs/heads/main"},
            "filesWithConflicts": [], "diff": "",
        })

    def _branch(self, repo_type: str, repo_id: str, branch: str) -> int:
        repo = self._get_repo(repo_type, repo_id)
        if self.method == "DELETE":
            if branch not in repo.branches or branch == "main":
                raise _HTTPError(404 if branch not in repo.branches else 403, f"cannot delete branch {branch}")
            del repo.branches[branch]
            return self._json({})
        if branch in repo.branches:
            raise _HTTPError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._payload().get("startingPoint") or "main"
        repo.branches[branch] = self._get_commit(repo, start).sha
        return self._json({})

    def _tag(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo, p = self._get_repo(repo_type, repo_id), self._payload()
        tag = p.get("tag")
        if not tag:
            raise _HTTPError(400, "missing tag")
        if tag in repo.tags:
            raise _HTTPError(409, f"Tag already exists: {tag}")
        repo.tags[tag] = self._get_commit(repo, revision).sha
        return self._json({})

    # ------------------------------------------------------------------ spaces
    def _space_kv(self, repo_id: str, kind: str) -> int:
        repo = self._get_repo("space", repo_id)
        store = repo.variables if kind == "variables" else repo.secrets
        if self.method == "POST":
            p = self._payload()
            if not p.get("key"):
                raise _HTTPError(400, "missing key")
            store[p["key"]] = {"value": p.get("value", ""), "description": p.get("description"),
                               "updatedAt": _now()}
        elif self.method == "DELETE":
            store.pop(self._payload().get("key"), None)
        if kind == "secrets":  # secret values are write-only on the Hub
            if self.method != "GET":
                return self._json({})
            return self._json({k: {"description": v["description"], "updatedAt": v["updatedAt"]}
                               for k, v in store.items()})
        return self._json(store)

    def _runtime(self, repo: _Repo) -> dict:
        hardware = repo.hardware or "cpu-basic"
        return {"stage": "RUNNING", "hardware": {"current": hardware, "requested": hardware},
                "storage": None, "gcTimeout": None, "replicas": {"current": 1, "requested": 1}}

    def _space_runtime(self, repo_id: str) -> int:
        return self._json(self._runtime(self._get_repo("space", repo_id)))


# ---------------------------------------------------------------------- environment helpers
@contextlib.contextmanager
def loopback_network() -> Iterator[None]:
    """Lift `HF_HUB_OFFLINE` for huggingface_hub and transformers, allowing only loopback hosts."""
    from huggingface_hub import constants, set_client_factory
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import _http

    def only_loopback(request) -> None:
        if request.url.host not in LOOPBACK_HOSTS:
            raise OfflineModeIsEnabled(
                f"Cannot reach {request.url}: tests may only reach the stand-in Hub on 127.0.0.1"
                " (tests/hubserver.py)."
            )

    def factory():
        client = _http.default_client_factory()
        hooks = client.event_hooks
        hooks["request"] = [*hooks["request"], only_loopback]
        client.event_hooks = hooks
        return client

    previous_factory = _http._GLOBAL_CLIENT_FACTORY
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setenv("HF_HUB_OFFLINE", "0")
        mp.delenv("TRANSFORMERS_OFFLINE", raising=False)
        set_client_factory(factory)  # also closes the shared client, so no stale connections are reused
        try:
            yield
        finally:
            set_client_factory(previous_factory)


@contextlib.contextmanager
def hub_environment(server: HubServer, cache_dir: str | Path | None = None, *, token: bool = True) -> Iterator[None]:
    """Point huggingface_hub's and transformers' *default* endpoint (and cache, token) at `server`.

    Does not lift offline mode by itself: combine with `loopback_network()` (the `hub_online` fixture does).
    """
    from huggingface_hub import constants, hf_api

    url = server.url
    th_before = sys.modules.get("transformers.utils.hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "ENDPOINT", url)
        mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
        mp.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
        mp.setattr(hf_api.api, "endpoint", url)
        mp.setenv("HF_ENDPOINT", url)
        if token:
            mp.setenv("HF_TOKEN", server.token)
        if cache_dir is not None:
            mp.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
            mp.setenv("HF_HUB_CACHE", str(cache_dir))
        if th_before is not None:
            mp.setattr(th_before, "_hf_api", None)
        # huggingface_hub caches the agent registry it fetches from ENDPOINT for a day: keep ours out of HF_HOME
        mp.setattr(constants, "AGENT_HARNESSES_PATH", str(Path(cache_dir or server.root) / ".agent_harnesses.json"))
        try:
            yield
        finally:
            th_after = sys.modules.get("transformers.utils.hub")
            if th_before is None and th_after is not None:
                th_after._hf_api = None  # built during the test against the stand-in: drop it


# ---------------------------------------------------------------------- pytest fixtures
@pytest.fixture
def hub_server(tmp_path_factory) -> Iterator[HubServer]:
    """A running stand-in Hub (token `test`, user `test-user`); see the module docstring."""
    server = HubServer(root=tmp_path_factory.mktemp("hubserver"))
    with server:
        yield server


@pytest.fixture
def hub_network() -> Iterator[None]:
    """Offline mode lifted for this test, with only loopback hosts reachable through huggingface_hub."""
    with loopback_network():
        yield


@pytest.fixture
def hub_online(hub_server: HubServer, hub_network: None, tmp_path_factory) -> Iterator[HubServer]:
    """`hub_network` plus the default Hub endpoint, token and cache pointed at `hub_server`; yields the server."""
    with hub_environment(hub_server, tmp_path_factory.mktemp("hub-cache")):
        yield hub_server
