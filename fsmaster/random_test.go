package fsmaster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// randomPath returns a path of 1..4 components from a tiny alphabet, so
// that random operations collide often (exists, not empty, own subtree...).
func randomPath(rng *rand.Rand) string {
	names := []string{"a", "b", "c", "dd", "e.txt"}
	depth := 1 + rng.IntN(4)
	var b strings.Builder
	for range depth {
		b.WriteByte('/')
		b.WriteString(names[rng.IntN(len(names))])
	}
	return b.String()
}

// randomOps runs n random operations against ns. Every failed operation must
// leave the state exactly as it was; the invariants are checked as it goes.
// randomXattrs sets, replaces or removes (empty value) a few of a small set
// of extended attributes.
func randomXattrs(rng *rand.Rand) map[string][]byte {
	if rng.IntN(3) == 0 {
		return nil
	}
	x := map[string][]byte{}
	for range 1 + rng.IntN(3) {
		v := []byte(fmt.Sprintf("v%d", rng.IntN(100)))
		if rng.IntN(4) == 0 {
			v = nil
		}
		x[fmt.Sprintf("k%d", rng.IntN(4))] = v
	}
	return x
}

func randomOps(t *testing.T, ns *namespace, ufsDir string, rng *rand.Rand, n int) {
	t.Helper()
	ctx := context.Background()
	rec := &recorder{inner: ns.j}
	ns.mu.Lock()
	ns.j = rec
	ns.mu.Unlock()
	defer func() { ns.mu.Lock(); ns.j = rec.inner; ns.mu.Unlock() }()
	mounts := 0
	var pending []*api.FileInfo // overwrites in flight
	uploadsCompleted := 0
	defer func() { t.Logf("%d multipart uploads completed", uploadsCompleted) }()
	for i := range n {
		before := dump(ns)
		mark := rec.count()
		var err error
		var what string
		switch op := rng.IntN(20); {
		case op < 4:
			p := randomPath(rng)
			what = "mkdir " + p
			wt := api.WriteType_MUST_CACHE
			if rng.IntN(3) == 0 {
				wt = api.WriteType_THROUGH
			}
			_, err = ns.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: p, Recursive: rng.IntN(2) == 0, AllowExists: rng.IntN(2) == 0, WriteType: wt})
		case op < 8:
			p := randomPath(rng)
			what = "create " + p
			var fi *api.FileInfo
			ow := rng.IntN(3) == 0
			upload := ow && rng.IntN(3) == 0 // a multipart upload
			fi, err = ns.CreateFile(ctx, &api.CreateFileRequest{Path: p, Recursive: rng.IntN(2) == 0, Overwrite: ow, Upload: upload, WriteType: api.WriteType_MUST_CACHE})
			switch r := rng.IntN(8); {
			case err != nil:
			case upload:
				pending = append(pending, fi)
			case ow && r < 2:
				// The writer gives up: its overwrite (written aside) goes.
				before, mark = dump(ns), rec.count()
				what = "abort " + p
				err = ns.Delete(ctx, &api.DeleteRequest{Path: p, FileId: fi.FileId, AlluviumOnly: true})
			case ow && r < 4:
				// Left in flight, to be completed or aborted later (or
				// never): the checkpoint and replay carry it.
				pending = append(pending, fi)
			case r < 6:
				fp := ""
				if rng.IntN(2) == 0 && !ow {
					fp = fmt.Sprintf("fp%d", i)
				}
				before, mark = dump(ns), rec.count()
				what = "complete " + p
				_, err = ns.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: rng.Int64N(5000), FileId: fi.FileId, UfsFingerprint: fp})
			}
		case op < 9 && len(pending) > 0:
			k := rng.IntN(len(pending))
			fi := pending[k]
			pending = append(pending[:k], pending[k+1:]...)
			isUpload := func() bool {
				ns.mu.RLock()
				defer ns.mu.RUnlock()
				a := ns.st.asides[fi.FileId]
				return a != nil && ns.st.upload(a) != nil
			}
			switch {
			case rng.IntN(2) == 0 && isUpload():
				// Parts (some uploaded twice), then a completion with
				// some of them, or the upload left for later.
				var refs []*api.UploadPartRef
				for num := int32(1); num <= int32(1+rng.IntN(3)) && err == nil; num++ {
					for range 1 + rng.IntN(2) {
						before, mark = dump(ns), rec.count()
						length := rng.Int64N(3000)
						what = fmt.Sprintf("part %d of %s", num, fi.Path)
						var a *api.AllocateUploadBlocksResponse
						if a, err = ns.AllocateUploadBlocks(ctx, &api.AllocateUploadBlocksRequest{Path: fi.Path, FileId: fi.FileId, Length: length}); err != nil {
							break
						}
						before, mark = dump(ns), rec.count()
						if _, err = ns.CommitUploadPart(ctx, &api.CommitUploadPartRequest{Path: fi.Path, FileId: fi.FileId, PartNumber: num, FirstBlock: a.FirstBlock, Length: length, Tag: []byte{byte(num)}}); err != nil {
							break
						}
						if len(refs) > 0 && refs[len(refs)-1].PartNumber == num {
							refs = refs[:len(refs)-1] // uploaded again: the last one counts
						}
						refs = append(refs, &api.UploadPartRef{PartNumber: num, FirstBlock: a.FirstBlock})
					}
				}
				if err == nil && rng.IntN(3) != 0 {
					lp, lerr := ns.ListUploadParts(ctx, &api.ListUploadPartsRequest{Path: fi.Path, FileId: fi.FileId})
					if lerr != nil {
						t.Fatalf("op %d: list parts of %s: %v", i, fi.Path, lerr)
					}
					lengths := map[int32]int64{}
					for _, pt := range lp.Parts {
						lengths[pt.PartNumber] = pt.Length
					}
					var total int64
					for _, r := range refs {
						total += lengths[r.PartNumber]
					}
					uploadsCompleted++
					before, mark = dump(ns), rec.count()
					what = "complete upload " + fi.Path
					_, err = ns.CompleteFile(ctx, &api.CompleteFileRequest{Path: fi.Path, Length: total, FileId: fi.FileId, Parts: refs, Xattrs: randomXattrs(rng)})
				} else if err == nil {
					pending = append(pending, fi)
				}
			case rng.IntN(2) == 0 && !isUpload():
				what = "late complete " + fi.Path
				_, err = ns.CompleteFile(ctx, &api.CompleteFileRequest{Path: fi.Path, Length: rng.Int64N(5000), FileId: fi.FileId})
			default:
				what = "late abort " + fi.Path
				err = ns.Delete(ctx, &api.DeleteRequest{Path: fi.Path, FileId: fi.FileId, AlluviumOnly: true})
			}
		case op < 9:
			p := randomPath(rng)
			what = "create " + p
			var fi *api.FileInfo
			fi, err = ns.CreateFile(ctx, &api.CreateFileRequest{Path: p, Recursive: rng.IntN(2) == 0, WriteType: api.WriteType_MUST_CACHE})
			if err == nil && rng.IntN(4) != 0 {
				before, mark = dump(ns), rec.count()
				what = "complete " + p
				fp := ""
				if rng.IntN(2) == 0 {
					fp = fmt.Sprintf("fp%d", i)
				}
				_, err = ns.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: rng.Int64N(5000), FileId: fi.FileId, UfsFingerprint: fp, Xattrs: randomXattrs(rng)})
			}
		case op < 10:
			p := randomPath(rng)
			what = "delete " + p
			err = ns.Delete(ctx, &api.DeleteRequest{Path: p, Recursive: rng.IntN(2) == 0, AlluviumOnly: rng.IntN(2) == 0})
		case op < 13:
			src, dst := randomPath(rng), randomPath(rng)
			if rng.IntN(4) == 0 {
				dst = src + "/x" // into its own subtree
			}
			what = "rename " + src + " " + dst
			_, err = ns.Rename(ctx, &api.RenameRequest{Src: src, Dst: dst})
		case op < 15:
			p := randomPath(rng)
			what = "setattr " + p
			req := &api.SetAttributeRequest{Path: p, Recursive: rng.IntN(2) == 0}
			switch rng.IntN(6) {
			case 5:
				req.Recursive = false
				req.Xattrs = randomXattrs(rng)
			case 0:
				v := rng.IntN(2) == 0
				req.Pinned = &v
			case 1:
				v := uint32(rng.IntN(0o1000))
				req.Mode = &v
			case 2:
				v := api.PersistenceState(1 + rng.IntN(3))
				req.PersistenceState = &v
			case 3:
				v := int32(rng.IntN(3))
				req.ReplicationMin = &v
			case 4:
				v := rng.Int64N(3) * 1_000_000_000 // far out: the TTL loop is not running here
				req.Ttl = &v
				if rng.IntN(2) == 0 {
					a := [...]string{"FREE", "DELETE"}[rng.IntN(2)]
					req.TtlAction = &a
				}
			}
			_, err = ns.SetAttribute(ctx, req)
		case op < 16:
			// Something appears in the UFS behind Alluvium's back.
			rel := randomPath(rng)[1:]
			full := filepath.Join(ufsDir, rel)
			if os.MkdirAll(filepath.Dir(full), 0o755) == nil {
				_ = os.WriteFile(full, []byte("ufs bytes"), 0o644)
			}
			p := "/" + rel
			what = "stat " + p
			_, err = ns.GetStatus(ctx, &api.GetStatusRequest{Path: p, LoadMetadataType: api.LoadMetadataType_ALWAYS})
		case op < 17:
			p := randomPath(rng)
			what = "ls " + p
			_, err = ns.ListStatus(ctx, &api.ListStatusRequest{Path: p, Recursive: rng.IntN(2) == 0, PageSize: 3})
		case op < 18:
			if mounts < 3 {
				p := randomPath(rng)
				what = "mount " + p
				_, err = ns.Mount(ctx, &api.MountRequest{AlluviumPath: p, UfsUri: "file://" + t.TempDir()})
				if err == nil {
					mounts++
				}
			} else {
				ms := ns.MountTable()
				p := ms[rng.IntN(len(ms))].AlluviumPath
				what = "unmount " + p
				err = ns.Unmount(ctx, &api.UnmountRequest{AlluviumPath: p})
				if err == nil {
					mounts--
				}
			}
		case op < 19:
			what = "worker id"
			_, err = ns.workerID(ctx, fmt.Sprintf("host%d:%d", rng.IntN(5), 1000+rng.IntN(3)))
		default:
			p := randomPath(rng)
			what = "free " + p
			_, err = ns.Free(ctx, &api.FreeRequest{Path: p, Recursive: true, Force: rng.IntN(2) == 0})
		}
		if err != nil {
			// A failed call may still have loaded metadata from the UFS on
			// its way (that is an observation of the UFS, not the call's
			// change); anything else means the state changed.
			// A stat with ALWAYS syncs the path: dropping a persisted inode
			// the UFS no longer has is its observation too.
			syncing := strings.HasPrefix(what, "stat ")
			for _, e := range rec.since(mark) {
				if !isLoadEntry(e) && !(syncing && e.GetDeleteInode() != nil) {
					t.Fatalf("op %d %s failed (%v) but journaled %v:\nbefore\n%s\nafter\n%s", i, what, err, e, before, dump(ns))
				}
			}
			if after := dump(ns); after != before && rec.count() == mark {
				t.Fatalf("op %d %s failed (%v) but changed the state:\nbefore\n%s\nafter\n%s", i, what, err, before, after)
			}
		}
		ns.mu.RLock()
		ierr := ns.st.CheckInvariants()
		ns.mu.RUnlock()
		if ierr != nil {
			t.Fatalf("op %d %s (err %v): invariants broken: %v\n%s", i, what, err, ierr, dump(ns))
		}
	}
}

// recorder keeps the entries appended through it.
type recorder struct {
	inner   appender
	mu      sync.Mutex
	entries []*api.JournalEntry
}

func (r *recorder) Append(e *api.JournalEntry) waiter {
	w := r.inner.Append(e)
	r.mu.Lock()
	r.entries = append(r.entries, e)
	r.mu.Unlock()
	return w
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

func (r *recorder) since(i int) []*api.JournalEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*api.JournalEntry(nil), r.entries[i:]...)
}

// isLoadEntry reports whether e is metadata loaded from the UFS: a
// persisted directory whose children are not loaded yet, a completed
// persisted file as the UFS has it, a page of a directory's UFS children,
// or a directory marked loaded.
func isLoadEntry(e *api.JournalEntry) bool {
	switch b := e.GetBody().(type) {
	case *api.JournalEntry_InodeDirectory:
		d := b.InodeDirectory
		return d.GetPersistenceState() == api.PersistenceState_PERSISTED && !d.GetChildrenLoaded() && !d.GetMountPoint()
	case *api.JournalEntry_InodeFile:
		f := b.InodeFile
		return f.GetPersistenceState() == api.PersistenceState_PERSISTED && f.GetCompleted() && f.GetWriteType() == api.WriteType_THROUGH
	case *api.JournalEntry_UpdateDirectory, *api.JournalEntry_UfsChildren:
		return true
	}
	return false
}

// TestRandomOperationsKeepInvariants runs random operation sequences with
// several seeds and walks the tree after every one.
func TestRandomOperationsKeepInvariants(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ns, _, ufsDir := newTestNS(t)
			randomOps(t, ns, ufsDir, rand.New(rand.NewPCG(seed, 7)), 600)
		})
	}
}

// TestReplayEquivalence: the state after N random operations equals the
// state rebuilt by replaying the whole journal, and the state rebuilt from
// a checkpoint taken in the middle plus the journal after it — also after
// the covered segments are deleted.
func TestReplayEquivalence(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "journal")
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	j, err := journal.Open(journal.Options{Dir: dir, SegmentEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(NewState(), journalAdapter{j}, nsConfig{blockSize: 1024, owner: "u", group: "g"}, nil, nil)
	defer ns.closeUFS()
	if err := ns.bootstrap(ctx, "file://"+ufsDir, map[string]string{"opt": "1"}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(42, 42))
	randomOps(t, ns, ufsDir, rng, 400)

	// A checkpoint in the middle, as the master writes one.
	ns.mu.RLock()
	if err := ns.last.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	mid := ns.st.lastSeq
	if _, err := journal.WriteCheckpoint(dir, mid, ns.st.WriteCheckpoint); err != nil {
		t.Fatal(err)
	}
	midDump := ns.st.Dump()
	ns.mu.RUnlock()

	randomOps(t, ns, ufsDir, rng, 400)
	want := dump(ns)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(want, "seq ") || strings.Count(want, "\n") < 10 {
		t.Fatalf("suspiciously small state:\n%s", want)
	}

	reopen := func() *journal.Journal {
		j, err := journal.Open(journal.Options{Dir: dir, SegmentEntries: 64})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	// 1. The whole journal.
	j = reopen()
	full := NewState()
	if err := j.Replay(ctx, 0, full.Apply); err != nil {
		t.Fatal(err)
	}
	if got := full.Dump(); got != want {
		t.Fatalf("replayed state differs:\n%s", diff(want, got))
	}
	// 2. The checkpoint alone is the state at its sequence.
	st, path, seq, err := recoverState(dir, nil)
	if err != nil || seq != mid || path == "" {
		t.Fatalf("recover: %v seq %d path %q", err, seq, path)
	}
	if got := st.Dump(); got != midDump {
		t.Fatalf("checkpoint state differs:\n%s", diff(midDump, got))
	}
	// 3. Checkpoint + tail.
	if err := j.Replay(ctx, seq, st.Apply); err != nil {
		t.Fatal(err)
	}
	if got := st.Dump(); got != want {
		t.Fatalf("checkpoint+tail state differs:\n%s", diff(want, got))
	}
	if err := st.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	// 4. Without the covered segments.
	n, err := j.DeleteCoveredSegments(seq)
	if err != nil || n == 0 {
		t.Fatalf("deleted %d segments: %v", n, err)
	}
	j.Close()
	j = reopen()
	defer j.Close()
	st, _, seq, err = recoverState(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Replay(ctx, seq, st.Apply); err != nil {
		t.Fatal(err)
	}
	if got := st.Dump(); got != want {
		t.Fatalf("after deleting covered segments:\n%s", diff(want, got))
	}
	// And the journal can no longer be replayed from 0: the segments are gone.
	if err := j.Replay(ctx, 0, NewState().Apply); err == nil {
		t.Fatal("replay from 0 after deleting segments succeeded")
	}
}

// diff shows the first differing line of two dumps.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d\nwant %s\ngot  %s", i, a, b)
		}
	}
	return "(equal)"
}
