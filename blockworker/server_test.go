package blockworker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/ufs"
)

// fakeMaster is an in-process stand-in for the FS master's worker-facing
// services: it records what workers report and queues commands.
type fakeMaster struct {
	api.UnimplementedBlockMasterServer
	api.UnimplementedFileSystemMasterServer

	mu         sync.Mutex
	registers  int
	lastReport []*api.BlockReport
	addr       *api.WorkerNetAddress
	locs       map[int64]string // block → tier, as the master would see it
	commits    []int64
	heartbeats int
	commands   []*api.WorkerCommand
	mounts     []*api.MountPointInfo
	unknown    bool // answer heartbeats with REGISTER
	mountCalls int
	// CommitBlocks calls (transfer_test.go).
	batchCommits int
}

func (m *fakeMaster) RegisterWorker(_ context.Context, req *api.RegisterWorkerRequest) (*api.RegisterWorkerResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.registers++
	m.lastReport = req.GetBlocks()
	m.addr = req.GetAddress()
	m.locs = map[int64]string{}
	for _, b := range req.GetBlocks() {
		m.locs[b.GetBlockId()] = b.GetTier()
	}
	m.unknown = false
	return &api.RegisterWorkerResponse{WorkerId: 7, HeartbeatIntervalMs: 50}, nil
}

func (m *fakeMaster) WorkerHeartbeat(_ context.Context, req *api.WorkerHeartbeatRequest) (*api.WorkerHeartbeatResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heartbeats++
	if m.unknown {
		return &api.WorkerHeartbeatResponse{Commands: []*api.WorkerCommand{{Type: api.WorkerCommand_REGISTER}}}, nil
	}
	for _, id := range req.GetRemovedBlockIds() {
		delete(m.locs, id)
	}
	for _, b := range req.GetAddedBlocks() {
		m.locs[b.GetBlockId()] = b.GetTier()
	}
	cmds := m.commands
	m.commands = nil
	return &api.WorkerHeartbeatResponse{Commands: cmds}, nil
}

func (m *fakeMaster) CommitBlock(_ context.Context, req *api.CommitBlockRequest) (*api.CommitBlockResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if req.GetWorkerId() != 7 {
		return nil, status.Errorf(codes.NotFound, "worker %d unknown", req.GetWorkerId())
	}
	m.commits = append(m.commits, req.GetBlockId())
	m.locs[req.GetBlockId()] = req.GetTier()
	return &api.CommitBlockResponse{}, nil
}

func (m *fakeMaster) GetMountTable(context.Context, *api.GetMountTableRequest) (*api.GetMountTableResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mountCalls++
	return &api.GetMountTableResponse{Mounts: m.mounts}, nil
}

func (m *fakeMaster) has(id int64) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.locs[id]
	return t, ok
}

func startFakeMaster(t *testing.T) (*fakeMaster, string) {
	t.Helper()
	m := &fakeMaster{locs: map[int64]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerOptions{})
	api.RegisterBlockMasterServer(srv, m)
	api.RegisterFileSystemMasterServer(srv, m)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return m, l.Addr().String()
}

type testWorker struct {
	*Worker
	client api.BlockWorkerClient
	home   string
}

func workerConfig(t *testing.T, home, master string, tiers []config.TierConfig) *config.Config {
	t.Helper()
	l := config.NewLoader()
	l.Set("home", home)
	l.Set("worker.master", master)
	l.Set("worker.rpc-port", 0)
	l.Set("worker.http-port", 0)
	l.Set("worker.role", "block")
	l.Set("worker.lease-timeout", "2s")
	var ts []map[string]any
	for _, tc := range tiers {
		ts = append(ts, map[string]any{"alias": tc.Alias, "path": tc.Path, "quota": tc.Quota})
	}
	l.Set("worker.tiers", ts)
	cfg, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startWorker(t *testing.T, home, master string, tiers ...config.TierConfig) *testWorker {
	t.Helper()
	if len(tiers) == 0 {
		tiers = []config.TierConfig{
			{Alias: "MEM", Path: filepath.Join(home, "mem"), Quota: "8MiB"},
			{Alias: "HDD", Path: filepath.Join(home, "hdd"), Quota: "32MiB"},
		}
	}
	w, err := New(workerConfig(t, home, master, tiers), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	cc, err := rpc.Dial(w.RPCAddr(), rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &testWorker{Worker: w, client: api.NewBlockWorkerClient(cc), home: home}
}

func (tw *testWorker) write(t *testing.T, id int64, data []byte, pinned bool) *api.WriteBlockResponse {
	t.Helper()
	resp, err := tw.tryWrite(id, data, pinned)
	if err != nil {
		t.Fatalf("write block %d: %v", id, err)
	}
	return resp
}

func (tw *testWorker) tryWrite(id int64, data []byte, pinned bool) (*api.WriteBlockResponse, error) {
	st, err := tw.client.WriteBlock(context.Background())
	if err != nil {
		return nil, err
	}
	if err := st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Header{Header: &api.WriteBlockHeader{BlockId: id, LengthHint: int64(len(data)), Pinned: pinned}}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(data); off += 256 << 10 {
		if err := st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Chunk{Chunk: data[off:min(off+256<<10, len(data))]}}); err != nil {
			break // the error comes with CloseAndRecv
		}
	}
	return st.CloseAndRecv()
}

func (tw *testWorker) read(ctx context.Context, req *api.ReadBlockRequest) ([]byte, error) {
	return testutil.ReadBlock(ctx, tw.client, req)
}

func TestWorkerRegistersAndCommits(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	if w.ID() != 7 {
		t.Fatalf("worker id %d after Start, want 7 (registered)", w.ID())
	}
	m.mu.Lock()
	if m.addr.GetRpcPort() == 0 || m.addr.GetHost() != "localhost" || m.addr.GetWebPort() == 0 {
		t.Errorf("registered address %+v", m.addr)
	}
	m.mu.Unlock()
	data := randBytes(3*mib + 5)
	resp := w.write(t, 100, data, false)
	if resp.GetLength() != int64(len(data)) || resp.GetTier() != "HDD" && resp.GetTier() != "MEM" {
		t.Errorf("write response %+v", resp)
	}
	// CommitBlock ran before WriteBlock returned.
	if tier, ok := m.has(100); !ok || tier != resp.GetTier() {
		t.Errorf("master does not know block 100 right after the write (%q, %v)", tier, ok)
	}
	got, err := w.read(context.Background(), &api.ReadBlockRequest{BlockId: 100, Length: -1})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (%d bytes)", err, len(got))
	}
	got, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 100, Offset: mib + 3, Length: 1000, ChunkSize: 100})
	if err != nil || !bytes.Equal(got, data[mib+3:mib+1003]) {
		t.Errorf("ranged read: %v", err)
	}
	_, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 100, Offset: int64(len(data)), Length: 1})
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("read past the end: %v, want OutOfRange", err)
	}
	_, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 555, Length: -1})
	if status.Code(err) != codes.NotFound {
		t.Errorf("read of an unknown block: %v, want NotFound", err)
	}
	if _, err := w.tryWrite(100, data, false); status.Code(err) != codes.AlreadyExists {
		t.Errorf("rewrite of block 100: %v, want AlreadyExists", err)
	}

	// Remove is reported on the next heartbeat.
	if _, err := w.client.RemoveBlock(context.Background(), &api.RemoveBlockRequest{BlockId: 100}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, ok := m.has(100); ok {
			return errors.New("master still lists block 100")
		}
		return nil
	})

	// REMOVE_BLOCKS from the master.
	w.write(t, 101, randBytes(1000), false)
	m.mu.Lock()
	m.commands = append(m.commands, &api.WorkerCommand{Type: api.WorkerCommand_REMOVE_BLOCKS, BlockIds: []int64{101, 999}})
	m.mu.Unlock()
	testutil.Eventually(t, 30*time.Second, func() error {
		if w.Store().Has(101) {
			return errors.New("block 101 still cached")
		}
		return nil
	})

	// REGISTER: the worker sends a full report again.
	w.write(t, 102, randBytes(1000), false)
	m.mu.Lock()
	regs := m.registers
	m.unknown = true
	m.mu.Unlock()
	testutil.Eventually(t, 30*time.Second, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.registers == regs {
			return errors.New("no re-registration")
		}
		for _, b := range m.lastReport {
			if b.GetBlockId() == 102 {
				return nil
			}
		}
		return fmt.Errorf("full report lacks block 102: %v", m.lastReport)
	})

	// GetWorkerStatus, /healthz, /metrics.
	st, err := w.client.GetWorkerStatus(context.Background(), &api.GetWorkerStatusRequest{})
	if err != nil || st.GetWorkerId() != 7 || st.GetBlockCount() != 1 || len(st.GetTiers()) != 2 {
		t.Errorf("status %+v, %v", st, err)
	}
	// The same service over the worker's unix socket.
	if st.GetDomainSocket() == "" {
		t.Errorf("no domain socket in the status")
	} else {
		uc, err := rpc.Dial("unix:"+st.GetDomainSocket(), rpc.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		got, err := (&testWorker{client: api.NewBlockWorkerClient(uc)}).read(context.Background(), &api.ReadBlockRequest{BlockId: 102, Length: -1})
		if err != nil || len(got) != 1000 {
			t.Errorf("read over the unix socket: %d bytes, %v", len(got), err)
		}
	}
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "alluvium_worker_bytes_written_total"} {
		resp, err := http.Get("http://" + w.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
}

func TestWorkerRestartReReports(t *testing.T) {
	m, addr := startFakeMaster(t)
	home := t.TempDir()
	w := startWorker(t, home, addr)
	data := map[int64][]byte{}
	for id := int64(200); id < 205; id++ {
		data[id] = randBytes(int(id-199) * 100000)
		w.write(t, id, data[id], id == 201)
	}
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A temp file left by a crash mid-write.
	stale := filepath.Join(home, "hdd", tmpDir, "777-abc")
	if err := os.WriteFile(stale, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	regs := m.registers
	m.mu.Unlock()
	w2 := startWorker(t, home, addr)
	m.mu.Lock()
	if m.registers != regs+1 || len(m.lastReport) != 5 {
		t.Errorf("after restart: %d registrations, report of %d blocks; want one more and 5", m.registers-regs, len(m.lastReport))
	}
	m.mu.Unlock()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file kept: %v", err)
	}
	for id, want := range data {
		got, err := w2.read(context.Background(), &api.ReadBlockRequest{BlockId: id, Length: -1})
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("block %d after restart: %v", id, err)
		}
	}
}

// countingFS counts Opens, to prove concurrent caching reads the UFS once.
type countingFS struct {
	ufs.FileSystem
	opens atomic.Int64
	delay time.Duration
}

func (c *countingFS) Open(ctx context.Context, p string, off, n int64) (io.ReadCloser, error) {
	c.opens.Add(1)
	rc, err := c.FileSystem.Open(ctx, p, off, n)
	if err != nil {
		return nil, err
	}
	return slowReader{rc, c.delay}, nil
}

type slowReader struct {
	io.ReadCloser
	d time.Duration
}

func (s slowReader) Read(b []byte) (int, error) {
	time.Sleep(s.d)
	return s.ReadCloser.Read(b)
}

func setupUFS(t *testing.T, m *fakeMaster, w *testWorker, delay time.Duration) (string, *countingFS) {
	t.Helper()
	dir := t.TempDir()
	root := "file://" + dir
	m.mu.Lock()
	m.mounts = []*api.MountPointInfo{{AlluviumPath: "/", UfsUri: root, MountId: 1}}
	m.mu.Unlock()
	local, err := ufs.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfs := &countingFS{FileSystem: local, delay: delay}
	w.mounts.open = func(context.Context, string, map[string]string) (ufs.FileSystem, error) { return cfs, nil }
	return dir, cfs
}

func TestReadThroughAndCache(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, cfs := setupUFS(t, m, w, 0)
	data := randBytes(5*mib + 77)
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	uri := "file://" + dir + "/f"
	src := func(i int64) *api.UfsBlockSource {
		off := i * 2 * mib
		return &api.UfsBlockSource{MountId: 1, UfsPath: uri, Offset: off, Length: min(2*mib, int64(len(data))-off)}
	}
	// NO_CACHE streams without caching.
	got, err := w.read(context.Background(), &api.ReadBlockRequest{BlockId: 1000, Offset: 10, Length: 100, Ufs: src(0), ReadType: api.ReadType_NO_CACHE})
	if err != nil || !bytes.Equal(got, data[10:110]) {
		t.Fatalf("NO_CACHE read: %v", err)
	}
	if w.Store().Has(1000) {
		t.Errorf("NO_CACHE cached the block")
	}
	// CACHE reads a range and caches the whole block.
	got, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 1001, Offset: 5, Length: 1000, Ufs: src(1)})
	if err != nil || !bytes.Equal(got, data[2*mib+5:2*mib+1005]) {
		t.Fatalf("CACHE read: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, ok := m.has(1001); !ok {
			return errors.New("master does not know the cached block")
		}
		return nil
	})
	meta, ok := w.Store().Stat(1001)
	if !ok || meta.Length != 2*mib {
		t.Fatalf("cached block %+v, %v", meta, ok)
	}
	// Now a hit: no UFS open.
	opens := cfs.opens.Load()
	got, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 1001, Length: -1})
	if err != nil || !bytes.Equal(got, data[2*mib:4*mib]) || cfs.opens.Load() != opens {
		t.Errorf("hit read: %v, opens %d→%d", err, opens, cfs.opens.Load())
	}
	// The last, short block.
	got, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 1002, Length: -1, Ufs: src(2)})
	if err != nil || !bytes.Equal(got, data[4*mib:]) {
		t.Errorf("last block: %v", err)
	}
	// A changed fingerprint is refused.
	s := src(0)
	s.UfsFingerprint = "not-the-fingerprint"
	_, err = w.read(context.Background(), &api.ReadBlockRequest{BlockId: 1003, Length: -1, Ufs: s})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "changed") {
		t.Errorf("stale fingerprint: %v", err)
	}
	if w.Store().Has(1003) {
		t.Errorf("a block of a changed file was cached")
	}
	// A source longer than the file: the UFS gives fewer bytes.
	bad := &api.UfsBlockSource{MountId: 1, UfsPath: uri, Offset: 4 * mib, Length: 2 * mib}
	_, err = w.client.CacheBlock(context.Background(), &api.CacheBlockRequest{BlockId: 1004, Source: bad})
	if err == nil || w.Store().Has(1004) {
		t.Errorf("caching a block past the file's end: %v", err)
	}
	// Unknown mount id: the table is refreshed, then NotFound.
	_, err = w.client.CacheBlock(context.Background(), &api.CacheBlockRequest{BlockId: 1005, Source: &api.UfsBlockSource{MountId: 42, UfsPath: uri, Length: 10}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "mount id 42") {
		t.Errorf("unknown mount: %v", err)
	}
}

func TestConcurrentCacheBlockCachesOnce(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, cfs := setupUFS(t, m, w, 20*time.Millisecond)
	data := randBytes(4 * mib)
	if err := os.WriteFile(filepath.Join(dir, "g"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	src := &api.UfsBlockSource{MountId: 1, UfsPath: "file://" + dir + "/g", Offset: 0, Length: 4 * mib}
	var wg sync.WaitGroup
	var cachedBytes, already atomic.Int64
	errc := make(chan error, 10)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				resp, err := w.client.CacheBlock(context.Background(), &api.CacheBlockRequest{BlockId: 3000, Source: src})
				if err != nil {
					errc <- err
					return
				}
				cachedBytes.Add(resp.GetBytes())
				if resp.GetAlreadyCached() {
					already.Add(1)
				}
				return
			}
			got, err := w.read(context.Background(), &api.ReadBlockRequest{BlockId: 3000, Length: -1, Ufs: src})
			if err != nil {
				errc <- err
			} else if !bytes.Equal(got, data) {
				errc <- errors.New("reader joining a fill got wrong bytes")
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := cfs.opens.Load(); n != 1 {
		t.Errorf("the UFS was opened %d times for one block, want 1", n)
	}
	if !w.Store().Has(3000) {
		t.Errorf("block not cached")
	}
	// A second CacheBlock is a no-op success.
	resp, err := w.client.CacheBlock(context.Background(), &api.CacheBlockRequest{BlockId: 3000, Source: src})
	if err != nil || !resp.GetAlreadyCached() || resp.GetBytes() != 0 {
		t.Errorf("CacheBlock of a cached block: %+v, %v", resp, err)
	}
}

func TestWriteUfsFile(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, _ := setupUFS(t, m, w, 0)
	put := func(path string, data []byte, overwrite, abort bool) (*api.WriteUfsFileResponse, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st, err := w.client.WriteUfsFile(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Header{Header: &api.WriteUfsFileHeader{
			MountId: 1, UfsPath: "file://" + dir + path, Overwrite: overwrite, CreateParent: true}}}); err != nil {
			return nil, err
		}
		for off := 0; off < len(data); off += mib {
			_ = st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Chunk{Chunk: data[off:min(off+mib, len(data))]}})
		}
		if abort {
			cancel()
			_, err := st.CloseAndRecv()
			return nil, err
		}
		return st.CloseAndRecv()
	}
	data := randBytes(3*mib + 1)
	resp, err := put("/a/b/file", data, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetLength() != int64(len(data)) || resp.GetUfsFingerprint() == "" {
		t.Errorf("response %+v", resp)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "a/b/file")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("UFS file: %v", err)
	}
	if _, err := put("/a/b/file", data, false, false); status.Code(err) != codes.AlreadyExists {
		t.Errorf("write over an existing UFS file: %v, want AlreadyExists", err)
	}
	// A canceled stream leaves nothing behind.
	if _, err := put("/a/b/aborted", randBytes(2*mib), false, true); err == nil {
		t.Errorf("aborted stream succeeded")
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		ents, _ := os.ReadDir(filepath.Join(dir, "a/b"))
		if len(ents) != 1 {
			return fmt.Errorf("UFS dir holds %d entries after an aborted write", len(ents))
		}
		return nil
	})
}

func TestShortCircuitLease(t *testing.T) {
	_, addr := startFakeMaster(t)
	home := t.TempDir()
	w := startWorker(t, home, addr, config.TierConfig{Alias: "MEM", Path: filepath.Join(home, "mem"), Quota: "2MiB"})
	data := randBytes(mib)
	w.write(t, 1, data, false)
	lease, err := w.client.OpenLocalBlock(context.Background(), &api.OpenLocalBlockRequest{BlockId: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Two more blocks want the room: 2 is evicted for 3, the leased 1 stays.
	w.write(t, 2, randBytes(mib), false)
	w.write(t, 3, randBytes(mib), false)
	if !w.Store().Has(1) || w.Store().Has(2) {
		t.Fatalf("eviction took the leased block (has1=%v has2=%v)", w.Store().Has(1), w.Store().Has(2))
	}
	got, err := os.ReadFile(lease.GetPath())
	if err != nil || !bytes.Equal(got, data) || lease.GetLength() != mib {
		t.Errorf("short-circuit read: %v", err)
	}
	// With both blocks leased nothing can go.
	lease3, err := w.client.OpenLocalBlock(context.Background(), &api.OpenLocalBlockRequest{BlockId: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.tryWrite(4, randBytes(mib), false); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("write with the tier full of leased blocks: %v, want ResourceExhausted", err)
	}
	if _, err := w.client.CloseLocalBlock(context.Background(), &api.CloseLocalBlockRequest{LeaseId: lease.GetLeaseId()}); err != nil {
		t.Fatal(err)
	}
	w.write(t, 4, randBytes(mib), false)
	if w.Store().Has(1) || !w.Store().Has(3) {
		t.Errorf("after closing lease 1: has1=%v has3=%v, want 1 evicted, 3 kept", w.Store().Has(1), w.Store().Has(3))
	}
	// Block 3's lease is abandoned: it expires (lease-timeout 2s in the
	// test config) and the block becomes evictable.
	_ = lease3
	if _, err := w.client.OpenLocalBlock(context.Background(), &api.OpenLocalBlockRequest{BlockId: 4}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := w.tryWrite(5, randBytes(mib), false)
		return err
	})
	if time.Since(start) < time.Second {
		t.Errorf("a leased block was evicted before its lease expired")
	}
	if _, err := w.client.OpenLocalBlock(context.Background(), &api.OpenLocalBlockRequest{BlockId: 999}); status.Code(err) != codes.NotFound {
		t.Errorf("lease of an unknown block: %v", err)
	}
}

// Two readers and a writer at once through the gRPC service (run -race).
func TestTwoReadersAndAWriter(t *testing.T) {
	_, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	base := randBytes(2 * mib)
	w.write(t, 1, base, true)
	// A guard against a hang, not a speed limit: under -race on a loaded
	// two-core machine the 140 MB this moves took over 30 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 10)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				got, err := w.read(ctx, &api.ReadBlockRequest{BlockId: 1, Length: -1})
				if err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(got, base) {
					errc <- errors.New("reader got wrong bytes")
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := int64(10); id < 40; id++ {
			d := randBytes(mib + int(id))
			if _, err := w.tryWrite(id, d, false); err != nil {
				errc <- err
				return
			}
			got, err := w.read(ctx, &api.ReadBlockRequest{BlockId: id, Length: -1})
			if err != nil || !bytes.Equal(got, d) {
				errc <- fmt.Errorf("writer read back block %d: %v", id, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

var _ grpc.ServiceRegistrar = (*grpc.Server)(nil)

// TestReportInChunks: a worker holding more blocks than one message may
// carry registers with the first chunk and reports the rest in the
// heartbeats that follow at once, until the master knows every block.
func TestReportInChunks(t *testing.T) {
	m, addr := startFakeMaster(t)
	s := openStore(t, TierSpec{Alias: "MEM", Dir: t.TempDir(), Quota: 64 * mib})
	for id := int64(1); id <= 25; id++ {
		putBlock(t, s, id, []byte{byte(id)}, "MEM", false)
	}
	cc, err := rpc.Dial(addr, rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	l := newMasterLink(api.NewBlockMasterClient(cc), s, zap.NewNop(), time.Hour, func() *api.WorkerNetAddress {
		return &api.WorkerNetAddress{Host: "h", RpcPort: 1}
	})
	l.onCmd = func(context.Context, []int64) {}
	l.reportChunk = 10
	ctx := context.Background()
	if err := l.register(ctx); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	first := len(m.lastReport)
	m.mu.Unlock()
	if first != 10 {
		t.Fatalf("registered with %d blocks, want the first chunk of 10", first)
	}
	for beats := 0; ; beats++ {
		select {
		case <-l.kick: // the link asks for the next heartbeat at once
		default:
			m.mu.Lock()
			n := len(m.locs)
			m.mu.Unlock()
			if n != 25 || beats != 2 {
				t.Fatalf("after %d heartbeats the master knows %d blocks; want 2 heartbeats, 25 blocks", beats, n)
			}
			return
		}
		if err := l.heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteBlockWithUFSRegion: a block written with a UFS region (a part
// of a multipart upload in place) lands in the store and at its offset of
// the UFS file from one stream, and the answer says how many bytes the
// region got; a region that is not in place is refused, and a refused or
// broken stream leaves no block.
func TestWriteBlockWithUFSRegion(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, _ := setupUFS(t, m, w, 0)
	// The local directory itself (setupUFS's counting wrapper hides its
	// RegionWriter).
	local, err := ufs.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.mounts.open = func(context.Context, string, map[string]string) (ufs.FileSystem, error) { return local, nil }
	write := func(id int64, data []byte, ufs *api.WriteUfsFileHeader) (*api.WriteBlockResponse, error) {
		st, err := w.client.WriteBlock(context.Background())
		if err != nil {
			return nil, err
		}
		if err := st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Header{Header: &api.WriteBlockHeader{
			BlockId: id, LengthHint: int64(len(data)), Ufs: ufs}}}); err != nil {
			return nil, err
		}
		for off := 0; off < len(data); off += mib {
			_ = st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Chunk{Chunk: data[off:min(off+mib, len(data))]}})
		}
		return st.CloseAndRecv()
	}
	region := func(off int64) *api.WriteUfsFileHeader {
		return &api.WriteUfsFileHeader{MountId: 1, UfsPath: "file://" + dir + "/up/obj", CreateParent: true, InPlace: true, Offset: off}
	}
	a, b := randBytes(2*mib), randBytes(mib+7)
	// The second region first: regions land at their offsets in any order.
	for _, c := range []struct {
		id   int64
		data []byte
		off  int64
	}{{11, b, 2 * mib}, {10, a, 0}} {
		resp, err := write(c.id, c.data, region(c.off))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetLength() != int64(len(c.data)) || resp.GetUfsLength() != int64(len(c.data)) {
			t.Fatalf("block %d: answer %+v, want %d bytes stored and written to the UFS", c.id, resp, len(c.data))
		}
		if !w.Store().Has(c.id) {
			t.Fatalf("block %d is not in the store", c.id)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "up/obj")); err != nil || !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
		t.Fatalf("the UFS file holds %d bytes (%v), want both regions", len(got), err)
	}
	// A whole file through a block's stream is not offered.
	nr := region(0)
	nr.InPlace = false
	if _, err := write(12, a, nr); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a block with a UFS copy not in place: %v, want InvalidArgument", err)
	}
	if w.Store().Has(12) {
		t.Fatal("a refused block was stored")
	}
	// A mount the worker does not know: refused, no block.
	bad := region(0)
	bad.MountId = 99
	bad.UfsPath = "file:///nonexistent/x"
	if _, err := write(13, a, bad); err == nil || w.Store().Has(13) {
		t.Fatalf("a block with a region of an unknown mount: %v (stored %v)", err, w.Store().Has(13))
	}
}
