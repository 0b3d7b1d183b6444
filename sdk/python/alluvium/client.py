"""The Alluvium client: file-system and job calls over the REST proxy.

Standard library only. The proxy speaks Alluxio 2.x's REST API
(``/api/v1/paths``, ``/api/v1/streams``) plus ``/api/v1/jobs``; this module
hides it behind plain methods and typed exceptions.
"""

import http.client
import json
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

from .errors import (
    AlluviumError,
    DeadlineExceededError,
    JobCanceledError,
    JobFailedError,
    UnavailableError,
    error_for,
)

DEFAULT_URL = "http://localhost:39999"
_CHUNK = 1 << 20


@dataclass
class FileStatus:
    """A file's or directory's status (Alluxio's URIStatus fields)."""

    path: str
    name: str
    folder: bool
    length: int
    completed: bool
    persisted: bool
    persistence_state: str
    block_size_bytes: int
    in_alluxio_percentage: int
    in_memory_percentage: int
    mode: int
    owner: str
    group: str
    pinned: bool
    mount_point: bool
    ufs_path: str
    creation_time_ms: int
    last_modification_time_ms: int
    file_id: int
    block_ids: List[int] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def cached_percent(self) -> int:
        return self.in_alluxio_percentage

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FileStatus":
        return cls(
            path=d.get("path", ""),
            name=d.get("name", ""),
            folder=bool(d.get("folder")),
            length=int(d.get("length", 0)),
            completed=bool(d.get("completed")),
            persisted=bool(d.get("persisted")),
            persistence_state=d.get("persistenceState", ""),
            block_size_bytes=int(d.get("blockSizeBytes", 0)),
            in_alluxio_percentage=int(d.get("inAlluxioPercentage", 0)),
            in_memory_percentage=int(d.get("inMemoryPercentage", 0)),
            mode=int(d.get("mode", 0)),
            owner=d.get("owner", ""),
            group=d.get("group", ""),
            pinned=bool(d.get("pinned")),
            mount_point=bool(d.get("mountPoint")),
            ufs_path=d.get("ufsPath", ""),
            creation_time_ms=int(d.get("creationTimeMs", 0)),
            last_modification_time_ms=int(d.get("lastModificationTimeMs", 0)),
            file_id=int(d.get("fileId", 0)),
            block_ids=list(d.get("blockIds") or []),
            raw=d,
        )


TERMINAL = ("COMPLETED", "FAILED", "CANCELED")


@dataclass
class Job:
    """A job as ``alluvium job stat --output json`` prints it."""

    id: int
    plan: str
    status: str
    tasks_total: int = 0
    tasks_done: int = 0
    tasks_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    error: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """Whether the job has ended (COMPLETED, FAILED or CANCELED)."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Job":
        return cls(
            id=int(d["id"]),
            plan=d.get("plan", ""),
            status=d.get("status", ""),
            tasks_total=int(d.get("tasksTotal", 0)),
            tasks_done=int(d.get("tasksDone", 0)),
            tasks_failed=int(d.get("tasksFailed", 0)),
            bytes_total=int(d.get("bytesTotal", 0)),
            bytes_done=int(d.get("bytesDone", 0)),
            error=d.get("error", "") or "",
            raw=d,
        )


def _clean_options(opts: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in opts.items() if v is not None}


class Client:
    """A client of an Alluvium cluster's REST proxy.

    Args:
        url: the proxy's REST URL (``http://host:39999``); default
            ``$ALLUVIUM_PROXY`` (which ``alluvium local`` writes to
            ``<home>/env``), else ``http://localhost:39999``. A bare
            ``host:port`` is fine.
        token: the cluster token, sent as ``Authorization: Bearer``;
            default ``$ALLUVIUM_TOKEN``.
        timeout: seconds to wait on the network per call.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 60.0):
        url = url or os.environ.get("ALLUVIUM_PROXY") or DEFAULT_URL
        if "://" not in url:
            url = "http://" + url
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("proxy URL %r: want http://host:port" % url)
        self.url = url.rstrip("/")
        self._scheme = u.scheme
        self._host = u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._base = u.path.rstrip("/")
        self.token = token if token is not None else os.environ.get("ALLUVIUM_TOKEN", "")
        self.timeout = timeout

    def __repr__(self):
        return "alluvium.Client(%r)" % self.url

    # --- HTTP -----------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _request(self, method: str, endpoint: str, body=None, content_type: Optional[str] = None,
                 query: Optional[Dict[str, str]] = None, stream: bool = False):
        """Sends one request; returns the response (open when stream)."""
        target = self._base + "/api/v1/" + endpoint
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if body is not None and not isinstance(body, (bytes, bytearray, memoryview, str)):
            headers["Transfer-Encoding"] = "chunked"
        conn = self._conn()
        try:
            conn.request(method, target, body=body, headers=headers,
                         encode_chunked="Transfer-Encoding" in headers)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            raise UnavailableError("%s %s: %s" % (method, self.url + target, e)) from e
        if resp.status != 200:
            data = resp.read()
            conn.close()
            try:
                err = json.loads(data)
                raise error_for(err.get("statusCode", "UNKNOWN"), err.get("message", ""), resp.status)
            except (ValueError, AttributeError):
                raise AlluviumError("%s %s: HTTP %d: %s" % (method, target, resp.status, data[:200]),
                                    http_status=resp.status)
        if stream:
            resp._alluvium_conn = conn  # closed with the response
            return resp
        data = resp.read()
        conn.close()
        if not data:
            return None
        ctype = resp.getheader("Content-Type", "")
        if ctype != "application/json":
            raise AlluviumError("%s %s: unexpected Content-Type %r" % (method, target, ctype))
        return json.loads(data)

    @staticmethod
    def _paths(path: str, action: str) -> str:
        # As Alluxio's clients build it: paths/ + path + /action, so an
        # absolute path makes "paths//dir/file/action" (the root "paths///").
        if not path.startswith("/"):
            path = "/" + path
        return "paths/" + urllib.parse.quote(path, safe="/") + "/" + action

    def _post(self, path: str, action: str, options: Optional[Dict[str, Any]] = None,
              query: Optional[Dict[str, str]] = None):
        body = json.dumps(_clean_options(options or {})).encode()
        return self._request("POST", self._paths(path, action), body, "application/json", query)

    # --- file system ----------------------------------------------------

    def stat(self, path: str) -> FileStatus:
        """Returns the status of a file or directory (NotFoundError if none)."""
        return FileStatus.from_json(self._post(path, "get-status"))

    def exists(self, path: str) -> bool:
        return bool(self._post(path, "exists"))

    def ls(self, path: str = "/", recursive: bool = False) -> List[FileStatus]:
        """Lists a directory (its whole subtree when recursive)."""
        return [FileStatus.from_json(d) for d in self._post(path, "list-status", {"recursive": recursive or None})]

    def mkdir(self, path: str, recursive: bool = False, allow_exists: bool = False,
              write_type: Optional[str] = None, mode: Optional[int] = None) -> None:
        """Creates a directory; recursive also makes missing parents."""
        self._post(path, "create-directory", {"recursive": recursive, "allowExists": allow_exists,
                                              "writeType": write_type, "mode": mode})

    def delete(self, path: str, recursive: bool = False, alluvium_only: bool = False) -> None:
        """Deletes a file or directory (from the UFS too unless alluvium_only)."""
        self._post(path, "delete", {"recursive": recursive, "alluxioOnly": alluvium_only})

    def rename(self, src: str, dst: str) -> None:
        self._post(src, "rename", query={"dst": dst})

    def free(self, path: str, recursive: bool = False, force: bool = False) -> None:
        """Drops the cached copies of path's blocks; the UFS keeps the bytes."""
        self._post(path, "free", {"recursive": recursive, "forced": force})

    def set_attribute(self, path: str, pinned: Optional[bool] = None, mode: Optional[int] = None,
                      owner: Optional[str] = None, group: Optional[str] = None, ttl_ms: Optional[int] = None,
                      ttl_action: Optional[str] = None, replication_min: Optional[int] = None,
                      replication_max: Optional[int] = None, recursive: bool = False) -> None:
        self._post(path, "set-attribute", {
            "pinned": pinned, "mode": mode, "owner": owner, "group": group, "ttl": ttl_ms,
            "ttlAction": ttl_action, "replicationMin": replication_min, "replicationMax": replication_max,
            "recursive": recursive})

    def mount(self, path: str, src: str, properties: Optional[Dict[str, str]] = None,
              read_only: bool = False, shared: bool = False) -> None:
        """Mounts the under storage at src (file:///dir, s3://bucket/prefix) at path."""
        self._post(path, "mount", {"properties": properties, "readOnly": read_only, "shared": shared},
                   query={"src": src})

    def unmount(self, path: str) -> None:
        self._post(path, "unmount")

    # --- data -------------------------------------------------------------

    def write(self, path: str, data: Union[bytes, str, Iterable[bytes], Any], write_type: Optional[str] = None,
              block_size: Optional[int] = None, recursive: bool = True, overwrite: bool = False) -> int:
        """Writes a whole file and returns its length.

        data is bytes, str (UTF-8), an iterable of bytes, or a binary file
        object. The file appears only once every byte is written; if the
        write fails the file is never completed (the proxy discards the
        stream once it has been idle for its stream timeout).
        """
        with self.open(path, "wb", write_type=write_type, block_size=block_size,
                       recursive=recursive, overwrite=overwrite) as w:
            w.write(data)
            return w.written

    def read(self, path: str) -> bytes:
        """Returns a whole file's bytes."""
        with self.open(path, "rb") as r:
            return r.read()

    def download(self, path: str, dest: Union[str, Any]) -> int:
        """Copies a file to dest (a local path or a binary file object)
        with one GET; returns the bytes copied."""
        resp = self._request("GET", self._paths(path, "download-file"), stream=True)
        try:
            out = open(dest, "wb") if isinstance(dest, str) else dest
            try:
                n = 0
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    n += len(chunk)
            finally:
                if isinstance(dest, str):
                    out.close()
        finally:
            resp.close()
            resp._alluvium_conn.close()
        want = resp.getheader("Content-Length")
        if want is not None and int(want) != n:
            raise AlluviumError("download %s: got %d bytes of %s" % (path, n, want))
        return n

    def open(self, path: str, mode: str = "rb", read_type: Optional[str] = None,
             write_type: Optional[str] = None, block_size: Optional[int] = None,
             recursive: bool = True, overwrite: bool = False):
        """Opens a file as a stream: ``"rb"`` returns a :class:`Reader`,
        ``"wb"`` a :class:`Writer`. Use it in a ``with`` block; a Writer
        completes the file when the block ends without an exception."""
        if mode in ("r", "rb"):
            sid = self._post(path, "open-file", {"readType": read_type})
            return Reader(self, int(sid), path)
        if mode in ("w", "wb"):
            sid = self._post(path, "create-file", {"writeType": write_type, "blockSizeBytes": block_size,
                                                   "recursive": recursive, "overwrite": overwrite})
            return Writer(self, int(sid), path)
        raise ValueError("mode %r: want 'rb' or 'wb'" % mode)

    def _stream(self, sid: int, action: str, body=None, stream: bool = False):
        ctype = "application/octet-stream" if body is not None else None
        return self._request("POST", "streams/%d/%s" % (sid, action), body, ctype, stream=stream)

    # --- jobs -------------------------------------------------------------

    def submit(self, plan: str, config: Dict[str, Any], request_id: Optional[str] = None) -> Job:
        """Submits a job of plan (load, persist, replicate, move, copy) with
        its config, e.g. ``submit("load", {"path": "/data"})``. A request_id
        makes retries safe: the same id returns the first job."""
        body = {"plan": plan, "config": config}
        if request_id:
            body["requestId"] = request_id
        return Job.from_json(self._request("POST", "jobs", json.dumps(body).encode(), "application/json"))

    def load(self, path: str, replication: Optional[int] = None, **config) -> Job:
        """Submits a load job that caches every block under path."""
        config.update({"path": path, "replication": replication})
        return self.submit("load", _clean_options(config))

    def job(self, job_id: int, verbose: bool = False) -> Job:
        q = {"verbose": "true"} if verbose else None
        return Job.from_json(self._request("GET", "jobs/%d" % int(job_id), query=q))

    def jobs(self, status: Union[None, str, Iterable[str]] = None, plan: Optional[str] = None) -> List[Job]:
        """Lists the jobs the job master keeps, oldest first; status filters
        (a name or several: "RUNNING", ["FAILED", "CANCELED"])."""
        return list(self.iter_jobs(status, plan))

    def iter_jobs(self, status=None, plan=None, page_size: int = 1000) -> Iterator[Job]:
        if isinstance(status, str):
            status = [status]
        q = {"pageSize": str(page_size)}
        if status:
            q["status"] = ",".join(status)
        if plan:
            q["plan"] = plan
        while True:
            page = self._request("GET", "jobs", query=q)
            for d in page.get("jobs", []):
                yield Job.from_json(d)
            token = page.get("nextPageToken")
            if not token:
                return
            q["pageToken"] = token

    def cancel(self, job_id: int) -> Job:
        """Cancels a job: its running tasks stop and it ends CANCELED."""
        return Job.from_json(self._request("POST", "jobs/%d/cancel" % int(job_id)))

    def wait(self, job: Union[int, Job], progress: Optional[Callable[[Job], None]] = None,
             timeout: Optional[float] = None, interval: float = 0.2) -> Job:
        """Waits for a job to end and returns its final state.

        progress, when given, is called with the job each time its state
        changes (and once at the end). Raises JobFailedError or
        JobCanceledError unless the job COMPLETED, and DeadlineExceededError
        if timeout seconds pass first.
        """
        job_id = job.id if isinstance(job, Job) else int(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            j = self.job(job_id)
            seen = (j.status, j.tasks_done, j.tasks_failed, j.bytes_done, j.tasks_total)
            if progress is not None and seen != last:
                progress(j)
            last = seen
            if j.done:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError("job %d still %s after %.1fs" % (job_id, j.status, timeout))
            time.sleep(interval)
        if j.status == "FAILED":
            raise JobFailedError(j)
        if j.status == "CANCELED":
            raise JobCanceledError(j)
        return j


class Reader:
    """A file opened for reading (``Client.open(path, "rb")``).

    Bytes arrive as one stream: read(n) returns up to n bytes, read()
    the rest. Close it (or use ``with``) to release the proxy's stream.
    """

    def __init__(self, client: Client, sid: int, path: str):
        self._c, self.id, self.path = client, sid, path
        self._resp = None
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed Reader")
        if self._resp is None:
            self._resp = self._c._stream(self.id, "read", stream=True)
        if n is None or n < 0:
            return self._resp.read()
        return self._resp.read(n)

    def __iter__(self):
        while True:
            chunk = self.read(_CHUNK)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._resp is not None:
            self._resp.close()
            self._resp._alluvium_conn.close()
        self._c._stream(self.id, "close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Writer:
    """A file opened for writing (``Client.open(path, "wb")``).

    Each write() sends its data to the proxy; close() completes the file.
    Leaving a ``with`` block on an exception does not complete it: the
    proxy discards the stream when it has been idle for its timeout.
    """

    def __init__(self, client: Client, sid: int, path: str):
        self._c, self.id, self.path = client, sid, path
        self.written = 0
        self.closed = False

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a closed Writer")
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        elif hasattr(data, "read"):
            body = iter(lambda: data.read(_CHUNK), b"")
        else:
            body = (bytes(b) for b in data)
        n = int(self._c._stream(self.id, "write", body))
        self.written += n
        return n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._c._stream(self.id, "close")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.closed = True  # never complete a file half written
        return False
