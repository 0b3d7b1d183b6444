package fsmaster

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// TestTTLExpiry: with a short check interval, a FREE TTL frees a cached
// file's blocks (the worker is told to drop them) and is cleared; a DELETE
// TTL removes a file — namespace and UFS — and a directory with its
// subtree; an unexpired TTL and unsetTtl leave files alone.
func TestTTLExpiry(t *testing.T) {
	cfg := testConfig(t, map[string]any{"fsmaster.ttl-check-interval": "100ms", "fsmaster.user.block-size": 1000})
	tm := startMaster(t, cfg)
	ctx := context.Background()
	// Entries first, then their bytes in the UFS (the master alone writes
	// none), and only then the short TTLs: set at create, one could run
	// out before its bytes are there on a busy machine.
	mk := func(p string) *api.FileInfo {
		fi := must(tm.fs.CreateFile(ctx, &api.CreateFileRequest{Path: p, WriteType: api.WriteType_CACHE_THROUGH, Recursive: true})).Info
		must(tm.fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: 1000, FileId: fi.FileId}))
		return fi
	}
	ttl := func(p string, ms int64, action string) {
		req := &api.SetAttributeRequest{Path: p, Ttl: proto.Int64(ms)}
		if action != "" {
			req.TtlAction = proto.String(action)
		}
		must(tm.fs.SetAttribute(ctx, req))
	}
	hot := mk("/warm/hot")
	for _, p := range []string{"/tmp/scratch", "/tmp/dir/a", "/tmp/dir/b", "/keep/later"} {
		mk(p)
	}
	// Unset before it expires: a 300 ms TTL, as the others have, could run
	// out between the two calls on a busy machine.
	const unsetTTL = 4000
	unset := mk("/keep/unset")
	ttl("/keep/unset", unsetTTL, "")
	ttl("/keep/unset", 0, "")
	ufsDir := filepath.FromSlash(cfg.FSMaster.UFS[len("file://"):])
	for _, p := range []string{"warm/hot", "tmp/scratch", "tmp/dir/a", "tmp/dir/b"} {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(ufsDir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(ufsDir, p), make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ttl("/warm/hot", 300, "FREE")
	ttl("/tmp/scratch", 300, "")
	ttl("/tmp/dir/b", 200, "DELETE") // inside a dir that goes too
	ttl("/tmp/dir", 300, "DELETE")
	ttl("/keep/later", int64(time.Hour/time.Millisecond), "")

	// A worker caches /warm/hot's block.
	reg := must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{
		Address: &api.WorkerNetAddress{Host: "127.0.0.1", RpcPort: 4242},
		Tiers:   []*api.TierUsage{{Alias: "MEM", CapacityBytes: 1 << 20}},
	}))
	blk := api.BlockID(hot.FileId, 0)
	must(tm.blocks.CommitBlock(ctx, &api.CommitBlockRequest{WorkerId: reg.WorkerId, BlockId: blk, Length: 1000, Tier: "MEM"}))

	// Not persisted, it is not freed (its only copy is the cache): the
	// checker, once it has looked at it, says so...
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, e := range tm.logs.FilterMessage("ttl expired; acting on it failed").All() {
			if e.ContextMap()["path"] == "/warm/hot" {
				return nil
			}
		}
		return fmt.Errorf("the TTL checker has not looked at /warm/hot yet")
	})
	if st := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/warm/hot"})).Info; st.CachedPercent != 100 || st.Ttl == 0 {
		t.Fatalf("an unpersisted file was freed by its TTL: %d%% cached, ttl %d", st.CachedPercent, st.Ttl)
	}
	// ...until it is.
	must(tm.fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/warm/hot", PersistenceState: api.PersistenceState_PERSISTED.Enum()}))

	testutil.Eventually(t, 10*time.Second, func() error {
		for _, p := range []string{"/tmp/scratch", "/tmp/dir"} {
			if _, err := tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: p}); codeOf(err) != codes.NotFound {
				return fmt.Errorf("%s still there (%v)", p, err)
			}
		}
		st := must(tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/warm/hot"})).Info
		if st.Ttl != 0 || st.CachedPercent != 0 {
			var warn string
			for _, e := range tm.logs.FilterMessage("ttl expired; acting on it failed").All() {
				warn = fmt.Sprint(e.ContextMap())
			}
			return fmt.Errorf("/warm/hot: ttl %d, %d%% cached; last failure %s", st.Ttl, st.CachedPercent, warn)
		}
		return nil
	})
	for _, p := range []string{"tmp/scratch", "tmp/dir"} {
		if _, err := os.Stat(filepath.Join(ufsDir, p)); !os.IsNotExist(err) {
			t.Errorf("DELETE left %s in the UFS: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(ufsDir, "warm/hot")); err != nil {
		t.Errorf("FREE touched the UFS copy: %v", err)
	}
	cmds := must(tm.blocks.WorkerHeartbeat(ctx, &api.WorkerHeartbeatRequest{WorkerId: reg.WorkerId})).Commands
	if len(cmds) != 1 || !slices.Contains(cmds[0].BlockIds, blk) {
		t.Errorf("the worker was not told to drop the freed block: %v", cmds)
	}
	// Past the end the unset TTL had, and a few check intervals more.
	time.Sleep(time.Until(time.UnixMilli(unset.CreationTimeMs + unsetTTL + 500)))
	for _, p := range []string{"/keep/later", "/keep/unset"} {
		if _, err := tm.fs.GetStatus(ctx, &api.GetStatusRequest{Path: p}); err != nil {
			t.Errorf("%s (no expired TTL) is gone: %v", p, err)
		}
	}
	if !tm.logged("ttl expired") {
		t.Errorf("no log line for the expiries")
	}
}

// TestTTLBounds: a TTL whose end does not fit before the year 9999 is
// refused (InvalidArgument naming it) at create and setattr and changes
// nothing; the last millisecond of 9999 is accepted; and a huge TTL that
// an older journal holds never counts as expired (creation + TTL
// saturates instead of overflowing into the past).
func TestTTLBounds(t *testing.T) {
	ns, _, _ := newTestNS(t)
	fi := create(t, ns, "/f", 10)
	before := dump(ns)
	for _, ttl := range []int64{math.MaxInt64, math.MaxInt64 - fi.CreationTimeMs + 1, maxTimeMs - fi.CreationTimeMs + 1} {
		_, err := ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/f", Ttl: proto.Int64(ttl), TtlAction: proto.String("DELETE")})
		wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("setattr ttl %d", ttl))
		if !strings.Contains(err.Error(), "9999") {
			t.Errorf("setattr ttl %d: %v does not say why", ttl, err)
		}
		_, err = ns.CreateFile(bg, &api.CreateFileRequest{Path: "/g", Ttl: ttl})
		wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("create ttl %d", ttl))
	}
	_, err := ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/", Recursive: true, Ttl: proto.Int64(math.MaxInt64)})
	wantCode(t, err, codes.InvalidArgument, "recursive setattr ttl MaxInt64")
	if after := dump(ns); after != before {
		t.Fatalf("refused TTLs changed the state:\n%s", diff(before, after))
	}
	must(ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/f", Ttl: proto.Int64(maxTimeMs - fi.CreationTimeMs)}))
	// An entry an older master journaled, beyond any bound.
	ns.mu.Lock()
	err = ns.st.Apply(setAttrEntry(&api.SetAttributeEntry{Id: fi.FileId, Ttl: proto.Int64(math.MaxInt64)}))
	ns.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.expiredTTLs(time.Now().UnixMilli()); len(got) != 0 {
		t.Fatalf("a TTL of MaxInt64 expired at once: %v", got)
	}
	if got := ns.expiredTTLs(math.MaxInt64); len(got) != 1 {
		t.Fatalf("at the end of time: %v", got)
	}
}
