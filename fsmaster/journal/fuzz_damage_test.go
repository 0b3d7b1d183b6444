package journal

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// FuzzOpenDamagedTail: the newest segment of a journal is damaged the way
// a crash or a disk can damage it — bytes flipped anywhere (meta pages,
// branch and leaf pages, free pages) and the file cut short. Open never
// fails and never crashes on it (no SIGBUS, no panic), the damage is cut
// off, and what remains is exactly the first k entries that were written,
// byte for byte; the journal then appends after them.
func FuzzOpenDamagedTail(f *testing.F) {
	src := f.TempDir()
	j, err := Open(Options{Dir: src})
	if err != nil {
		f.Fatal(err)
	}
	var want []*api.JournalEntry
	for i := int64(1); i <= 120; i++ {
		e := entry(i)
		if err := j.Append(e).Wait(context.Background()); err != nil {
			f.Fatal(err)
		}
		want = append(want, e)
	}
	segs := j.Segments()
	j.Close()
	tail := segs[len(segs)-1]
	orig, err := os.ReadFile(tail.Path)
	if err != nil {
		f.Fatal(err)
	}
	format, err := os.ReadFile(filepath.Join(src, "FORMAT"))
	if err != nil {
		f.Fatal(err)
	}
	flip := func(off uint32, x byte) []byte {
		b := make([]byte, 5)
		binary.BigEndian.PutUint32(b, off)
		b[4] = x
		return b
	}
	f.Add([]byte{}, uint32(0))
	f.Add(flip(0, 0xff), uint32(0))                   // first meta page
	f.Add(flip(4096+20, 0x01), uint32(0))             // second meta page
	f.Add(flip(uint32(len(orig)/2), 0x80), uint32(0)) // a data page
	f.Add([]byte{}, uint32(len(orig)/3))              // torn
	f.Add(append(flip(100, 1), flip(5000, 2)...), uint32(len(orig)-100))
	f.Fuzz(func(t *testing.T, flips []byte, cut uint32) {
		data := append([]byte(nil), orig...)
		for len(flips) >= 5 {
			off := binary.BigEndian.Uint32(flips) % uint32(len(data))
			data[off] ^= flips[4]
			flips = flips[5:]
		}
		if cut != 0 {
			data = data[:cut%uint32(len(data))]
		}
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "FORMAT"), format, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "logs", filepath.Base(tail.Path)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("Open on a damaged tail: %v", err)
		}
		defer j.Close()
		got := replayAll(t, j, 0)
		if len(got) > len(want) {
			t.Fatalf("recovered %d entries, only %d were written", len(got), len(want))
		}
		for i, e := range got {
			if !proto.Equal(e, want[i]) {
				t.Fatalf("entry %d recovered as %v, written as %v", i+1, e, want[i])
			}
		}
		if j.LastSequence() != int64(len(got)) {
			t.Fatalf("journal at %d after recovering %d entries", j.LastSequence(), len(got))
		}
		if err := j.Append(entry(999)).Wait(context.Background()); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	})
}
