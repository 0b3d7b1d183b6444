package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// createPlan is the 10,000 creates: 200 directories of 50 files, spread
// over the clients so each directory is written by several at once.
const (
	createDirs    = 200
	filesPerDir   = 50
	createClients = 64
)

func createPath(i int) string {
	return fmt.Sprintf("/c/d%03d/f%05d", i%createDirs, i)
}

func createLength(i int) int64 { return int64(i%4096) + 1 }

// TestFSMasterKilledDuring10kCreates: 64 clients create and complete
// 10,000 files in 200 directories; the FS master is SIGKILLed when about a
// third are acknowledged (with an embedded journal, all three at once: the
// group loses power). After a restart every acknowledged create is
// there (and every acknowledged complete, with its length) and the tree is
// consistent. Then the clients finish the 10,000 against the restarted
// master, treating an AlreadyExists as "the create made it before the kill":
// the final tree holds each of the 10,000 files exactly once.
func TestFSMasterKilledDuring10kCreates(t *testing.T) { bothJournals(t, killedDuring10kCreates) }

func killedDuring10kCreates(t *testing.T, fsMasters int) {
	c := newCluster(t, testutil.ClusterOptions{FSMasters: fsMasters, Env: []string{"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=1000"}})
	c.StartFSMaster()
	const total = createDirs * filesPerDir

	var (
		mu        sync.Mutex
		created   = map[int]int64{} // file index → inode id, acknowledged
		completed = map[int]bool{}  // acknowledged completes
		unknown   = map[int]bool{}  // create sent, outcome unknown (the kill)
	)
	// run sends creates i for every i in its share; it stops at the first
	// failure (the master is gone) and returns the index it stopped at.
	run := func(ctx context.Context, fs api.FileSystemMasterClient, idx []int, acks *atomic.Int64, afterRestart bool) (rest []int, err error) {
		for k, i := range idx {
			p := createPath(i)
			resp, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: p, Recursive: true, WriteType: api.WriteType_MUST_CACHE, BlockSizeBytes: blockSize})
			var id int64
			switch {
			case err == nil:
				id = resp.GetInfo().GetFileId()
			case afterRestart && status.Code(err) == codes.AlreadyExists:
				// Made it before the kill; finish it below.
				st, serr := fs.GetStatus(ctx, &api.GetStatusRequest{Path: p})
				if serr != nil {
					return idx[k:], fmt.Errorf("stat %s: %w", p, serr)
				}
				if st.GetInfo().GetCompleted() {
					mu.Lock()
					created[i], completed[i] = st.GetInfo().GetFileId(), true
					mu.Unlock()
					continue
				}
				id = st.GetInfo().GetFileId()
			default:
				mu.Lock()
				unknown[i] = true
				mu.Unlock()
				return idx[k:], err
			}
			mu.Lock()
			created[i] = id
			delete(unknown, i)
			mu.Unlock()
			acks.Add(1)
			if _, err := fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: createLength(i), FileId: id}); err != nil {
				if afterRestart && status.Code(err) == codes.FailedPrecondition {
					// Completed before the kill, its ack lost.
					mu.Lock()
					completed[i] = true
					mu.Unlock()
					continue
				}
				return idx[k:], err
			}
			mu.Lock()
			completed[i] = true
			mu.Unlock()
		}
		return nil, nil
	}

	shares := make([][]int, createClients)
	for i := 0; i < total; i++ {
		shares[i%createClients] = append(shares[i%createClients], i)
	}

	// Round 1: all clients at once; SIGKILL at a third.
	fs, closeFS := c.fsClient()
	var acks atomic.Int64
	var wg sync.WaitGroup
	rest := make([][]int, createClients)
	for w := range createClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rest[w], _ = run(context.Background(), fs, shares[w], &acks, false)
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for acks.Load() < total/3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.KillFSMasters() // SIGKILL mid-stream
	wg.Wait()
	closeFS()
	if acks.Load() < total/3 {
		t.Fatalf("only %d creates acknowledged in 60s", acks.Load())
	}
	if acks.Load() >= total {
		t.Fatalf("all %d creates finished before the kill: the fault hit nothing", total)
	}
	t.Logf("SIGKILL after %d of %d creates acknowledged (%d outcomes unknown)", acks.Load(), total, len(unknown))

	// After the restart: every acknowledged create and complete is there.
	c.StartFSMaster()
	c.Connect()
	seen := walk(t, c.Client)
	check := func(final bool) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for i, id := range created {
			p := createPath(i)
			fi, ok := seen[p]
			if !ok {
				t.Fatalf("acknowledged create %s (inode %d) lost after kill -9", p, id)
			}
			if fi.FileId != id {
				t.Fatalf("%s: inode %d, the create acknowledged %d", p, fi.FileId, id)
			}
			if completed[i] && (!fi.Completed || fi.Length != createLength(i)) {
				t.Fatalf("acknowledged complete of %s lost: completed %v length %d, want %d", p, fi.Completed, fi.Length, createLength(i))
			}
		}
		files := 0
		for p, fi := range seen {
			if !fi.Folder {
				files++
				var i int
				if _, err := fmt.Sscanf(p[len("/c/d000/f"):], "%05d", &i); err != nil || createPath(i) != p {
					t.Fatalf("unexpected file %s in the tree", p)
				}
				if _, ok := created[i]; !ok && !unknown[i] {
					t.Fatalf("%s exists but was never created", p)
				}
			}
		}
		if final && (files != total || len(completed) != total) {
			t.Fatalf("final tree: %d files, %d completed; want %d", files, len(completed), total)
		}
	}
	check(false)
	t.Logf("after restart: all %d acknowledged creates present, tree of %d paths consistent", len(created), len(seen))

	// Round 2: finish the 10,000 on the restarted master.
	fs, closeFS = c.fsClient()
	defer closeFS()
	errs := make(chan error, createClients)
	for w := range createClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := run(context.Background(), fs, rest[w], &acks, true); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("finishing the creates after the restart: %v", err)
	}
	seen = walk(t, c.Client)
	check(true)
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
		if !ok || g.FileId != fi.FileId || g.Length != fi.Length || g.Completed != fi.Completed {
			t.Fatalf("%s changed across a clean restart: %v → %v", p, fi, g)
		}
	}
}

var _ = errors.Is
