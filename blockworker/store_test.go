package blockworker

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

const mib = 1 << 20

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func openStore(t *testing.T, specs ...TierSpec) *Store {
	t.Helper()
	s, err := OpenStore(specs, NewLRU(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func putBlock(t *testing.T, s *Store, id int64, data []byte, tier string, pinned bool) BlockMeta {
	t.Helper()
	tb, err := s.Create(id, int64(len(data)), tier, pinned)
	if err != nil {
		t.Fatalf("create block %d: %v", id, err)
	}
	if _, err := tb.Write(data); err != nil {
		t.Fatalf("write block %d: %v", id, err)
	}
	m, err := tb.Commit()
	if err != nil {
		t.Fatalf("commit block %d: %v", id, err)
	}
	return m
}

func readBlock(t *testing.T, s *Store, id int64) []byte {
	t.Helper()
	h, err := s.Open(id)
	if err != nil {
		t.Fatalf("open block %d: %v", id, err)
	}
	defer h.Release()
	b := make([]byte, h.Length)
	if _, err := h.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

func tierOf(s *Store, id int64) string {
	m, ok := s.Stat(id)
	if !ok {
		return ""
	}
	return m.Tier
}

func TestTierPlacement(t *testing.T) {
	dir := t.TempDir()
	// Given out of order: the store still fills MEM first.
	s := openStore(t,
		TierSpec{Alias: "HDD", Dir: filepath.Join(dir, "hdd"), Quota: 10 * mib},
		TierSpec{Alias: "MEM", Dir: filepath.Join(dir, "mem"), Quota: 3 * mib},
	)
	for id := int64(1); id <= 5; id++ {
		putBlock(t, s, id, randBytes(mib), "", false)
	}
	for id, want := range map[int64]string{1: "MEM", 2: "MEM", 3: "MEM", 4: "HDD", 5: "HDD"} {
		if got := tierOf(s, id); got != want {
			t.Errorf("block %d in %s, want %s", id, got, want)
		}
	}
	// A preferred tier wins while it has room.
	putBlock(t, s, 6, randBytes(mib), "HDD", false)
	if got := tierOf(s, 6); got != "HDD" {
		t.Errorf("block 6 with tier HDD went to %s", got)
	}
	if _, err := s.Create(7, mib, "SSD", false); err == nil {
		t.Errorf("create in a tier the worker lacks succeeded")
	}
	u := s.Usage()
	if len(u) != 2 || u[0].Alias != "MEM" || u[0].Used != 3*mib || u[1].Used != 3*mib || u[1].Capacity != 10*mib {
		t.Errorf("usage %+v", u)
	}
	// Files land in the tier directories under their ids.
	if _, err := os.Stat(filepath.Join(dir, "mem", "1")); err != nil {
		t.Errorf("block 1 file: %v", err)
	}
	// Moving between tiers.
	if err := s.Move(1, "HDD"); err != nil {
		t.Fatal(err)
	}
	if got := tierOf(s, 1); got != "HDD" {
		t.Errorf("after move block 1 is in %s", got)
	}
	if u := s.Usage(); u[0].Used != 2*mib || u[1].Used != 4*mib {
		t.Errorf("usage after move %+v", u)
	}
}

func TestEvictionUnderSmallQuota(t *testing.T) {
	s := openStore(t, TierSpec{Alias: "MEM", Dir: t.TempDir(), Quota: 4 * mib})
	data := map[int64][]byte{}
	for id := int64(1); id <= 4; id++ {
		data[id] = randBytes(mib)
		putBlock(t, s, id, data[id], "", id == 1) // block 1 pinned
	}
	// Block 2 is being read, block 3 leased to a short-circuit reader.
	h2, err := s.Open(2)
	if err != nil {
		t.Fatal(err)
	}
	path3, _, err := s.Lease(3)
	if err != nil {
		t.Fatal(err)
	}
	// The store is full: the next block evicts block 4, the only candidate.
	putBlock(t, s, 5, randBytes(mib), "", false)
	if s.Has(4) {
		t.Errorf("block 4 (LRU, unpinned, unused) was not evicted")
	}
	for _, id := range []int64{1, 2, 3, 5} {
		if !s.Has(id) {
			t.Errorf("block %d was evicted", id)
		}
	}
	if s.Evictions() != 1 {
		t.Errorf("evictions = %d, want 1", s.Evictions())
	}
	// Touch 5 so that... nothing else is evictable except 5 itself.
	putBlock(t, s, 6, randBytes(mib), "", false)
	if s.Has(5) || !s.Has(6) {
		t.Errorf("block 5 should have made room for 6")
	}
	// Now pinned 1, read 2, leased 3 and the new 6 fill the tier; with 6 in
	// use too nothing can go.
	h6, err := s.Open(6)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Create(7, mib, "", false)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("create with only pinned and in-use blocks: %v, want ErrNoSpace", err)
	}
	t.Logf("no-space error: %v", err)
	// The pinned, read and leased blocks are intact.
	if got := readBlock(t, s, 1); !bytes.Equal(got, data[1]) {
		t.Errorf("pinned block 1 changed")
	}
	b := make([]byte, mib)
	if _, err := h2.ReadAt(b, 0); err != nil || !bytes.Equal(b, data[2]) {
		t.Errorf("block 2 read while full: %v", err)
	}
	if got, err := os.ReadFile(path3); err != nil || !bytes.Equal(got, data[3]) {
		t.Errorf("leased block 3 file: %v", err)
	}
	// Released blocks become evictable again.
	h2.Release()
	h6.Release()
	s.Unlease(3)
	putBlock(t, s, 7, randBytes(mib), "", false)
	putBlock(t, s, 8, randBytes(mib), "", false)
	putBlock(t, s, 9, randBytes(mib), "", false)
	if !s.Has(1) {
		t.Errorf("pinned block 1 evicted")
	}
	if u := s.Usage(); u[0].Used > 4*mib {
		t.Errorf("quota exceeded: %+v", u)
	}
}

func TestLRUOrder(t *testing.T) {
	s := openStore(t, TierSpec{Alias: "MEM", Dir: t.TempDir(), Quota: 3 * mib})
	for id := int64(1); id <= 3; id++ {
		putBlock(t, s, id, randBytes(mib), "", false)
	}
	readBlock(t, s, 1) // 2 is now the least recently used
	putBlock(t, s, 4, randBytes(mib), "", false)
	if s.Has(2) || !s.Has(1) || !s.Has(3) {
		t.Errorf("LRU evicted the wrong block: has1=%v has2=%v has3=%v", s.Has(1), s.Has(2), s.Has(3))
	}
}

// writeMode is how a store writes a block before its commit.
type writeMode int

const (
	inPlace writeMode = iota // under its final name, sticky until committed
	unnamed                  // O_TMPFILE, linked at commit
	named                    // a temp name, renamed at commit
)

func (m writeMode) String() string { return [...]string{"in-place", "unnamed", "named"}[m] }

// set makes s write its blocks m's way (before any write).
func (m writeMode) set(s *Store) {
	s.noInPlace.Store(m != inPlace)
	s.noAnon.Store(m == named)
}

// bothTempModes runs f with each way of writing a block: in place where
// the tier keeps the sticky bit, unnamed (O_TMPFILE) where the system has
// it, and with named temp files renamed on commit.
func bothTempModes(t *testing.T, f func(t *testing.T, mode writeMode)) {
	for _, m := range []writeMode{inPlace, unnamed, named} {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

func TestInvisibleUntilCommit(t *testing.T) { bothTempModes(t, testInvisibleUntilCommit) }

func testInvisibleUntilCommit(t *testing.T, mode writeMode) {
	dir := t.TempDir()
	s := openStore(t, TierSpec{Alias: "HDD", Dir: dir, Quota: 10 * mib})
	mode.set(s)
	data := randBytes(mib + 100)
	tb, err := s.Create(42, 0, "", false) // no hint: the reservation grows
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Write(data[:1000]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(42); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of a block being written: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Lease(42); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lease of a block being written: %v", err)
	}
	if s.Has(42) {
		t.Errorf("Has(42) while writing")
	}
	if fi, err := os.Stat(filepath.Join(dir, "42")); mode == inPlace && (err != nil || fi.Mode()&os.ModeSticky == 0) {
		t.Errorf("a block written in place is not under its final name marked as being written: %v, %v", fi, err)
	} else if mode != inPlace && err == nil {
		t.Errorf("the block file exists under its final name before commit")
	}
	if blocks, _ := s.Report(nil); len(blocks) != 0 {
		t.Errorf("report shows %v before commit", blocks)
	}
	if _, err := s.Create(42, 0, "", false); !errors.Is(err, ErrWriting) {
		t.Errorf("second writer of block 42: %v, want ErrWriting", err)
	}
	if _, err := tb.Write(data[1000:]); err != nil {
		t.Fatal(err)
	}
	m, err := tb.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if m.Length != int64(len(data)) {
		t.Errorf("committed length %d", m.Length)
	}
	if got := readBlock(t, s, 42); !bytes.Equal(got, data) {
		t.Errorf("read back differs")
	}
	if u := s.Usage(); u[0].Used != int64(len(data)) {
		t.Errorf("used %d after commit, want %d (reservation trimmed)", u[0].Used, len(data))
	}
	if _, err := s.Create(42, 0, "", false); !errors.Is(err, ErrExists) {
		t.Errorf("create of a cached block: %v, want ErrExists", err)
	}
	// An aborted write leaves nothing, space included.
	tb, err = s.Create(43, 2*mib, "", false)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tb.Write(randBytes(100))
	tb.Abort()
	if s.Has(43) {
		t.Errorf("aborted block visible")
	}
	if u := s.Usage(); u[0].Used != int64(len(data)) {
		t.Errorf("used %d after abort", u[0].Used)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Errorf("abort left temp files %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dir, "43")); err == nil {
		t.Errorf("abort left a file under the block's name")
	}
}

// A worker killed while writing a block in place leaves the file under the
// block's name, marked as being written: the next start removes it, and
// keeps the blocks committed (kill -9 loses no committed block and never
// serves a partial one).
func TestInPlaceWriteCutShortIsDroppedAtStart(t *testing.T) {
	dir := t.TempDir()
	spec := TierSpec{Alias: "MEM", Dir: dir, Quota: 10 * mib}
	s := openStore(t, spec)
	if s.noInPlace.Load() {
		t.Skip("this file system keeps no sticky bit on files")
	}
	whole := randBytes(3000)
	putBlock(t, s, 1, whole, "", false)
	putBlock(t, s, 2, whole, "", true)
	tb, err := s.Create(3, 4096, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Write(randBytes(1000)); err != nil {
		t.Fatal(err)
	}
	tbPin, err := s.Create(4, 4096, "", true)
	if err != nil {
		t.Fatal(err)
	}
	// The process dies here: no commit, no abort, the files stay as they
	// are (closing a descriptor changes nothing on disk).
	tb.f.Close()
	tbPin.f.Close()
	s.Close()
	for _, name := range []string{"3", "4.pin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("the cut-short write's file %s: %v", name, err)
		}
	}

	s2 := openStore(t, spec)
	if s2.Has(3) || s2.Has(4) {
		t.Errorf("a block whose write was cut short is served after a restart")
	}
	for _, name := range []string{"3", "4.pin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the cut-short write's file %s is still there: %v", name, err)
		}
	}
	for _, id := range []int64{1, 2} {
		if got := readBlock(t, s2, id); !bytes.Equal(got, whole) {
			t.Errorf("committed block %d after the restart: %d bytes, not what was written", id, len(got))
		}
	}
	if u := s2.Usage(); u[0].Used != 2*int64(len(whole)) {
		t.Errorf("used %d after the restart, want %d", u[0].Used, 2*len(whole))
	}
	// The id can be cached again.
	putBlock(t, s2, 3, whole, "", false)
	if got := readBlock(t, s2, 3); !bytes.Equal(got, whole) {
		t.Errorf("block 3 cached again reads back wrong")
	}
}

func TestRestartReindexes(t *testing.T) {
	dir := t.TempDir()
	specs := []TierSpec{
		{Alias: "MEM", Dir: filepath.Join(dir, "mem"), Quota: 2 * mib},
		{Alias: "HDD", Dir: filepath.Join(dir, "hdd"), Quota: 10 * mib},
	}
	s := openStore(t, specs...)
	data := map[int64][]byte{}
	for id := int64(10); id < 14; id++ {
		data[id] = randBytes(mib / 2 * int(id-9))
		putBlock(t, s, id, data[id], "", id == 11)
	}
	// A write in flight when the worker dies.
	tb, err := s.Create(99, mib, "", false)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tb.Write(randBytes(1000))
	before, usage := s.Report(nil)

	s2 := openStore(t, specs...)
	after, usage2 := s2.Report(nil)
	sortMeta := func(m []BlockMeta) {
		slices.SortFunc(m, func(a, b BlockMeta) int { return int(a.ID - b.ID) })
	}
	sortMeta(before)
	sortMeta(after)
	if !slices.Equal(before, after) {
		t.Errorf("after restart the store reports %v, before %v", after, before)
	}
	if s2.Has(99) {
		t.Errorf("an uncommitted block survived the restart")
	}
	for _, sp := range specs {
		if ents, _ := os.ReadDir(filepath.Join(sp.Dir, tmpDir)); len(ents) != 0 {
			t.Errorf("stale temp files in %s: %v", sp.Alias, ents)
		}
	}
	if m, _ := s2.Stat(11); !m.Pinned {
		t.Errorf("pin lost across restart")
	}
	// Usage matches, minus the lost reservation of block 99.
	if usage2[0].Used+usage2[1].Used != usage[0].Used+usage[1].Used-mib {
		t.Errorf("usage before %+v after %+v", usage, usage2)
	}
	for id, want := range data {
		if got := readBlock(t, s2, id); !bytes.Equal(got, want) {
			t.Errorf("block %d differs after restart", id)
		}
	}
	// A lowered quota is enforced at open, pinned blocks kept.
	specs[1].Quota = mib
	s3 := openStore(t, specs...)
	if u := s3.Usage(); u[1].Used > mib {
		t.Errorf("quota not enforced at open: %+v", u)
	}
	if !s3.Has(11) {
		t.Errorf("pinned block 11 evicted at open")
	}
}

func TestRemoveWhileLeased(t *testing.T) { bothTempModes(t, testRemoveWhileLeased) }

func testRemoveWhileLeased(t *testing.T, mode writeMode) {
	dir := t.TempDir()
	s := openStore(t, TierSpec{Alias: "MEM", Dir: dir, Quota: 4 * mib})
	mode.set(s)
	data := randBytes(mib)
	putBlock(t, s, 5, data, "", true)
	path, _, err := s.Lease(5)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(5); err != nil {
		t.Fatal(err)
	}
	if s.Has(5) {
		t.Errorf("removed block still visible")
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Errorf("a leased path vanished on remove: %v", err)
	}
	if u := s.Usage(); u[0].Used != mib {
		t.Errorf("space of a leased removed block freed early: %+v", u)
	}
	// Cached again while the old copy is still leased: the new file takes
	// the name (replacing the old one's), the lease holder's open file is
	// untouched, and the old copy's space comes back when the lease ends.
	held, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	fresh := randBytes(mib / 2)
	putBlock(t, s, 5, fresh, "", true)
	if got := readBlock(t, s, 5); !bytes.Equal(got, fresh) {
		t.Errorf("the block cached again reads %d bytes, not the new data", len(got))
	}
	if got, err := io.ReadAll(held); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the leaseholder's open file changed: %v", err)
	}
	s.Unlease(5)
	if got := readBlock(t, s, 5); !bytes.Equal(got, fresh) {
		t.Errorf("the end of the old lease touched the new block")
	}
	if u := s.Usage(); u[0].Used != mib/2 {
		t.Errorf("used %d after the old lease ended, want %d", u[0].Used, mib/2)
	}
	if err := s.Remove(5); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file of a removed block kept after the lease: %v", err)
	}
	if u := s.Usage(); u[0].Used != 0 {
		t.Errorf("used %d after the lease ended", u[0].Used)
	}
	if err := s.Remove(5); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
}

// Readers and writers at once on one store (run with -race).
func TestStoreConcurrent(t *testing.T) {
	s := openStore(t, TierSpec{Alias: "MEM", Dir: t.TempDir(), Quota: 8 * mib})
	base := randBytes(mib)
	putBlock(t, s, 1, base, "", true)
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				h, err := s.Open(1)
				if err != nil {
					errc <- err
					return
				}
				b := make([]byte, mib)
				_, err = h.ReadAt(b, 0)
				h.Release()
				if err != nil || !bytes.Equal(b, base) {
					errc <- errors.New("reader saw wrong bytes")
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := int64(100); id < 140; id++ {
			tb, err := s.Create(id, mib/2, "", false)
			if err != nil {
				errc <- err
				return
			}
			if _, err := tb.Write(randBytes(mib / 2)); err != nil {
				errc <- err
				return
			}
			if _, err := tb.Commit(); err != nil {
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if u := s.Usage(); u[0].Used > 8*mib {
		t.Errorf("quota exceeded: %+v", u)
	}
}

// FuzzParseBlockName: block file names parse back to the id and pin they
// were made from, and nothing else parses.
func FuzzParseBlockName(f *testing.F) {
	for _, s := range []string{"0", "123", "123.pin", "-1", "01", "1.pin.pin", ".pin", "9223372036854775807", "9223372036854775808", "1e3", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, pinned, ok := parseBlockName(name)
		if !ok {
			return
		}
		if got := filepath.Base(blockPath(&tier{dir: "/x"}, id, pinned)); got != name {
			t.Errorf("%q parsed as (%d, %v), which names %q", name, id, pinned, got)
		}
	})
}

// TestSetPinned: a block pinned on the master's word is never evicted, its
// file renamed "<id>.pin" so the pin survives a restart; unpinned it may
// go again. A leased block keeps its path until the lease ends.
func TestSetPinned(t *testing.T) {
	dir := t.TempDir()
	spec := TierSpec{Alias: "MEM", Dir: filepath.Join(dir, "mem"), Quota: 2 * mib}
	s := openStore(t, spec)
	putBlock(t, s, 1, randBytes(mib), "", false)
	putBlock(t, s, 2, randBytes(mib), "", false)
	if err := s.SetPinned(1, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mem", "1.pin")); err != nil {
		t.Fatalf("pinned block file: %v", err)
	}
	// Room for a third: block 2 goes, block 1 (older, but pinned) stays.
	putBlock(t, s, 3, randBytes(mib), "", false)
	if !s.Has(1) || s.Has(2) {
		t.Fatalf("after eviction: has 1 %v, has 2 %v; want the pinned 1 kept and 2 evicted", s.Has(1), s.Has(2))
	}
	// Leased: the path a short-circuit reader got stays until Unlease.
	path, _, err := s.Lease(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPinned(1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a leased block's path changed under its reader: %v", err)
	}
	s.Unlease(1)
	if _, err := os.Stat(filepath.Join(dir, "mem", "1")); err != nil {
		t.Fatalf("unpinned block file after the lease: %v", err)
	}
	// A restart reads the pin from the name.
	if err := s.SetPinned(3, true); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, spec)
	if m, ok := s2.Stat(3); !ok || !m.Pinned {
		t.Fatalf("block 3 after a restart: %+v %v, want pinned", m, ok)
	}
	if err := s.SetPinned(42, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pin a block not held: %v", err)
	}
}

// TestCreateUpToStartsSmall: a client's block of at most a block size
// that does not fit as a whole starts in the tier with the most room and
// fails only once its bytes outgrow it — while Create with an exact
// length that does not fit fails at once (a fill then reads through).
func TestCreateUpToStartsSmall(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t,
		TierSpec{Alias: "MEM", Dir: filepath.Join(dir, "mem"), Quota: 4 * mib},
		TierSpec{Alias: "HDD", Dir: filepath.Join(dir, "hdd"), Quota: 3 * mib},
	)
	putBlock(t, s, 1, randBytes(3*mib), "", true) // MEM: 1 MiB free, nothing evictable
	if _, err := s.Create(2, 4*mib, "", false); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create of 4 MiB: %v, want ErrNoSpace", err)
	}
	tb, err := s.CreateUpTo(2, 4*mib, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Tier() != "HDD" {
		t.Fatalf("started in %s, want HDD (the most room)", tb.Tier())
	}
	if _, err := tb.Write(randBytes(2 * mib)); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Write(randBytes(2 * mib)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("outgrowing the tier: %v, want ErrNoSpace", err)
	}
	tb.Abort()
	if u := s.Usage(); u[0].Used != 3*mib || u[1].Used != 0 {
		t.Fatalf("usage after the abort %+v", u)
	}
}

// BenchmarkStoreSmallBlocks writes 4 KiB blocks (Create, Write, Commit)
// from two goroutines into one tier, each way a block can be written: the
// kernel's work per block of a small-file load.
func BenchmarkStoreSmallBlocks(b *testing.B) {
	data := randBytes(4096)
	for _, m := range []writeMode{inPlace, unnamed, named} {
		b.Run(m.String(), func(b *testing.B) {
			dir := b.TempDir()
			if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
				if d, err := os.MkdirTemp("/dev/shm", "alluvium-store-bench-"); err == nil {
					dir = d
					b.Cleanup(func() { os.RemoveAll(d) })
				}
			}
			s, err := OpenStore([]TierSpec{{Alias: "MEM", Dir: dir, Quota: 1 << 40}}, NewLRU(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			m.set(s)
			var next atomic.Int64
			b.SetParallelism(1)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tb, err := s.Create(next.Add(1), int64(len(data)), "", false)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := tb.Write(data); err != nil {
						b.Error(err)
						return
					}
					if _, err := tb.Commit(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
