"""Tests of the Python client against a real cluster.

With ALLUVIUM_PROXY set (tests/python's Go test sets it, with
ALLUVIUM_TOKEN and ALLUVIUM_TEST_UFS) they use that cluster; otherwise they
start `alluvium local` themselves ($ALLUVIUM_BIN, `alluvium` on $PATH, or
the repo's bin/alluvium) with a token and a 2 s stream timeout, and stop it
at the end.
"""

import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import alluvium  # noqa: E402

_cluster = {}


def _free_base():
    for _ in range(200):
        base = 20000 + 200 * random.randrange(200)
        try:
            socks = []
            for p in (base, base + 1, base + 3, base + 4, base + 5, base + 6, base + 7, base + 20, base + 21, base + 22):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def _find_binary():
    b = os.environ.get("ALLUVIUM_BIN")
    if b:
        return b
    b = shutil.which("alluvium")
    if b:
        return b
    repo_bin = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "bin", "alluvium")
    if os.path.exists(repo_bin):
        return repo_bin
    return None


def setUpModule():
    if os.environ.get("ALLUVIUM_PROXY"):
        _cluster["url"] = os.environ["ALLUVIUM_PROXY"]
        _cluster["token"] = os.environ.get("ALLUVIUM_TOKEN", "")
        _cluster["ufs"] = os.environ.get("ALLUVIUM_TEST_UFS", "")
        return
    binary = _find_binary()
    if not binary:
        raise unittest.SkipTest("no alluvium binary (set ALLUVIUM_BIN or run `make build`): PYTHON CLIENT TESTS DID NOT RUN")
    root = tempfile.mkdtemp(prefix="alluvium-py-")
    ufs = os.path.join(root, "ufs")
    os.makedirs(ufs)
    base = _free_base()
    env = dict(os.environ, ALLUVIUM_PROXY_STREAM_TIMEOUT="2s")
    proc = subprocess.Popen(
        [binary, "local", "--home", os.path.join(root, "home"), "--ufs", ufs, "--workers", "1",
         "--port-base", str(base), "--token", "pytest-token"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    ready = threading.Event()
    lines = []

    def pump():
        for line in proc.stdout:
            lines.append(line.decode(errors="replace"))
            if b"ready" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(90):
        proc.kill()
        raise RuntimeError("alluvium local did not become ready:\n" + "".join(lines[-40:]))
    _cluster.update(url="http://127.0.0.1:%d" % (base + 6), token="pytest-token", ufs=ufs, proc=proc, root=root)


def tearDownModule():
    proc = _cluster.get("proc")
    if proc:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(_cluster["root"], ignore_errors=True)


def client(**kw):
    kw.setdefault("token", _cluster["token"])
    return alluvium.Client(_cluster["url"], **kw)


def unique(name):
    return "/py-%d-%s" % (random.randrange(1 << 30), name)


class FileSystemTest(unittest.TestCase):
    def setUp(self):
        self.c = client()

    def test_write_read_round_trip(self):
        d = unique("rt")
        data = os.urandom(3 * 1024 * 1024 + 17)
        self.assertEqual(self.c.write(d + "/blob.bin", data, block_size=1 << 20), len(data))
        self.assertEqual(self.c.read(d + "/blob.bin"), data)
        st = self.c.stat(d + "/blob.bin")
        self.assertEqual(st.length, len(data))
        self.assertTrue(st.completed)
        self.assertFalse(st.folder)
        self.assertEqual(st.block_size_bytes, 1 << 20)
        self.assertEqual(len(st.block_ids), 4)
        self.assertEqual(st.name, "blob.bin")
        self.assertIn("fileBlockInfos", st.raw)
        self.assertTrue(self.c.exists(d + "/blob.bin"))
        self.assertFalse(self.c.exists(d + "/nothing"))
        names = [f.name for f in self.c.ls(d)]
        self.assertEqual(names, ["blob.bin"])
        buf = io.BytesIO()
        self.assertEqual(self.c.download(d + "/blob.bin", buf), len(data))
        self.assertEqual(buf.getvalue(), data)

    def test_write_types_and_sources(self):
        d = unique("src")
        self.c.mkdir(d)
        # A file object, an iterable of chunks, and a str.
        self.c.write(d + "/from-file", io.BytesIO(b"a" * 100000), write_type="MUST_CACHE")
        self.c.write(d + "/from-iter", (bytes([i]) * 1000 for i in range(10)), write_type="through")
        self.c.write(d + "/from-str", "héllo", write_type="CACHE_THROUGH")
        self.assertFalse(self.c.stat(d + "/from-file").persisted)
        self.assertTrue(self.c.stat(d + "/from-iter").persisted)
        self.assertEqual(self.c.stat(d + "/from-iter").cached_percent, 0)
        self.assertEqual(self.c.read(d + "/from-file"), b"a" * 100000)
        self.assertEqual(self.c.read(d + "/from-iter"), b"".join(bytes([i]) * 1000 for i in range(10)))
        self.assertEqual(self.c.read(d + "/from-str"), "héllo".encode())
        if _cluster["ufs"]:
            with open(os.path.join(_cluster["ufs"], d.lstrip("/"), "from-str"), "rb") as f:
                self.assertEqual(f.read(), "héllo".encode())

    def test_streams(self):
        p = unique("stream.bin")
        with self.c.open(p, "wb") as w:
            w.write(b"first ")
            w.write(b"second")
            self.assertEqual(w.written, 12)
        with self.c.open(p, "rb") as r:
            self.assertEqual(r.read(6), b"first ")
            self.assertEqual(r.read(), b"second")
        with self.c.open(p, "rb", read_type="NO_CACHE") as r:
            self.assertEqual(b"".join(r), b"first second")
        with self.assertRaises(ValueError):
            self.c.open(p, "a")

    def test_abandoned_writer_never_completes(self):
        p = unique("abandoned")
        with self.assertRaises(RuntimeError):
            with self.c.open(p, "wb") as w:
                w.write(b"half")
                raise RuntimeError("the producer died")
        self.assertFalse(self.c.stat(p).completed)
        deadline = time.time() + 30
        while self.c.exists(p) and time.time() < deadline:
            time.sleep(0.5)
        self.assertFalse(self.c.exists(p), "the idle stream was not discarded")

    def test_directories_and_attributes(self):
        d = unique("dirs")
        self.c.mkdir(d + "/a/b", recursive=True)
        self.c.mkdir(d + "/a/b", allow_exists=True)
        with self.assertRaises(alluvium.AlreadyExistsError):
            self.c.mkdir(d + "/a/b")
        with self.assertRaises(alluvium.NotFoundError):
            self.c.mkdir(d + "/x/y")
        self.c.write(d + "/a/b/f", b"data")
        self.c.rename(d + "/a/b/f", d + "/a/g")
        self.assertEqual(self.c.read(d + "/a/g"), b"data")
        self.c.set_attribute(d + "/a/g", pinned=True, mode=0o600)
        st = self.c.stat(d + "/a/g")
        self.assertTrue(st.pinned)
        self.assertEqual(st.mode, 0o600)
        self.c.set_attribute(d + "/a/g", pinned=False)
        rec = sorted(f.path for f in self.c.ls(d, recursive=True))
        self.assertEqual(rec, [d + "/a", d + "/a/b", d + "/a/g"])
        self.c.free(d, recursive=True)
        with self.assertRaises(alluvium.FailedPreconditionError):
            self.c.delete(d)
        self.c.delete(d, recursive=True)
        self.assertFalse(self.c.exists(d))

    def test_mount(self):
        src = tempfile.mkdtemp(prefix="alluvium-py-mount-")
        try:
            with open(os.path.join(src, "m.txt"), "wb") as f:
                f.write(b"mounted bytes")
            m = unique("mnt")
            self.c.mount(m, "file://" + src)
            self.assertTrue(self.c.stat(m).mount_point)
            self.assertEqual(self.c.read(m + "/m.txt"), b"mounted bytes")
            self.c.unmount(m)
            self.assertFalse(self.c.exists(m))
        finally:
            shutil.rmtree(src, ignore_errors=True)

    def test_errors(self):
        with self.assertRaises(alluvium.NotFoundError) as cm:
            self.c.stat("/no/such/file")
        self.assertEqual(cm.exception.status_code, "NOT_FOUND")
        self.assertEqual(cm.exception.http_status, 404)
        self.assertIn("/no/such/file", str(cm.exception))
        with self.assertRaises(alluvium.InvalidArgumentError):
            self.c.write(unique("bad"), b"x", write_type="SOMETIMES")
        with self.assertRaises(alluvium.InvalidArgumentError):
            self.c.read("/")
        with self.assertRaises(alluvium.UnavailableError):
            alluvium.Client("http://127.0.0.1:9", timeout=2).exists("/")
        if _cluster["token"]:
            with self.assertRaises(alluvium.UnauthenticatedError):
                client(token="wrong").exists("/")
        self.assertTrue(issubclass(alluvium.NotFoundError, alluvium.AlluviumError))


class JobsTest(unittest.TestCase):
    def setUp(self):
        self.c = client()

    def test_load_wait_with_progress(self):
        d = unique("load")
        for i in range(3):
            self.c.write("%s/f%d" % (d, i), os.urandom(200000), write_type="THROUGH")
        self.assertEqual(self.c.stat(d + "/f0").cached_percent, 0)
        job = self.c.load(d)
        self.assertEqual(job.plan, "load")
        seen = []
        final = self.c.wait(job, progress=seen.append)
        self.assertEqual(final.status, "COMPLETED")
        self.assertTrue(seen and seen[-1].status == "COMPLETED")
        self.assertEqual(final.bytes_done, 600000)
        self.assertGreaterEqual(final.tasks_done, 1)
        for i in range(3):
            self.assertEqual(self.c.stat("%s/f%d" % (d, i)).cached_percent, 100)
        self.assertIn(job.id, [j.id for j in self.c.jobs(status="COMPLETED")])
        self.assertIn(job.id, [j.id for j in self.c.jobs(plan="load")])
        self.assertEqual(self.c.job(job.id).status, "COMPLETED")

    def test_cancel_and_failures(self):
        p = unique("slow.bin")
        self.c.write(p, os.urandom(2 << 20), write_type="THROUGH")
        job = self.c.submit("load", {"path": p, "bandwidth": 65536}, request_id="py-" + p)
        self.assertEqual(self.c.submit("load", {"path": p, "bandwidth": 65536}, request_id="py-" + p).id, job.id)
        with self.assertRaises(alluvium.DeadlineExceededError):
            self.c.wait(job, timeout=0.3)
        self.c.cancel(job.id)
        with self.assertRaises(alluvium.JobCanceledError) as cm:
            self.c.wait(job.id, timeout=30)
        self.assertEqual(cm.exception.job.status, "CANCELED")
        with self.assertRaises(alluvium.InvalidArgumentError):
            self.c.submit("teleport", {"path": "/"})
        with self.assertRaises(alluvium.NotFoundError):
            self.c.job(987654321)
        with self.assertRaises(alluvium.NotFoundError):
            self.c.load("/no/such/dir")
        if _cluster["ufs"]:
            # A file whose UFS bytes vanished cannot be loaded: the job FAILS.
            lost = unique("lost.bin")
            self.c.write(lost, b"gone soon", write_type="THROUGH")
            os.remove(os.path.join(_cluster["ufs"], lost.lstrip("/")))
            with self.assertRaises(alluvium.JobFailedError) as cm:
                self.c.wait(self.c.load(lost), timeout=60)
            self.assertEqual(cm.exception.job.status, "FAILED")
            self.assertTrue(cm.exception.job.error)

if __name__ == "__main__":
    unittest.main()
