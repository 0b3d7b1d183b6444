package chaos

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// The mutations of TestFSMasterKilledDuringMutations: file i is renamed,
// deleted or has its attributes changed (i%3), over 40 directories.
const (
	mutFiles   = 2400
	mutDirs    = 40
	mutClients = 32
	mutTTL     = int64(24 * time.Hour / time.Millisecond)
	mutMode    = uint32(0o640)
)

func mutPath(i int) string    { return fmt.Sprintf("/m/d%02d/f%04d", i%mutDirs, i) }
func mutRenamed(i int) string { return fmt.Sprintf("/m/r/d%02d/f%04d", i%mutDirs, i) }
func mutLength(i int) int64   { return int64(i%1000) + 1 }
func mutOp(i int) string      { return [...]string{"rename", "delete", "setattr"}[i%3] }
func mutShare(w int) (out []int) {
	for i := w; i < mutFiles; i += mutClients {
		out = append(out, i)
	}
	return out
}

// TestFSMasterKilledDuringMutations: 2,400 complete files; 32 clients
// rename a third of them, delete a third and change the mode and TTL of
// the rest, and the FS master is SIGKILLed when about a third of the
// changes are acknowledged. After a restart every acknowledged change is
// there: a renamed file under its new name with its inode id and length
// (and not under the old), a deleted one gone, a changed one with its new
// mode and TTL. A change whose answer the kill cut is all there or not at
// all, and a change never sent left its file as it was. The tree is
// consistent, and a clean restart replays it unchanged.
func TestFSMasterKilledDuringMutations(t *testing.T) { bothJournals(t, killedDuringMutations) }

func killedDuringMutations(t *testing.T, fsMasters int) {
	c := newCluster(t, testutil.ClusterOptions{FSMasters: fsMasters, Env: []string{"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=1000"}})
	c.StartFSMaster()
	ctx := context.Background()
	dial := c.fsClient
	fs, closeFS := dial()

	// The files, and the rename targets' directories.
	ids := make([]int64, mutFiles)
	var wg sync.WaitGroup
	setupErr := make(chan error, mutClients)
	for w := range mutClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range mutShare(w) {
				resp, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: mutPath(i), Recursive: true, WriteType: api.WriteType_MUST_CACHE, BlockSizeBytes: blockSize})
				if err == nil {
					_, err = fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: mutPath(i), Length: mutLength(i), FileId: resp.GetInfo().GetFileId()})
				}
				if err != nil {
					setupErr <- fmt.Errorf("create %s: %w", mutPath(i), err)
					return
				}
				ids[i] = resp.GetInfo().GetFileId()
			}
		}()
	}
	wg.Wait()
	close(setupErr)
	for err := range setupErr {
		t.Fatal(err)
	}
	for d := range mutDirs {
		if _, err := fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/m/r/d%02d", d), Recursive: true}); err != nil {
			t.Fatal(err)
		}
	}
	closeFS()

	// The changes, all clients at once; SIGKILL at a third.
	var (
		mu      sync.Mutex
		acked   = map[int]bool{} // change acknowledged
		unknown = map[int]bool{} // change sent, its answer cut by the kill
		acks    atomic.Int64
	)
	fs, closeFS = dial()
	for w := range mutClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range mutShare(w) {
				mu.Lock()
				unknown[i] = true
				mu.Unlock()
				var err error
				switch mutOp(i) {
				case "rename":
					_, err = fs.Rename(ctx, &api.RenameRequest{Src: mutPath(i), Dst: mutRenamed(i)})
				case "delete":
					_, err = fs.Delete(ctx, &api.DeleteRequest{Path: mutPath(i)})
				case "setattr":
					_, err = fs.SetAttribute(ctx, &api.SetAttributeRequest{Path: mutPath(i), FileId: ids[i],
						Mode: proto.Uint32(mutMode), Ttl: proto.Int64(mutTTL), TtlAction: proto.String("FREE")})
				}
				if err != nil {
					return // the master is gone: this one's outcome is unknown
				}
				mu.Lock()
				delete(unknown, i)
				acked[i] = true
				mu.Unlock()
				acks.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for acks.Load() < mutFiles/3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the acknowledgements, within deadline
	}
	c.KillFSMasters() // with an embedded journal, the whole group
	wg.Wait()
	closeFS()
	if acks.Load() < mutFiles/3 {
		t.Fatalf("only %d changes acknowledged in 60s", acks.Load())
	}
	if acks.Load() >= mutFiles {
		t.Fatalf("all %d changes acknowledged before the kill: the fault hit nothing", mutFiles)
	}
	t.Logf("SIGKILL after %d of %d changes acknowledged (%d outcomes unknown)", acks.Load(), mutFiles, len(unknown))

	c.StartFSMaster()
	c.Connect()
	seen := walk(t, c.Client)
	counts := map[string]int{}
	for i := range mutFiles {
		old, moved := seen[mutPath(i)], seen[mutRenamed(i)]
		// done: the change is there whole; untouched: not at all.
		var done, untouched bool
		switch mutOp(i) {
		case "rename":
			done = old == nil && moved != nil && moved.FileId == ids[i] && moved.Length == mutLength(i) && moved.Completed
			untouched = moved == nil && old != nil && old.FileId == ids[i] && old.Length == mutLength(i)
		case "delete":
			done = old == nil && moved == nil
			untouched = moved == nil && old != nil && old.FileId == ids[i] && old.Length == mutLength(i)
		case "setattr":
			done = moved == nil && old != nil && old.FileId == ids[i] && old.Mode == mutMode && old.Ttl == mutTTL && old.TtlAction == "FREE"
			untouched = moved == nil && old != nil && old.FileId == ids[i] && old.Mode != mutMode && old.Ttl == 0
		}
		switch {
		case acked[i] && !done:
			t.Errorf("acknowledged %s of %s lost after kill -9: at the old path %v, at the new %v", mutOp(i), mutPath(i), old, moved)
		case unknown[i] && !done && !untouched:
			t.Errorf("%s of %s cut by the kill left a half-done state: at the old path %v, at the new %v", mutOp(i), mutPath(i), old, moved)
		case !acked[i] && !unknown[i] && !untouched:
			t.Errorf("%s of %s was never sent, yet the file changed: at the old path %v, at the new %v", mutOp(i), mutPath(i), old, moved)
		}
		if acked[i] {
			counts[mutOp(i)]++
		}
	}
	t.Logf("after restart: acknowledged renames %d, deletes %d, attribute changes %d all present; tree of %d paths consistent",
		counts["rename"], counts["delete"], counts["setattr"], len(seen))

	// A clean restart replays the same tree.
	if err := c.StopFSMasters(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	c.StartFSMaster()
	c.Connect()
	again := walk(t, c.Client)
	if len(again) != len(seen) {
		t.Fatalf("after a clean restart the tree has %d paths, before %d", len(again), len(seen))
	}
	for p, fi := range seen {
		g, ok := again[p]
		if !ok || !proto.Equal(stable(g), stable(fi)) {
			t.Fatalf("%s changed across a clean restart: %v → %v", p, fi, g)
		}
	}
}

// stable is the part of a FileInfo a restart must keep.
func stable(fi *api.FileInfo) *api.FileInfo {
	return &api.FileInfo{FileId: fi.FileId, Path: fi.Path, Length: fi.Length, Completed: fi.Completed, Folder: fi.Folder,
		Mode: fi.Mode, Ttl: fi.Ttl, TtlAction: fi.TtlAction, Owner: fi.Owner, Group: fi.Group, ParentId: fi.ParentId}
}
