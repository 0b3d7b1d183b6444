package api

import "testing"

func TestLayoutUsual(t *testing.T) {
	l := NewLayout(7, 250, 100, nil)
	if l.Explicit() || l.Count() != 3 {
		t.Fatalf("usual layout of 250 bytes in 100: explicit %v, %d blocks", l.Explicit(), l.Count())
	}
	want := []BlockSpan{{BlockID(7, 0), 0, 100}, {BlockID(7, 1), 100, 100}, {BlockID(7, 2), 200, 50}}
	for i, w := range want {
		if got := l.Block(int64(i)); got != w {
			t.Errorf("block %d = %+v, want %+v", i, got, w)
		}
	}
	for off, idx := range map[int64]int64{0: 0, 99: 0, 100: 1, 249: 2} {
		if got := l.Find(off); got != idx {
			t.Errorf("Find(%d) = %d, want %d", off, got, idx)
		}
	}
	if NewLayout(7, 0, 100, nil).Count() != 0 {
		t.Error("an empty file has blocks")
	}
}

func TestLayoutExtents(t *testing.T) {
	// Parts of 30, 0 and 120 bytes in blocks of 100 at indices 5, 9 and 2.
	l := NewLayout(3, 150, 100, []*FileExtent{{FirstBlock: 5, Length: 30}, {FirstBlock: 9, Length: 0}, {FirstBlock: 2, Length: 120}})
	want := []BlockSpan{{BlockID(3, 5), 0, 30}, {BlockID(3, 2), 30, 100}, {BlockID(3, 3), 130, 20}}
	if !l.Explicit() || l.Count() != int64(len(want)) {
		t.Fatalf("explicit %v, %d blocks, want %d", l.Explicit(), l.Count(), len(want))
	}
	for i, w := range want {
		if got := l.Block(int64(i)); got != w {
			t.Errorf("block %d = %+v, want %+v", i, got, w)
		}
	}
	for off, idx := range map[int64]int64{0: 0, 29: 0, 30: 1, 129: 1, 130: 2, 149: 2} {
		if got := l.Find(off); got != idx {
			t.Errorf("Find(%d) = %d, want %d", off, got, idx)
		}
	}
}
