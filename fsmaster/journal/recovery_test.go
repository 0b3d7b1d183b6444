package journal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/alluvium/alluvium/api"
)

// copyDir copies a journal dir (flat files and one level of subdirs).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// committedValueEnds walks the committed bbolt tree of a segment file (from
// its newest valid meta page, independently of the salvage code) and
// returns, for each entry sequence, the file offset where its value ends:
// a truncation at or after that offset leaves that copy whole.
func committedValueEnds(t testing.TB, data []byte) map[int64]int {
	t.Helper()
	ps := segmentPageSize
	var best boltMeta
	var ok bool
	var root uint64
	for _, off := range []int{0, ps} {
		if m, valid := parseMeta(data[off:]); valid && (!ok || m.txid > best.txid) {
			best, ok = m, true
			root = le.Uint64(data[off+pageHeaderSize+16:])
		}
	}
	if !ok {
		t.Fatal("pristine segment has no valid meta")
	}
	ends := map[int64]int{}
	var walk func(off, limit int)
	leaf := func(off, limit int, base int) {
		count := int(le.Uint16(data[off+10:]))
		for i := 0; i < count; i++ {
			eo := off + pageHeaderSize + i*leafElemSize
			ks := eo + int(le.Uint32(data[eo+4:]))
			ke := ks + int(le.Uint32(data[eo+8:]))
			ve := ke + int(le.Uint32(data[eo+12:]))
			if le.Uint32(data[eo:])&bucketLeafFlag != 0 {
				if string(data[ks:ke]) == string(entriesBucket) {
					if r := le.Uint64(data[ke:]); r != 0 {
						walk(int(r)*ps, 0)
					} else {
						walk(ke+bucketHeaderSize, 1) // inline bucket page
					}
				}
				continue
			}
			if base == 1 || true {
				ends[int64(be64(data[ks:ke]))] = ve
			}
		}
	}
	walk = func(off, inline int) {
		switch le.Uint16(data[off+8:]) {
		case leafPageFlag:
			leaf(off, 0, inline)
		case 0x01: // branch
			count := int(le.Uint16(data[off+10:]))
			for i := 0; i < count; i++ {
				eo := off + pageHeaderSize + i*16
				walk(int(le.Uint64(data[eo+8:]))*ps, 0)
			}
		default:
			t.Fatalf("unexpected page type %x at %d", le.Uint16(data[off+8:]), off)
		}
	}
	walk(int(root)*ps, 0)
	return ends
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// buildTail makes a journal whose last (open) segment holds entries written
// in many transactions of varied sizes, closes it and returns the entries.
func buildTail(t testing.TB, dir string) []*api.JournalEntry {
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 1000})
	want := appendConcurrent(t, j, 8, 100)
	if err := j.Rotate(); err != nil { // 1-100 closed, the rest in 101-open
		t.Fatal(err)
	}
	want = append(want, appendConcurrent(t, j, 8, 50)...)
	want = append(want, appendN(t, j, 60)...)
	want = append(want, appendConcurrent(t, j, 32, 200)...)
	want = append(want, appendN(t, j, 30)...)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Entries of appendConcurrent are numbered by goroutine, not sequence;
	// what matters is the sequence order, which the slices keep.
	return want
}

func TestTornTailRecoversToLastWholeEntry(t *testing.T) {
	pristine := t.TempDir()
	want := buildTail(t, pristine)
	n := int64(len(want))
	tailName := "00000000000000000101-open.bolt"
	tail := filepath.Join(pristine, "logs", tailName)
	data, err := os.ReadFile(tail)
	if err != nil {
		t.Fatal(err)
	}
	ends := committedValueEnds(t, data)
	if len(ends) != int(n-100) {
		t.Fatalf("committed tree holds %d entries, want %d", len(ends), n-100)
	}
	// lmin(off): the last sequence such that the committed copies of all
	// entries up to it lie wholly before off.
	lmin := func(off int) int64 {
		l := int64(100)
		for s := int64(101); s <= n && ends[s] <= off; s++ {
			l = s
		}
		return l
	}

	rng := rand.New(rand.NewPCG(1, uint64(len(data))))
	offsets := []int{0, 1, 100, segmentPageSize, 2*segmentPageSize - 1, 2 * segmentPageSize, 2*segmentPageSize + 1, len(data) - 1}
	for len(offsets) < 60 {
		offsets = append(offsets, rng.IntN(len(data)))
	}
	cuts := 0
	for _, off := range offsets {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		path := filepath.Join(dir, "logs", tailName)
		if err := os.Truncate(path, int64(off)); err != nil {
			t.Fatal(err)
		}
		log, logs := observed(zapcore.InfoLevel)
		j, err := Open(Options{Dir: dir, SegmentEntries: 100, Logger: log})
		if err != nil {
			t.Fatalf("truncated at %d of %d: Open: %v", off, len(data), err)
		}
		last := j.LastSequence()
		if testing.Verbose() {
			t.Logf("cut at %6d: recovered to %d (whole up to %d)", off, last, lmin(off))
		}
		if last < lmin(off) || last > n {
			t.Fatalf("truncated at %d: recovered to %d; entries up to %d were whole, %d written", off, last, lmin(off), n)
		}
		sameEntries(t, replayAll(t, j, 0), want[:last])
		cut := logs.FilterMessage("journal: cut the torn/corrupt tail of the journal").All()
		if last < n {
			cuts++
			if len(cut) != 1 {
				t.Fatalf("truncated at %d: lost entries %d..%d without the cut log line (logs: %v)", off, last+1, n, logs.All())
			}
			f := cut[0].ContextMap()
			if f["segment"] != path || f["last_good_sequence"] != last {
				t.Fatalf("truncated at %d: cut log line %v, want segment %s last_good_sequence %d", off, f, path, last)
			}
		}
		// The journal goes on after the last good entry, and says so after
		// another restart.
		next := appendN(t, j, 2)
		if next[0].Sequence != last+1 {
			t.Fatalf("truncated at %d: next append got %d, want %d", off, next[0].Sequence, last+1)
		}
		j.Close()
		j2 := openJournal(t, Options{Dir: dir, SegmentEntries: 100})
		if j2.LastSequence() != last+2 {
			t.Fatalf("truncated at %d: after reopen LastSequence %d, want %d", off, j2.LastSequence(), last+2)
		}
		sameEntries(t, replayAll(t, j2, 0), append(append([]*api.JournalEntry{}, want[:last]...), next...))
		j2.Close()
	}
	t.Logf("%d truncation points, %d needed a cut", len(offsets), cuts)
	if cuts < len(offsets)/3 {
		t.Fatalf("only %d of %d truncations cut anything: the test is not exercising torn tails", cuts, len(offsets))
	}
}

// flipAll flips one byte of the payload in every copy of value in data.
func flipAll(data, value []byte) int {
	n := 0
	for i := 0; ; {
		k := bytes.Index(data[i:], value)
		if k < 0 {
			return n
		}
		data[i+k+len(value)-1] ^= 0x5a
		i += k + len(value)
		n++
	}
}

func TestCorruptTailIsCut(t *testing.T) {
	dir := t.TempDir()
	want := buildTail(t, dir)
	n := int64(len(want))
	path := filepath.Join(dir, "logs", "00000000000000000101-open.bolt")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for s := n - 2; s <= n; s++ {
		_, v, err := EncodeEntry(want[s-1])
		if err != nil {
			t.Fatal(err)
		}
		if flipAll(data, v) == 0 {
			t.Fatalf("entry %d not found in %s", s, path)
		}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	log, logs := observed(zapcore.InfoLevel)
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 100, Logger: log})
	if j.LastSequence() != n-3 {
		t.Fatalf("LastSequence = %d, want %d (the 3 corrupt entries cut)", j.LastSequence(), n-3)
	}
	cut := logs.FilterMessage("journal: cut the torn/corrupt tail of the journal").All()
	if len(cut) != 1 {
		t.Fatalf("want one cut log line, got %v", logs.All())
	}
	if f := cut[0].ContextMap(); f["segment"] != path || f["last_good_sequence"] != n-3 ||
		!strings.Contains(f["error"].(string), "checksum") {
		t.Fatalf("cut log line %v", f)
	}
	sameEntries(t, replayAll(t, j, 0), want[:n-3])
	if e := appendN(t, j, 1); e[0].Sequence != n-2 {
		t.Fatalf("next append got %d, want %d", e[0].Sequence, n-2)
	}
}

func TestDamagedClosedSegmentIsAnError(t *testing.T) {
	pristine := t.TempDir()
	want := buildTail(t, pristine)
	closed := filepath.Join("logs", "00000000000000000001-00000000000000000100.bolt")

	// A corrupt entry in the middle of a closed segment: Replay and
	// ReplayClosed fail naming the file and the sequence.
	dir := t.TempDir()
	copyDir(t, pristine, dir)
	path := filepath.Join(dir, closed)
	data, _ := os.ReadFile(path)
	_, v, _ := EncodeEntry(want[49])
	if flipAll(data, v) == 0 {
		t.Fatal("entry 50 not found")
	}
	os.WriteFile(path, data, 0o644)
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 100})
	for name, err := range map[string]error{
		"Replay": j.Replay(context.Background(), 0, func(*api.JournalEntry) error { return nil }),
		"ReplayClosed": func() error {
			_, err := ReplayClosed(context.Background(), dir, 0, func(*api.JournalEntry) error { return nil })
			return err
		}(),
	} {
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "entry 50") {
			t.Fatalf("%s over a corrupt closed segment: %v", name, err)
		}
	}
	// Entries before it are fine, and it is not cut.
	sameEntries(t, replayAll(t, j, 50), want[50:])
	j.Close()

	// A truncated closed segment that is not the tail: Open refuses,
	// naming it, and changes nothing.
	dir = t.TempDir()
	copyDir(t, pristine, dir)
	path = filepath.Join(dir, closed)
	st, _ := os.Stat(path)
	os.Truncate(path, st.Size()/3)
	before := logFiles(t, dir)
	if _, err := Open(Options{Dir: dir, SegmentEntries: 100}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open with a truncated closed segment: %v", err)
	}
	if after := logFiles(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("failed Open changed the logs: %v -> %v", before, after)
	}

	// A missing segment in the middle: Open refuses, naming the gap.
	dir = t.TempDir()
	copyDir(t, pristine, dir)
	j = openJournal(t, Options{Dir: dir, SegmentEntries: 100}) // closes 101-open as 101-440
	appendN(t, j, 1)
	j.Close()
	os.Remove(filepath.Join(dir, "logs", "00000000000000000101-00000000000000000440.bolt"))
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "101..440") {
		t.Fatalf("Open with a missing segment: %v", err)
	}
}

func TestCrashStatesAroundRotation(t *testing.T) {
	pristine := t.TempDir()
	j := openJournal(t, Options{Dir: pristine, SegmentEntries: 100})
	want := appendN(t, j, 100) // rotated: 1-100 closed, 101-open empty
	j.Close()
	logs := filepath.Join(pristine, "logs")
	closed := filepath.Join(logs, "00000000000000000001-00000000000000000100.bolt")
	open1 := filepath.Join(logs, "00000000000000000001-open.bolt")
	open101 := filepath.Join(logs, "00000000000000000101-open.bolt")

	check := func(t *testing.T, dir string) {
		t.Helper()
		j := openJournal(t, Options{Dir: dir, SegmentEntries: 100})
		if j.LastSequence() != 100 {
			t.Fatalf("LastSequence %d, want 100", j.LastSequence())
		}
		sameEntries(t, replayAll(t, j, 0), want)
		if got := strings.Join(logFiles(t, dir), " "); got != "00000000000000000001-00000000000000000100.bolt 00000000000000000101-open.bolt" {
			t.Fatalf("logs after Open: %s", got)
		}
		if e := appendN(t, j, 1); e[0].Sequence != 101 {
			t.Fatalf("next sequence %d", e[0].Sequence)
		}
	}
	rel := func(dir, p string) string { r, _ := filepath.Rel(pristine, p); return filepath.Join(dir, r) }

	t.Run("closed but not renamed", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		os.Remove(rel(dir, open101))
		os.Rename(rel(dir, closed), rel(dir, open1))
		check(t, dir)
	})
	t.Run("renamed, next not created", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		os.Remove(rel(dir, open101))
		check(t, dir)
	})
	t.Run("renamed, next not created, then torn", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		os.Remove(rel(dir, open101))
		data, _ := os.ReadFile(rel(dir, closed))
		// Tear the only copy of entry 100 (written by the last commit).
		os.Truncate(rel(dir, closed), int64(committedValueEnds(t, data)[100]-1))
		j := openJournal(t, Options{Dir: dir, SegmentEntries: 100})
		last := j.LastSequence()
		if last >= 100 {
			t.Fatalf("LastSequence %d after tearing the tail", last)
		}
		sameEntries(t, replayAll(t, j, 0), want[:last])
		files := logFiles(t, dir)
		wantFiles := []string{closedSegmentName(1, last), openSegmentName(last + 1)}
		if last == 0 { // nothing survived: the file is gone
			wantFiles = wantFiles[1:]
		}
		if strings.Join(files, " ") != strings.Join(wantFiles, " ") {
			t.Fatalf("logs after cutting a closed tail to %d: %v", last, files)
		}
	})
	t.Run("rewrite done, source not removed", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		os.Remove(rel(dir, open101))
		b, _ := os.ReadFile(rel(dir, closed))
		os.WriteFile(rel(dir, open1), b, 0o644)
		os.WriteFile(filepath.Join(dir, "logs", ".tmp-00000000000000000001-00000000000000000100.bolt"), []byte("junk"), 0o644)
		check(t, dir)
	})
	t.Run("open segment created but empty", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		os.WriteFile(rel(dir, open101), nil, 0o644) // crash before bbolt initialised it
		check(t, dir)
	})
}

// TestGarbledLeafPageIsCut garbles the element header of the leaf page that
// holds the newest entries, so that bbolt itself follows a wild offset. The
// read must come back as an error (a fault turned into a panic and
// recovered, or a garbage key), never a crash, and the tail is cut.
func TestGarbledLeafPageIsCut(t *testing.T) {
	// 2 GiB trips bbolt's own bounds check; 64 MiB points past the mapping
	// (a memory fault, which debug.SetPanicOnFault turns into a panic).
	for _, pos := range []uint32{0x7ffffff0, 64 << 20} {
		t.Run(fmt.Sprintf("pos=%#x", pos), func(t *testing.T) { garbleLeaf(t, pos) })
	}
}

func garbleLeaf(t *testing.T, pos uint32) {
	dir := t.TempDir()
	want := buildTail(t, dir)
	n := int64(len(want))
	path := filepath.Join(dir, "logs", "00000000000000000101-open.bolt")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := (committedValueEnds(t, data)[n] - 1) / segmentPageSize * segmentPageSize
	if le.Uint16(data[page+8:]) != leafPageFlag {
		t.Fatalf("page at %d is not a leaf", page)
	}
	count := int(le.Uint16(data[page+10:]))
	for i := 0; i < count; i++ {
		eo := page + pageHeaderSize + i*leafElemSize
		le.PutUint32(data[eo+4:], pos) // key position, relative to the element
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	log, logs := observed(zapcore.InfoLevel)
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 1000, Logger: log})
	last := j.LastSequence()
	if last >= n {
		t.Fatalf("LastSequence %d: the garbled page went unnoticed", last)
	}
	sameEntries(t, replayAll(t, j, 0), want[:last])
	cut := logs.FilterMessage("journal: cut the torn/corrupt tail of the journal").All()
	if len(cut) != 1 {
		t.Fatalf("want one cut log line, got %v", logs.All())
	}
	t.Logf("garbled %d elements of page %d: cut to %d: %v", count, page/segmentPageSize, last, cut[0].ContextMap())
}
