package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
)

type testMaster struct {
	*Master
	fs     api.FileSystemMasterClient
	blocks api.BlockMasterClient
	logs   *observer.ObservedLogs
}

func startMaster(t *testing.T, cfg *config.Config) *testMaster {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	m, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cc, err := rpc.Dial(m.RPCAddr(), rpc.ClientOptions{Token: cfg.Security.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	return &testMaster{Master: m, fs: api.NewFileSystemMasterClient(cc), blocks: api.NewBlockMasterClient(cc), logs: logs}
}

func (tm *testMaster) stop(t *testing.T) {
	t.Helper()
	if err := tm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (tm *testMaster) logged(sub string) bool {
	for _, e := range tm.logs.All() {
		if strings.Contains(e.Message, sub) {
			return true
		}
	}
	return false
}

func TestMasterRestartKeepsState(t *testing.T) {
	cfg := testConfig(t, nil)
	tm := startMaster(t, cfg)
	ctx := context.Background()
	for i := range 30 {
		p := fmt.Sprintf("/d%d/f", i%4)
		fi := must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: p + fmt.Sprint(i), Recursive: true, WriteType: api.WriteType_MUST_CACHE}))
		must(tm.fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p + fmt.Sprint(i), Length: int64(i) * 1000, FileId: fi.Info.FileId}))
	}
	must(tm.fs.Rename(ctx, &api.RenameRequest{Src: "/d1", Dst: "/moved"}))
	must(tm.fs.Delete(ctx, &api.DeleteRequest{Path: "/d2", Recursive: true}))
	want := dump(tm.ns)
	tm.stop(t)
	tm2 := startMaster(t, cfg)
	if got := dump(tm2.ns); got != want {
		t.Fatalf("state after restart differs:\n%s", diff(want, got))
	}
	if tm2.logged("loaded checkpoint") {
		t.Fatal("loaded a checkpoint that was never written")
	}
	check(t, tm2.ns)
}

func TestCheckpointWithoutSecondary(t *testing.T) {
	cfg := testConfig(t, map[string]any{"fsmaster.journal.segment-entries": 10, "fsmaster.journal.checkpoints-retained": 1})
	tm := startMaster(t, cfg)
	ctx := context.Background()
	for i := range 25 {
		must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/dir%02d", i)}))
	}
	resp := must(tm.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	info := must(tm.fs.GetMasterInfo(ctx, &api.GetMasterInfoRequest{}))
	if resp.Sequence != info.JournalSequence || info.LastCheckpointSequence != resp.Sequence {
		t.Fatalf("checkpoint %v, info %v", resp, info)
	}
	// Every closed segment is covered by it and deleted.
	for _, s := range tm.j.Segments() {
		if s.Closed {
			t.Fatalf("covered segment %s still there", s.Path)
		}
	}
	must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/after"}))
	want := dump(tm.ns)
	tm.stop(t)
	tm2 := startMaster(t, cfg)
	if !tm2.logged(fmt.Sprintf("loaded checkpoint %s at sequence %d", resp.Path, resp.Sequence)) {
		t.Fatalf("restart did not log loading %s", resp.Path)
	}
	if got := dump(tm2.ns); got != want {
		t.Fatalf("state differs:\n%s", diff(want, got))
	}
}

// TestDamagedNewestCheckpointFallsBack: with two checkpoints retained, the
// segments after the older one stay, so a restart that finds the newest
// checkpoint damaged loads the older one, replays, and loses nothing.
func TestDamagedNewestCheckpointFallsBack(t *testing.T) {
	cfg := testConfig(t, map[string]any{"fsmaster.journal.segment-entries": 10})
	tm := startMaster(t, cfg)
	ctx := context.Background()
	for i := range 25 {
		must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/a%02d", i)}))
	}
	c1 := must(tm.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	closed := 0
	for _, s := range tm.j.Segments() {
		if s.Closed {
			closed++
		}
	}
	if closed == 0 {
		t.Fatal("segments deleted while only one checkpoint exists")
	}
	for i := range 25 {
		must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/b%02d", i)}))
	}
	c2 := must(tm.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	for _, s := range tm.j.Segments() {
		if s.Closed && s.Last <= c1.Sequence {
			t.Fatalf("segment %s covered by both checkpoints (%d, %d) not deleted", s.Path, c1.Sequence, c2.Sequence)
		}
	}
	must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/after"}))
	want := dump(tm.ns)
	tm.stop(t)
	b, err := os.ReadFile(c2.Path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i < len(b); i += 4096 {
		b[i+64] ^= 0xff
	}
	if err := os.WriteFile(c2.Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tm2 := startMaster(t, cfg)
	if !tm2.logged(fmt.Sprintf("loaded checkpoint %s at sequence %d", c1.Path, c1.Sequence)) {
		t.Fatalf("restart did not fall back to %s", c1.Path)
	}
	if got := dump(tm2.ns); got != want {
		t.Fatalf("state differs:\n%s", diff(want, got))
	}
}

func TestSecondaryWritesCheckpoints(t *testing.T) {
	cfg := testConfig(t, map[string]any{
		"fsmaster.journal.segment-entries":           20,
		"fsmaster.journal.checkpoint-period-entries": 50,
		"fsmaster.journal.checkpoints-retained":      1,
	})
	tm := startMaster(t, cfg)
	sec, err := NewSecondary(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sec.Stop(context.Background())
	if !secondaryAlive(cfg.FSMaster.Journal.Dir) {
		t.Fatal("secondary lock not seen")
	}
	// A second secondary on the same dir is refused.
	if err := must(NewSecondary(cfg, nil)).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "another secondary") {
		t.Fatalf("second secondary: %v", err)
	}
	ctx := context.Background()
	for i := range 120 {
		must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/s%03d", i)}))
	}
	// The secondary checkpoints after the period; the master notices and
	// deletes the segments it covers.
	deadline := time.Now().Add(10 * time.Second)
	for tm.lastCkptSeq.Load() < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint: secondary at %d, last checkpoint %d", sec.Sequence(), sec.LastCheckpoint())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ckpt := tm.lastCkptSeq.Load()
	for _, s := range tm.j.Segments() {
		if s.Closed && s.Last <= ckpt {
			t.Fatalf("segment %s covered by checkpoint %d not deleted", s.Path, ckpt)
		}
	}
	// On demand: the master asks the secondary and gets a checkpoint covering
	// everything so far.
	resp := must(tm.fs.Checkpoint(ctx, &api.CheckpointRequest{}))
	if resp.Sequence < tm.j.LastSequence() {
		t.Fatalf("checkpoint at %d, journal at %d", resp.Sequence, tm.j.LastSequence())
	}
	if _, err := os.Stat(filepath.Join(cfg.FSMaster.Journal.Dir, requestName)); !os.IsNotExist(err) {
		t.Fatalf("request file left behind: %v", err)
	}
	if tm.logged("wrote checkpoint") {
		t.Fatal("the master wrote the checkpoint although a secondary is alive")
	}
	want := dump(tm.ns)
	tm.stop(t)
	tm2 := startMaster(t, cfg)
	if !tm2.logged(fmt.Sprintf("at sequence %d", resp.Sequence)) {
		t.Fatal("restart did not load the newest checkpoint")
	}
	if got := dump(tm2.ns); got != want {
		t.Fatalf("state differs:\n%s", diff(want, got))
	}
}

func TestBlockMasterWithFakeWorker(t *testing.T) {
	cfg := testConfig(t, map[string]any{"fsmaster.worker.timeout": "400ms", "fsmaster.user.block-size": 1000})
	tm := startMaster(t, cfg)
	ctx := context.Background()
	fi := must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: "/f", WriteType: api.WriteType_MUST_CACHE})).Info
	must(tm.fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: "/f", Length: 2500}))
	b0, b1, b2 := api.BlockID(fi.FileId, 0), api.BlockID(fi.FileId, 1), api.BlockID(fi.FileId, 2)
	orphan := api.BlockID(9999, 0)
	addr := &api.WorkerNetAddress{Host: "127.0.0.1", RpcPort: 4242, WebPort: 4243}
	reg := must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{
		Address: addr,
		Tiers:   []*api.TierUsage{{Alias: "MEM", CapacityBytes: 1 << 20, UsedBytes: 1000}, {Alias: "HDD", CapacityBytes: 1 << 30, UsedBytes: 500}},
		// A MUST_CACHE file's blocks are pinned (the only copy of its bytes).
		Blocks: []*api.BlockReport{{BlockId: b0, Length: 1000, Tier: "MEM", Pinned: true}, {BlockId: orphan, Length: 5, Tier: "HDD"}, {BlockId: api.BlockID(fi.FileId, 7), Length: 1, Tier: "HDD"}},
	}))
	id := reg.WorkerId
	if id <= 0 || reg.HeartbeatIntervalMs <= 0 {
		t.Fatalf("register: %v", reg)
	}
	hb := func(req *api.WorkerHeartbeatRequest) []*api.WorkerCommand {
		req.WorkerId = id
		return must(tm.blocks.WorkerHeartbeat(ctx, req)).Commands
	}
	// Blocks of no file (or beyond the file's end) are to be removed.
	cmds := hb(&api.WorkerHeartbeatRequest{})
	if len(cmds) != 1 || cmds[0].Type != api.WorkerCommand_REMOVE_BLOCKS || !slices.Equal(cmds[0].BlockIds, []int64{api.BlockID(fi.FileId, 7), orphan}) {
		t.Fatalf("commands %v", cmds)
	}
	if cmds := hb(&api.WorkerHeartbeatRequest{}); len(cmds) != 0 {
		t.Fatalf("removal sent twice: %v", cmds)
	}
	// A committed block and a heartbeat-added block show up as locations.
	must(tm.blocks.CommitBlock(ctx, &api.CommitBlockRequest{WorkerId: id, BlockId: b1, Length: 1000, Tier: "HDD", Pinned: true}))
	hb(&api.WorkerHeartbeatRequest{AddedBlocks: []*api.BlockReport{{BlockId: b2, Length: 500, Tier: "HDD", Pinned: true}}})
	st := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/f"})).Info
	if st.CachedPercent != 100 || st.InMemoryPercent != 40 {
		t.Fatalf("cached %d%% mem %d%%", st.CachedPercent, st.InMemoryPercent)
	}
	loc := st.FileBlockInfos[0].BlockInfo.Locations
	if len(loc) != 1 || loc[0].WorkerId != id || loc[0].Tier != "MEM" || loc[0].Address.RpcPort != 4242 {
		t.Fatalf("locations %v", loc)
	}
	bi := must(tm.blocks.GetBlockInfo(ctx, &api.GetBlockInfoRequest{BlockId: b2})).Info
	if bi.Length != 500 || len(bi.Locations) != 1 {
		t.Fatalf("block info %v", bi)
	}
	_, err := tm.blocks.CommitBlock(ctx, &api.CommitBlockRequest{WorkerId: id, BlockId: orphan, Length: 1})
	wantCode(t, err, codes.NotFound, "commit orphan block")
	_, err = tm.blocks.CommitBlock(ctx, &api.CommitBlockRequest{WorkerId: 777, BlockId: b0, Length: 1})
	wantCode(t, err, codes.FailedPrecondition, "commit from unknown worker")
	// The worker report sums into the master's capacity.
	info := must(tm.fs.GetMasterInfo(ctx, &api.GetMasterInfoRequest{}))
	if info.LiveWorkers != 1 || len(info.Capacity) != 2 || info.Capacity[0].Alias != "MEM" || info.Capacity[0].UsedBytes != 1000 {
		t.Fatalf("info %v", info)
	}
	// Removing a removed block: the location goes.
	hb(&api.WorkerHeartbeatRequest{RemovedBlockIds: []int64{b2}})
	if st := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/f"})).Info; st.CachedPercent != 80 {
		t.Fatalf("after removal cached %d%%", st.CachedPercent)
	}
	// Deleting the file tells the worker to drop its blocks.
	must(tm.fs.Delete(ctx, &api.DeleteRequest{Path: "/f", AlluviumOnly: true}))
	cmds = hb(&api.WorkerHeartbeatRequest{})
	if len(cmds) != 1 || !slices.Equal(cmds[0].BlockIds, []int64{b0, b1}) {
		t.Fatalf("after delete: %v", cmds)
	}
	// Unknown worker ids are told to register.
	cmds = must(tm.blocks.WorkerHeartbeat(ctx, &api.WorkerHeartbeatRequest{WorkerId: 12345})).Commands
	if len(cmds) != 1 || cmds[0].Type != api.WorkerCommand_REGISTER {
		t.Fatalf("unknown worker: %v", cmds)
	}
	// Silence makes the worker LOST; then it must register again.
	fi2 := must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: "/g", WriteType: api.WriteType_MUST_CACHE})).Info
	hb(&api.WorkerHeartbeatRequest{AddedBlocks: []*api.BlockReport{{BlockId: api.BlockID(fi2.FileId, 0), Length: 10, Tier: "HDD"}}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws := must(tm.blocks.GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})).Workers
		if len(ws) == 1 && ws[0].State == api.WorkerState_LOST {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not LOST: %v", ws)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/g"})).Info; len(g.BlockIds) != 0 {
		t.Fatalf("lost worker's blocks still listed: %v", g.BlockIds)
	}
	if cmds := hb(&api.WorkerHeartbeatRequest{}); len(cmds) != 1 || cmds[0].Type != api.WorkerCommand_REGISTER {
		t.Fatalf("lost worker heartbeat: %v", cmds)
	}
	// Worker ids are stable across master restarts.
	tm.stop(t)
	tm2 := startMaster(t, cfg)
	reg2 := must(tm2.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: addr}))
	if reg2.WorkerId != id {
		t.Fatalf("worker id %d after restart, was %d", reg2.WorkerId, id)
	}
	other := must(tm2.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: "127.0.0.1", RpcPort: 5000}}))
	if other.WorkerId == id {
		t.Fatal("two workers share an id")
	}
	_, err = tm2.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: ""}})
	wantCode(t, err, codes.InvalidArgument, "register without address")
}

func TestHTTPFilesAndMetrics(t *testing.T) {
	cfg := testConfig(t, nil)
	tm := startMaster(t, cfg)
	ctx := context.Background()
	must(tm.fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/web/dir", Recursive: true}))
	get := func(path string) (int, string) {
		resp, err := httpGet("http://" + tm.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		return resp.code, resp.body
	}
	code, body := get("/api/v1/files?path=/web")
	if code != 200 || !strings.Contains(body, `"path": "/web/dir"`) || !strings.Contains(body, `"isDir": true`) {
		t.Fatalf("files: %d %s", code, body)
	}
	if code, body := get("/api/v1/files?path=/nope"); code != 404 || !strings.Contains(body, "/nope") {
		t.Fatalf("missing: %d %s", code, body)
	}
	code, body = get("/metrics")
	for _, m := range []string{"alluvium_fsmaster_operations_total{op=\"mkdir\"}", "alluvium_fsmaster_journal_entries_total", "alluvium_fsmaster_journal_fsyncs_total", "alluvium_fsmaster_inodes 3", "alluvium_fsmaster_workers_live 0"} {
		if !strings.Contains(body, m) {
			t.Fatalf("metrics lack %s:\n%s", m, body)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
}
