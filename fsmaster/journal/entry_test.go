package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

func TestDecodeEntryRejectsBadInput(t *testing.T) {
	e := entry(7)
	e.Sequence = 7
	k, v, err := EncodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeEntry(k, v); err != nil || !proto.Equal(got, e) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	other, _, _ := EncodeEntry(&api.JournalEntry{Sequence: 8})
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	for name, kv := range map[string][2][]byte{
		"short key":         {k[:7], v},
		"zero key":          {make([]byte, 8), v},
		"negative key":      {[]byte{0x80, 0, 0, 0, 0, 0, 0, 7}, v},
		"other key":         {other, v},
		"empty value":       {k, nil},
		"short value":       {k, v[:3]},
		"bad checksum":      {k, flip(v, 0)},
		"flipped payload":   {k, flip(v, len(v)-1)},
		"truncated payload": {k, v[:len(v)-1]},
	} {
		if _, err := DecodeEntry(kv[0], kv[1]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: DecodeEntry error %v, want ErrCorrupt", name, err)
		}
	}
	if _, _, err := EncodeEntry(&api.JournalEntry{}); err == nil {
		t.Error("EncodeEntry of sequence 0 succeeded")
	}
}

// FuzzDecodeEntry: DecodeEntry never panics, and whatever it accepts is an
// entry whose sequence is the key and which encodes back to something that
// decodes to the same entry.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range []*api.JournalEntry{
		{Sequence: 1},
		{Sequence: 42, OpTimeMs: 1700000000000, Body: &api.JournalEntry_InodeFile{InodeFile: &api.InodeFileEntry{Id: 5, ParentId: 1, Name: "f", BlockSizeBytes: 64 << 20}}},
		{Sequence: 1 << 40, Body: &api.JournalEntry_Rename{Rename: &api.RenameEntry{Id: 9, NewParentId: 2, NewName: "x"}}},
		// An overwrite written aside, and its completion replacing file 5.
		{Sequence: 43, Body: &api.JournalEntry_InodeFile{InodeFile: &api.InodeFileEntry{Id: 6, ParentId: 1, Name: "f", BlockSizeBytes: 1 << 20, Aside: true}}},
		{Sequence: 44, Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{Id: 6, Length: 7, ReplacesId: 5}}},
	} {
		k, v, err := EncodeEntry(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(k, v)
		f.Add(k, v[:len(v)/2])
	}
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 8), []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		e, err := DecodeEntry(key, value)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if len(key) != 8 || e.Sequence <= 0 || !bytes.Equal(seqKey(e.Sequence), key) {
			t.Fatalf("accepted key %x for sequence %d", key, e.Sequence)
		}
		k2, v2, err := EncodeEntry(e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		e2, err := DecodeEntry(k2, v2)
		if err != nil || !proto.Equal(e, e2) {
			t.Fatalf("re-encoded entry does not decode the same: %v", err)
		}
	})
}

// FuzzScanLeaf: the salvage page parser never panics or reads outside the
// page on arbitrary bytes, and anything it emits lies inside the page.
func FuzzScanLeaf(f *testing.F) {
	// Seeds: the leaf pages of a real segment.
	dir := f.TempDir()
	j, err := Open(Options{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if err := j.Append(entry(int64(i))).Wait(context.Background()); err != nil {
			f.Fatal(err)
		}
	}
	segs := j.Segments()
	j.Close()
	data, err := os.ReadFile(segs[len(segs)-1].Path)
	if err != nil {
		f.Fatal(err)
	}
	for off := 0; off+segmentPageSize <= len(data); off += segmentPageSize {
		if le.Uint16(data[off+8:]) == leafPageFlag {
			f.Add(data[off : off+segmentPageSize])
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, page []byte) {
		page = page[:len(page):len(page)]
		scanLeaf(page, func(k, v []byte) {
			if cap(k) > len(page) || cap(v) > len(page) {
				t.Fatalf("emitted a slice not inside the page")
			}
			_, _ = DecodeEntry(k, v)
		}, 0)
	})
}
