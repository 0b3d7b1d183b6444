package fsmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/plans/spec"
)

func ufsDirOf(t *testing.T, cfg *config.Config) string {
	t.Helper()
	d := strings.TrimPrefix(cfg.FSMaster.UFS, "file://")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// CreateFiles enters many complete files at once, each on its own, and
// they survive a restart.
func TestCreateFilesComplete(t *testing.T) {
	cfg := testConfig(t, map[string]any{"fsmaster.job-master": ""})
	ufsDir := ufsDirOf(t, cfg)
	tm := startMaster(t, cfg)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		writeTestFile(t, filepath.Join(ufsDir, "c", n), 1500)
	}
	mk := func(p string, overwrite bool) *api.CreateFileRequest {
		return &api.CreateFileRequest{Path: p, WriteType: api.WriteType_THROUGH, Recursive: true, Overwrite: overwrite,
			BlockSizeBytes: 1024, Complete: true, Length: 1500, UfsFingerprint: "fp"}
	}
	resp := must(tm.fs.CreateFiles(ctx, &api.CreateFilesRequest{Files: []*api.CreateFileRequest{
		mk("/c/a", true), mk("/c/b", true), mk("/c/a", false), mk("rel", true), {Path: "/c/x", Complete: true, Length: -1, UfsFingerprint: "f"},
	}}))
	want := []codes.Code{codes.OK, codes.OK, codes.AlreadyExists, codes.InvalidArgument, codes.InvalidArgument}
	for i, r := range resp.Results {
		if codes.Code(r.GetCode()) != want[i] {
			t.Errorf("file %d: %s %q, want %s", i, codes.Code(r.GetCode()), r.GetError(), want[i])
		}
	}
	check := func(tm *testMaster) {
		for _, p := range []string{"/c/a", "/c/b"} {
			fi := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: p})).Info
			if !fi.Completed || fi.Length != 1500 || fi.PersistenceState != api.PersistenceState_PERSISTED || len(fi.BlockIds) != 2 || fi.UfsFingerprint != "fp" {
				t.Fatalf("%s: %+v", p, fi)
			}
		}
	}
	check(tm)
	tm.stop(t)
	check(startMaster(t, cfg))
}

func writeTestFile(t *testing.T, p string, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
}

// createCacheOnly makes a complete file with no UFS copy.
func createCacheOnly(t *testing.T, tm *testMaster, p string, wt api.WriteType, n int64) *api.FileInfo {
	t.Helper()
	ctx := context.Background()
	fi := must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: p, WriteType: wt, Recursive: true, BlockSizeBytes: 1024})).Info
	return must(tm.fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: n, FileId: fi.FileId})).Info
}

// SetAttribute with persist_from renames the persisted copy into place and
// marks the file PERSISTED, guarded by the file id; when the guard fails
// the temporary copy goes and nothing changes.
func TestPersistCommitIsGuarded(t *testing.T) {
	cfg := testConfig(t, map[string]any{"fsmaster.job-master": ""})
	ufsDir := ufsDirOf(t, cfg)
	tm := startMaster(t, cfg)
	ctx := context.Background()
	st := api.PersistenceState_PERSISTED
	tmp := func(dir, name string, n int) string {
		writeTestFile(t, filepath.Join(ufsDir, dir, name), n)
		return "file://" + filepath.Join(ufsDir, dir, name)
	}

	a := createCacheOnly(t, tm, "/p/a", api.WriteType_MUST_CACHE, 700)
	from := tmp("p", ".alluvium-tmp-persist-1", 700)
	fi := must(tm.fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/p/a", FileId: a.FileId, PersistenceState: &st, PersistFrom: from})).Info
	if fi.PersistenceState != api.PersistenceState_PERSISTED || fi.UfsFingerprint == "" {
		t.Fatalf("after persist: %+v", fi)
	}
	if b, err := os.ReadFile(filepath.Join(ufsDir, "p", "a")); err != nil || len(b) != 700 {
		t.Fatalf("UFS copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ufsDir, "p", ".alluvium-tmp-persist-1")); !os.IsNotExist(err) {
		t.Fatal("the temporary copy is still there")
	}

	// Re-created: same path, another inode.
	b := createCacheOnly(t, tm, "/p/b", api.WriteType_MUST_CACHE, 10)
	must(tm.fs.Delete(ctx, &api.DeleteRequest{Path: "/p/b"}))
	createCacheOnly(t, tm, "/p/b", api.WriteType_MUST_CACHE, 10)
	from = tmp("p", ".alluvium-tmp-persist-2", 10)
	_, err := tm.fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/p/b", FileId: b.FileId, PersistenceState: &st, PersistFrom: from})
	wantCode(t, err, codes.FailedPrecondition, "persist of a re-created file")
	// Deleted.
	from = tmp("p", ".alluvium-tmp-persist-3", 10)
	_, err = tm.fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/p/gone", FileId: 99, PersistenceState: &st, PersistFrom: from})
	wantCode(t, err, codes.NotFound, "persist of a deleted file")
	// Wrong size.
	c := createCacheOnly(t, tm, "/p/c", api.WriteType_MUST_CACHE, 10)
	from = tmp("p", ".alluvium-tmp-persist-4", 11)
	_, err = tm.fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/p/c", FileId: c.FileId, PersistenceState: &st, PersistFrom: from})
	wantCode(t, err, codes.FailedPrecondition, "persist of the wrong bytes")
	for _, n := range []string{"b", "c", "gone"} {
		if _, err := os.Stat(filepath.Join(ufsDir, "p", n)); !os.IsNotExist(err) {
			t.Errorf("/p/%s has a UFS file after a refused persist", n)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(ufsDir, "p"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".alluvium-tmp") {
			t.Errorf("temporary copy %s left", e.Name())
		}
	}
	for _, p := range []string{"/p/b", "/p/c"} {
		if fi := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: p})).Info; fi.PersistenceState == api.PersistenceState_PERSISTED {
			t.Errorf("%s marked PERSISTED", p)
		}
	}
}

// fakeJobMaster takes persist jobs: the first fails, later ones persist
// their files (marking them PERSISTED in the FS master) and complete.
type fakeJobMaster struct {
	api.UnimplementedJobMasterServer
	fs     api.FileSystemMasterClient
	mu     sync.Mutex
	jobs   [][]spec.PersistFile
	status map[int64]api.JobInfo_Status
}

func (f *fakeJobMaster) SubmitJob(ctx context.Context, r *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	var c spec.PersistConfig
	if err := json.Unmarshal([]byte(r.GetConfigJson()), &c); err != nil || r.GetPlan() != "persist" {
		return nil, err
	}
	f.mu.Lock()
	f.jobs = append(f.jobs, c.Files)
	id := int64(len(f.jobs))
	f.mu.Unlock()
	st := api.JobInfo_FAILED
	if id > 1 {
		st = api.JobInfo_COMPLETED
		ps := api.PersistenceState_PERSISTED
		for _, file := range c.Files {
			if _, err := f.fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: file.Path, FileId: file.ID, PersistenceState: &ps}); err != nil {
				return nil, err
			}
		}
	}
	f.mu.Lock()
	f.status[id] = st
	f.mu.Unlock()
	return &api.SubmitJobResponse{JobId: id}, nil
}

func (f *fakeJobMaster) GetJob(_ context.Context, r *api.GetJobRequest) (*api.GetJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &api.GetJobResponse{Job: &api.JobInfo{Id: r.GetJobId(), Status: f.status[r.GetJobId()]}}, nil
}

// ASYNC_THROUGH files are handed to the job master in one batch after the
// delay, retried after a failed job, and the master being down at first
// only delays it; renamed files are followed to their new path.
func TestAsyncPersistHandsFilesToTheJobMaster(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The job master's port is held from the start (nothing else can take
	// it) but refuses every connection until the gate opens.
	g := &refusingListener{Listener: l}
	addr := l.Addr().String()
	cfg := testConfig(t, map[string]any{"fsmaster.job-master": addr, "fsmaster.persist.delay": "100ms", "fsmaster.persist.max-backoff": "300ms"})
	ufsDirOf(t, cfg)
	tm := startMaster(t, cfg)
	ctx := context.Background()
	cc, err := rpc.Dial(tm.RPCAddr(), rpc.ClientOptions{Token: cfg.Security.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	fake := &fakeJobMaster{fs: api.NewFileSystemMasterClient(cc), status: map[int64]api.JobInfo_Status{}}
	srv := rpc.NewServer(rpc.ServerOptions{Token: cfg.Security.Token})
	api.RegisterJobMasterServer(srv, fake)
	go func() { _ = srv.Serve(g) }()
	defer srv.Stop()

	a := createCacheOnly(t, tm, "/as/a", api.WriteType_ASYNC_THROUGH, 10)
	createCacheOnly(t, tm, "/as/b", api.WriteType_ASYNC_THROUGH, 20)
	createCacheOnly(t, tm, "/as/plain", api.WriteType_MUST_CACHE, 5)
	if a.PersistenceState != api.PersistenceState_TO_BE_PERSISTED {
		t.Fatalf("ASYNC_THROUGH file is %v", a.PersistenceState)
	}
	must(tm.fs.Rename(ctx, &api.RenameRequest{Src: "/as/b", Dst: "/as/b2"}))
	// The files fell due and the persister tried to hand them over while
	// the job master was down (twice: it retries).
	testutil.Eventually(t, 20*time.Second, func() error {
		if n := g.refused.Load(); n < 2 {
			return fmt.Errorf("%d submit attempts refused", n)
		}
		return nil
	})

	g.open.Store(true) // the job master is up

	deadline := time.Now().Add(20 * time.Second)
	for {
		fa := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/as/a"})).Info
		fb := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/as/b2"})).Info
		if fa.PersistenceState == api.PersistenceState_PERSISTED && fb.PersistenceState == api.PersistenceState_PERSISTED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not persisted: %v %v", fa.PersistenceState, fb.PersistenceState)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fake.mu.Lock()
	jobs := fake.jobs
	fake.mu.Unlock()
	if len(jobs) < 2 || len(jobs[0]) != 2 {
		t.Fatalf("jobs %v: want both files in the first (failed) job, then a retry", jobs)
	}
	for _, f := range jobs[0] {
		if f.Path == "/as/plain" || f.Path == "/as/b" {
			t.Fatalf("job files %v: want /as/a and /as/b2 only", jobs[0])
		}
	}
	// The last job's end is seen on a later tick.
	testutil.Eventually(t, 20*time.Second, func() error {
		if n := tm.persist.Load().pending(); n != 0 {
			return fmt.Errorf("%d files still queued", n)
		}
		return nil
	})
	if fp := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/as/plain"})).Info; fp.PersistenceState != api.PersistenceState_NOT_PERSISTED {
		t.Fatalf("MUST_CACHE file became %v", fp.PersistenceState)
	}
}

// refusingListener is a listener that refuses connections — accepts and closes each at
// once, as a port nothing serves would — until opened, counting them.
type refusingListener struct {
	net.Listener
	open    atomic.Bool
	refused atomic.Int64
}

func (g *refusingListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil || g.open.Load() {
			return c, err
		}
		g.refused.Add(1)
		c.Close()
	}
}
