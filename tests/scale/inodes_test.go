package scale

import (
	"context"
	"fmt"
	"path"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// The inodes run (BenchmarkScaleInodes, `make bench-scale-inodes`) reaches
// the 10M-inode figures without building and learning a tree of millions
// of UFS files (the hour of `make bench-scale`): the FS master formats its
// journal as usual and writes a checkpoint; this process loads that
// checkpoint, adds the scale tree's directories and files to it as learned
// UFS children (empty files, every directory listed, the same entries the
// FS master journals when it learns a tree) and writes it back at the same
// sequence with the FS master's own checkpoint writer; the real binary then
// starts from it. What the UFS holds is never asked: no load syncs, no
// listing re-reads a directory.

// generateNamespace stops the FS master, replaces its newest checkpoint by
// one that also holds the tree spec lays out (files empty), and returns how
// many inodes it added.
func (r *run) generateNamespace(spec Tree) int {
	tb, c := r.tb, r.c
	ctx := context.Background()
	root, err := r.fs.GetStatus(ctx, &api.GetStatusRequest{Path: "/"})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Client.Checkpoint(ctx); err != nil {
		tb.Fatalf("checkpoint: %v", err)
	}
	c.FSMaster.Kill()
	dir := path.Join(c.FSMasterHome(), "journal")
	st, seq := loadNewestCheckpoint(tb, dir)
	start := time.Now()
	added, err := addTree(st, root.GetInfo(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	// The same sequence: the journal holds nothing after it, and the FS
	// master replays from there.
	if _, err := journal.WriteCheckpoint(dir, seq, st.WriteCheckpoint); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("generated a namespace of %d inodes (checkpoint at sequence %d) in %s", st.InodeCount(), seq, time.Since(start).Round(time.Millisecond))
	st = nil
	runtime.GC()
	return added
}

func loadNewestCheckpoint(tb testing.TB, dir string) (*fsmaster.State, int64) {
	tb.Helper()
	p, seq, err := journal.LatestCheckpoint(dir, zap.NewNop())
	if err != nil || p == "" {
		tb.Fatalf("no checkpoint in %s: %v", dir, err)
	}
	db, err := journal.OpenCheckpoint(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var st *fsmaster.State
	if err := db.View(func(tx *bolt.Tx) error {
		st, err = fsmaster.LoadCheckpoint(tx)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return st, seq
}

// addTree adds spec's directories and files below root to st, one
// learned-children entry a directory listing all it holds (so every
// directory is known listed), ids after the largest st has used. It
// returns how many inodes it added.
func addTree(st *fsmaster.State, root *api.FileInfo, spec Tree) (int, error) {
	// The tree as directories → subdirectories and file counts.
	subdirs := map[string][]string{}
	files := map[string]int{}
	for _, g := range spec.groups() {
		files[g.dir] = g.files
		for d := g.dir; d != "."; d = path.Dir(d) {
			parent := path.Dir(d)
			if slices.Contains(subdirs[parent], path.Base(d)) {
				break
			}
			subdirs[parent] = append(subdirs[parent], path.Base(d))
		}
	}
	next := st.NextInodeID()
	added := 0
	mt := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var list func(dir string, id int64) error
	list = func(dir string, id int64) error {
		var kids []*api.UfsChild
		for _, name := range subdirs[dir] {
			kids = append(kids, &api.UfsChild{Name: name, Directory: true, Mode: 0o755})
		}
		for k := range files[dir] {
			kids = append(kids, &api.UfsChild{Name: fmt.Sprintf("f%07d", k), Mode: 0o644, MtimeMs: &mt,
				UfsFingerprint: fmt.Sprintf("0:%d", mt*1e6+int64(k))})
		}
		slices.SortFunc(kids, func(a, b *api.UfsChild) int { return strings.Compare(a.GetName(), b.GetName()) })
		first := next
		next += int64(len(kids))
		added += len(kids)
		if err := st.Apply(&api.JournalEntry{Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{
			ParentId: id, FirstId: first, Owner: root.GetOwner(), Group: root.GetGroup(), BlockSizeBytes: 64 << 20,
			CreationTimeMs: mt, Children: kids, ChildrenLoaded: true,
		}}}); err != nil {
			return fmt.Errorf("generate %s: %w", dir, err)
		}
		for i, c := range kids {
			if c.GetDirectory() {
				if err := list(path.Join(dir, c.GetName()), first+int64(i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return added, list(".", root.GetFileId())
}

// generated gives the FS master the generated namespace, times its start
// from that checkpoint alone and weighs its heap.
func (r *run) generated() {
	tb := r.tb
	before := r.inodes()
	added := r.generateNamespace(r.p.tree)
	start := time.Now()
	r.c.StartFSMaster()
	took := time.Since(start)
	got := r.inodes()
	if got != before+int64(added) {
		tb.Fatalf("the FS master holds %d inodes, want %d + %d generated", got, before, added)
	}
	r.r["start-from-checkpoint-s"] = took.Seconds()
	tb.Logf("FS master started from the generated checkpoint of %d inodes in %s", got, took.Round(time.Millisecond))
	r.weigh(int(got), "fsmaster-generated.heap.pprof")
}
