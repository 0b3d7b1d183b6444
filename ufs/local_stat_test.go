package ufs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// Every index of a batch is statted exactly once, whatever the width.
func TestStatSpreadCoversEachOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 224, 225, 992, 1000} {
		for _, w := range []int{1, 2, 4, 31, 32, 2000} {
			seen := make([]atomic.Int32, n)
			statSpread(n, w, func(from, to int) {
				for i := from; i < to; i++ {
					seen[i].Add(1)
				}
			})
			for i := range seen {
				if c := seen[i].Load(); c != 1 {
					t.Fatalf("n=%d w=%d: index %d statted %d times", n, w, i, c)
				}
			}
		}
	}
}

func TestStatWidth(t *testing.T) {
	if w := statWidth(992, true); w != coldStatWidth {
		t.Errorf("cold batch of 992: width %d, want %d", w, coldStatWidth)
	}
	if w := statWidth(992, false); w > 4 {
		t.Errorf("warm batch of 992: width %d, want the cores (at most 4)", w)
	}
	if w := statWidth(40, true); w != 5 {
		t.Errorf("cold batch of 40: width %d, want 5 (8 stats a goroutine at least)", w)
	}
}

// A big batch (probe, then spread) gives each name its own status, in
// order, as a small one does.
func TestStatEntriesBigBatchInOrder(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for i := range 1000 {
		n := fmt.Sprintf("f%04d", i)
		if err := os.WriteFile(filepath.Join(dir, n), make([]byte, i), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	names = append(names, "missing")
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := statEntries(f, names, nil)
	if len(out) != len(names) {
		t.Fatalf("%d statuses for %d names", len(out), len(names))
	}
	for i, n := range names[:1000] {
		if out[i].err != nil || out[i].st.Name != n || out[i].st.Size != int64(i) {
			t.Fatalf("entry %d: %+v, want %s of %d bytes", i, out[i], n, i)
		}
	}
	if out[1000].err == nil {
		t.Fatal("a missing name statted without an error")
	}
}
