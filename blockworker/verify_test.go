package blockworker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/jobmaster"
	"github.com/alluvium/alluvium/jobworker"
	"github.com/alluvium/alluvium/plans/spec"
	"github.com/alluvium/alluvium/sdk"
	"github.com/alluvium/alluvium/ufs"
)

// flipFS is under storage that corrupts what it is given: every file
// written through it has one bit flipped in its middle byte, silently, as a
// bad disk or a buggy gateway would. Reads return what is stored.
type flipFS struct {
	ufs.FileSystem
	flips atomic.Int64 // files corrupted
}

func (f *flipFS) Create(ctx context.Context, p string, o ufs.CreateOptions) (ufs.Writer, error) {
	w, err := f.FileSystem.Create(ctx, p, o)
	if err != nil {
		return nil, err
	}
	fw := &flipWriter{Writer: w, fs: f}
	if rb, ok := w.(ufs.WrittenHasher); ok && strings.Contains(p, "readback") {
		// One that reads back before its commit, as the local UFS's does.
		return &flipReadBackWriter{fw, rb}, nil
	}
	return fw, nil
}

// flipReadBackWriter is a flipWriter whose bytes (corrupted) can be read
// back before Commit.
type flipReadBackWriter struct {
	*flipWriter
	rb ufs.WrittenHasher
}

func (w *flipReadBackWriter) HashWritten(h io.Writer) (int64, error) {
	if w.buf.Len() > 0 {
		b := w.buf.Bytes()
		b[len(b)/2] ^= 0x10
		w.fs.flips.Add(1)
		if _, err := w.Writer.Write(b); err != nil {
			return 0, err
		}
		w.buf.Reset()
	}
	return w.rb.HashWritten(h)
}

// flipWriter buffers the file (test files are small) so it can corrupt
// the middle byte whatever the chunking, then writes it at Commit.
type flipWriter struct {
	ufs.Writer
	fs  *flipFS
	buf bytes.Buffer
}

func (w *flipWriter) Write(b []byte) (int, error) { return w.buf.Write(b) }

func (w *flipWriter) Commit() (ufs.FileStatus, error) {
	b := w.buf.Bytes()
	if len(b) > 0 {
		b[len(b)/2] ^= 0x10
		w.fs.flips.Add(1)
	}
	if _, err := w.Writer.Write(b); err != nil {
		_ = w.Writer.Abort()
		return ufs.FileStatus{}, err
	}
	return w.Writer.Commit()
}

// verifyCluster is a whole cluster in this process — the FS master, this
// package's block worker, a job master and a job worker, each the real
// server — whose block worker writes through flipFS wherever a mount's
// URI is under badDir.
type verifyCluster struct {
	worker  *Worker
	client  *sdk.Client
	jobs    *sdk.Jobs
	srcDir  string // the root mount's UFS
	badDir  string // the corrupting mount's UFS
	flipper *flipFS
}

func quietConfig(t *testing.T, set map[string]any) *config.Config {
	t.Helper()
	l := config.NewLoader()
	l.Set("home", t.TempDir())
	l.Set("log.level", "warn")
	for k, v := range set {
		l.Set(k, v)
	}
	cfg, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startVerifyCluster(t *testing.T) *verifyCluster {
	t.Helper()
	ctx := context.Background()
	log := zap.NewNop()
	vc := &verifyCluster{srcDir: t.TempDir(), badDir: t.TempDir()}

	m, err := fsmaster.New(quietConfig(t, map[string]any{
		"fsmaster.rpc-port": 0, "fsmaster.http-port": 0, "fsmaster.ufs": "file://" + vc.srcDir,
		"fsmaster.job-master": "", "fsmaster.user.block-size": mib,
	}), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })

	home := t.TempDir()
	wcfg := workerConfig(t, home, m.RPCAddr(), []config.TierConfig{{Alias: "MEM", Path: filepath.Join(home, "mem"), Quota: "64MiB"}})
	vc.worker, err = New(wcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	vc.worker.mounts.open = func(ctx context.Context, uri string, opts map[string]string) (ufs.FileSystem, error) {
		fs, err := ufs.Open(ctx, uri, opts)
		if err != nil || !strings.HasPrefix(uri, "file://"+vc.badDir) {
			return fs, err
		}
		vc.flipper = &flipFS{FileSystem: fs}
		return vc.flipper, nil
	}
	if err := vc.worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.worker.Stop(context.Background()) })
	if err := vc.worker.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}

	raftPort := freeLoopbackPort(t)
	jm, err := jobmaster.New(quietConfig(t, map[string]any{
		"jobmaster.host": "127.0.0.1", "jobmaster.bind-host": "127.0.0.1",
		"jobmaster.rpc-port": 0, "jobmaster.http-port": 0, "jobmaster.raft.port": raftPort,
		"jobmaster.raft.node-id":           fmt.Sprintf("127.0.0.1:%d", raftPort),
		"jobmaster.raft.heartbeat-timeout": "200ms", "jobmaster.raft.election-timeout": "200ms",
		"jobmaster.master": m.RPCAddr(), "jobmaster.task.max-attempts": 2,
	}), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := jm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jm.Stop(context.Background()) })

	jw, err := jobworker.New(quietConfig(t, map[string]any{
		"worker.master": m.RPCAddr(), "jobworker.job-master": jm.RPCAddr(), "jobworker.rpc-port": 0,
	}), log, jobworker.Colocated{BlockWorkerID: vc.worker.ID(), BlockWorkerAddress: vc.worker.RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := jw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jw.Stop(context.Background()) })

	vc.client, err = sdk.Dial(ctx, sdk.WithMaster(m.RPCAddr()), sdk.WithJobMasters(jm.RPCAddr()), sdk.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vc.client.Close() })
	if vc.jobs, err = vc.client.Jobs(); err != nil {
		t.Fatal(err)
	}
	// The job master knows its job worker: a submit will be served.
	testutil.Eventually(t, 30*time.Second, func() error {
		ws, err := vc.jobs.Workers(ctx)
		if err != nil {
			return err
		}
		if len(ws) != 1 || ws[0].GetState() != api.WorkerState_LIVE {
			return fmt.Errorf("job workers %v", ws)
		}
		return nil
	})
	if _, err := vc.client.Mount(ctx, "/bad", "file://"+vc.badDir, sdk.MountOptions{}); err != nil {
		t.Fatal(err)
	}
	return vc
}

// run submits a job and returns it once it has ended, however it ended.
func (vc *verifyCluster) run(t *testing.T, plan string, cfg any) *sdk.JobInfo {
	t.Helper()
	ctx := context.Background()
	id, err := vc.jobs.Submit(ctx, plan, cfg)
	if err != nil {
		t.Fatalf("submit %s %+v: %v", plan, cfg, err)
	}
	j, err := vc.jobs.Wait(ctx, id, nil)
	if j == nil || !sdk.IsTerminal(j.GetStatus()) {
		t.Fatalf("wait for %s job %d: %v", plan, id, err)
	}
	return j
}

// ufsFiles lists the regular files under dir, relative to it.
func ufsFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The read-back of WriteUfsFileFrom (transfer.go) against under storage
// that corrupts writes: --checksum turns the corruption into DataLoss and
// removes the file; a copy job with --checksum fails every file and leaves
// nothing at the destination; a cross-mount move (always verified) fails
// and keeps its source, bytes and all. A copy without --checksum shows
// the corruption is real (this test could fail).
func TestChecksumCatchesCorruptUFSWrites(t *testing.T) {
	vc := startVerifyCluster(t)
	ctx := context.Background()
	files := map[string][]byte{
		"d/small":  randBytes(1000),          // one block: written straight to its path
		"d/multi":  randBytes(2*mib + 12345), // three blocks: assembled, then renamed
		"d/second": randBytes(77777),
	}
	for rel, b := range files {
		testutil.WriteFile(t, filepath.Join(vc.srcDir, rel), b)
	}
	// Cached first, so the copies read blocks from the worker.
	if j := vc.run(t, "load", map[string]any{"path": "/d"}); j.GetStatus() != api.JobInfo_COMPLETED {
		t.Fatalf("load: %v", j)
	}

	t.Run("WriteUfsFileFrom with checksum answers DataLoss", func(t *testing.T) {
		fi, err := vc.client.Stat(ctx, "/d/multi")
		if err != nil {
			t.Fatal(err)
		}
		var srcs []*api.BlockSource
		for i, id := range fi.GetBlockIds() {
			srcs = append(srcs, &api.BlockSource{BlockId: id, Length: min(mib, fi.GetLength()-int64(i)*mib)})
		}
		dest := &api.WriteUfsFileHeader{MountId: mountID(t, vc, "/bad"), UfsPath: "file://" + vc.badDir + "/direct", CreateParent: true}
		cc, err := rpc.Dial(vc.worker.RPCAddr(), rpc.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		bw := api.NewBlockWorkerClient(cc)
		// Read back after the commit (the file then removed), and before
		// it, by a writer that can (the file never named).
		for _, name := range []string{"direct", "readback"} {
			d := &api.WriteUfsFileHeader{MountId: dest.MountId, UfsPath: "file://" + vc.badDir + "/" + name, CreateParent: true}
			_, err = bw.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: d, Sources: srcs, Checksum: true})
			if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "checksum mismatch") {
				t.Fatalf("WriteUfsFileFrom %s with checksum onto a corrupting UFS: %v, want DataLoss", name, err)
			}
			if left := ufsFiles(t, vc.badDir); len(left) != 0 {
				t.Fatalf("the corrupt file %s was kept: %v", name, left)
			}
		}
		// A small file checked without a hash (no_sha256: its bytes kept
		// and compared with the copy read back) is caught the same way.
		small, err := vc.client.Stat(ctx, "/d/small")
		if err != nil {
			t.Fatal(err)
		}
		ssrc := []*api.BlockSource{{BlockId: small.GetBlockIds()[0], Length: small.GetLength()}}
		for _, noSum := range []bool{true, false} {
			d := &api.WriteUfsFileHeader{MountId: dest.MountId, UfsPath: "file://" + vc.badDir + "/readback-small", CreateParent: true}
			_, err = bw.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: d, Sources: ssrc, Checksum: true, NoSha256: noSum})
			if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "at byte 500") {
				t.Fatalf("WriteUfsFileFrom of a small file (no_sha256 %v) onto a corrupting UFS: %v, want DataLoss at byte 500", noSum, err)
			}
			if left := ufsFiles(t, vc.badDir); len(left) != 0 {
				t.Fatalf("the corrupt small file was kept: %v", left)
			}
		}
		// The same write unverified "succeeds": the corruption is real.
		before := vc.flipper.flips.Load()
		if _, err := bw.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest, Sources: srcs}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(vc.badDir, "direct"))
		if err != nil || bytes.Equal(got, files["d/multi"]) || vc.flipper.flips.Load() != before+1 {
			t.Fatalf("unverified write: %v, equal %v: the UFS did not corrupt it", err, bytes.Equal(got, files["d/multi"]))
		}
		if err := os.Remove(filepath.Join(vc.badDir, "direct")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("copy --checksum fails every file and leaves nothing", func(t *testing.T) {
		j := vc.run(t, "copy", spec.CopyConfig{Src: "/d", Dst: "/bad/c", Checksum: true})
		if j.GetStatus() != api.JobInfo_FAILED || len(j.GetFailed()) != len(files) {
			t.Fatalf("copy --checksum: %v, %d failed paths, want FAILED with all %d", j.GetStatus(), len(j.GetFailed()), len(files))
		}
		for _, f := range j.GetFailed() {
			if !strings.Contains(f.GetError(), "checksum mismatch") {
				t.Errorf("%s: %s, want a checksum mismatch", f.GetPath(), f.GetError())
			}
		}
		if left := ufsFiles(t, vc.badDir); len(left) != 0 {
			t.Errorf("files left in the corrupting UFS: %v", left)
		}
		for rel := range files {
			if fi, err := vc.client.Stat(ctx, "/bad/c/"+rel); err == nil && fi.GetCompleted() {
				t.Errorf("/bad/c/%s is a complete file after a failed verified copy", rel)
			}
		}
	})

	t.Run("cross-mount move keeps its source", func(t *testing.T) {
		j := vc.run(t, "move", spec.MoveConfig{Src: "/d", Dst: "/bad/m"})
		if j.GetStatus() != api.JobInfo_FAILED || len(j.GetFailed()) != len(files) {
			t.Fatalf("move: %v, %d failed paths, want FAILED with all %d", j.GetStatus(), len(j.GetFailed()), len(files))
		}
		for rel, want := range files {
			if got, err := os.ReadFile(filepath.Join(vc.srcDir, rel)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("UFS source %s after the failed move: %v (equal %v)", rel, err, bytes.Equal(got, want))
			}
			r, err := vc.client.Open(ctx, "/"+rel, sdk.OpenOptions{})
			if err != nil {
				t.Errorf("source /%s gone from the namespace: %v", rel, err)
				continue
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("read /%s after the failed move: %v (equal %v)", rel, err, bytes.Equal(got, want))
			}
		}
		if left := ufsFiles(t, vc.badDir); len(left) != 0 {
			t.Errorf("files left in the corrupting UFS: %v", left)
		}
	})
}

func mountID(t *testing.T, vc *verifyCluster, p string) int64 {
	t.Helper()
	ms, err := vc.client.Mounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.GetAlluviumPath() == p {
			return m.GetMountId()
		}
	}
	t.Fatalf("no mount at %s: %v", p, ms)
	return 0
}
