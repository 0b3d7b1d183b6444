package blockworker

import (
	"bytes"
	"io"
	"testing"
)

// Unnamed block files are linked by descriptor (AT_EMPTY_PATH) where the
// process may, else through /proc/self/fd: the second way too.
func TestInvisibleUntilCommitLinkedThroughProc(t *testing.T) {
	was := noEmptyPathLink.Load()
	noEmptyPathLink.Store(true)
	defer noEmptyPathLink.Store(was)
	testInvisibleUntilCommit(t, unnamed)
}

// Unnamed block files, and those written in place, are made relative to
// the tier directory the store holds open, and by its path once the store
// let go of it.
func TestUnnamedBlocksAfterClose(t *testing.T) {
	for _, m := range []writeMode{unnamed, inPlace} {
		t.Run(m.String(), func(t *testing.T) { testBlocksAfterClose(t, m) })
	}
}

func testBlocksAfterClose(t *testing.T, m writeMode) {
	s := openStore(t, TierSpec{Alias: "HDD", Dir: t.TempDir(), Quota: 10 * mib})
	if s.noAnon.Load() || s.noInPlace.Load() {
		t.Skip("no O_TMPFILE or no sticky bit on files here")
	}
	m.set(s)
	if s.tiers[0].dirFD.Load() < 0 {
		t.Fatal("the tier directory is not held open")
	}
	a, b := randBytes(1000), randBytes(2000)
	putBlock(t, s, 1, a, "", false)
	s.Close()
	if fd := s.tiers[0].dirFD.Load(); fd >= 0 {
		t.Fatalf("Close kept the tier directory open (%d)", fd)
	}
	putBlock(t, s, 2, b, "", false)
	for id, want := range map[int64][]byte{1: a, 2: b} {
		h, err := s.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(h.File, 0, h.Length))
		h.Release()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("block %d: %v, equal %v", id, err, bytes.Equal(got, want))
		}
	}
}
