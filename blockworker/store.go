package blockworker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Errors of the store, mapped to gRPC codes by the service.
var (
	ErrNoSpace  = errors.New("no room in any tier")
	ErrExists   = errors.New("block already cached")
	ErrNotFound = errors.New("block not cached")
	ErrBusy     = errors.New("block in use")
	ErrWriting  = errors.New("block is being written")
)

// TierSpec is one configured tier.
type TierSpec struct {
	Alias string // MEM, SSD or HDD
	Dir   string
	Quota int64
}

// tierRank orders aliases from the fastest tier down.
func tierRank(alias string) int {
	switch alias {
	case "MEM":
		return 0
	case "SSD":
		return 1
	default:
		return 2
	}
}

type tier struct {
	alias string
	dir   string
	// dirFD is dir held open (-1: none, or the store closed): unnamed
	// block files are made relative to it (openAnon).
	dirFD atomic.Int32
	quota int64
	// used counts committed blocks, reservations of blocks being written,
	// and removed blocks whose files a lease still keeps.
	used int64
}

func (t *tier) free() int64 { return t.quota - t.used }

// block is a committed block.
type block struct {
	id      int64
	length  int64
	tier    *tier
	path    string
	pinned  bool
	refs    int  // open readers and leases: never evicted while > 0
	leases  int  // short-circuit leases: the path must stay valid
	moving  bool // a MoveBlock copy is in flight
	removed bool
}

// BlockMeta describes a committed block.
type BlockMeta struct {
	ID     int64
	Length int64
	Tier   string
	Pinned bool
}

// TierStat is one tier alias's capacity and use (tiers sharing an alias
// are summed).
type TierStat struct {
	Alias    string
	Capacity int64
	Used     int64
}

// Listener hears about blocks becoming visible and going away, with the
// store's lock held: it must not call back into the store.
type Listener interface {
	BlockAdded(m BlockMeta)
	BlockRemoved(id int64)
}

// Store is a worker's tiered block cache. A block is one file in a tier
// directory, named by its id ("<id>", or "<id>.pin" when pinned). A block
// being written is, where the tier's file system keeps a file's sticky
// bit, a file under its final name with that bit set (writeInPlace),
// cleared by Commit; else an unnamed file (O_TMPFILE) linked into place by
// Commit, or a file under the tier's .tmp directory renamed into place.
// Either way a block file found at start is whole and committed: one with
// the sticky bit is a write cut short, and is removed. Readers and the
// block report see a block only once committed.
type Store struct {
	log *zap.Logger

	mu       sync.Mutex
	tiers    []*tier // fastest first
	blocks   map[int64]*block
	writing  map[int64]*TempBlock
	doomed   map[int64]*block // removed while leased
	ev       Evictor
	listener Listener

	evictions int64
	noAnon    atomic.Bool // a tier refused O_TMPFILE: use named temp files
	// noInPlace: a tier does not keep the sticky bit on a file (or the
	// store was told not to): blocks are written aside and named at commit.
	noInPlace atomic.Bool
}

const tmpDir = ".tmp"

// OpenStore opens (creating) the tier directories, drops leftover temp
// files of blocks that were being written, and indexes the blocks found,
// oldest first for the evictor.
func OpenStore(specs []TierSpec, ev Evictor, log *zap.Logger) (*Store, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("block store: no tiers configured (worker.tiers)")
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Store{log: log, blocks: map[int64]*block{}, writing: map[int64]*TempBlock{}, doomed: map[int64]*block{}, ev: ev}
	sorted := append([]TierSpec(nil), specs...)
	sort.SliceStable(sorted, func(i, j int) bool { return tierRank(sorted[i].Alias) < tierRank(sorted[j].Alias) })
	type found struct {
		b     *block
		mtime time.Time
	}
	var all []found
	for _, sp := range sorted {
		if sp.Quota <= 0 {
			return nil, fmt.Errorf("block store: tier %s at %s: quota must be > 0", sp.Alias, sp.Dir)
		}
		dir, err := filepath.Abs(sp.Dir)
		if err != nil {
			return nil, fmt.Errorf("block store: tier %s dir %q: %w", sp.Alias, sp.Dir, err)
		}
		for _, t := range s.tiers {
			if t.dir == dir {
				return nil, fmt.Errorf("block store: tiers %s and %s share the directory %s", t.alias, sp.Alias, dir)
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, tmpDir), 0o755); err != nil {
			return nil, fmt.Errorf("block store: tier %s: %w", sp.Alias, err)
		}
		// Blocks that were being written when the worker stopped are lost.
		tmps, _ := os.ReadDir(filepath.Join(dir, tmpDir))
		for _, e := range tmps {
			_ = os.RemoveAll(filepath.Join(dir, tmpDir, e.Name()))
		}
		if len(tmps) > 0 {
			log.Info("removed stale temp blocks", zap.String("tier", sp.Alias), zap.Int("count", len(tmps)))
		}
		t := &tier{alias: sp.Alias, dir: dir, quota: sp.Quota}
		t.dirFD.Store(int32(openDirFD(dir)))
		s.tiers = append(s.tiers, t)
		if !s.noAnon.Load() && !anonWorks(t) {
			s.noAnon.Store(true)
			log.Info("blocks are written under temporary names (no O_TMPFILE or /proc here)", zap.String("tier", sp.Alias))
		}
		if !s.noInPlace.Load() && !inPlaceWorks(t) {
			s.noInPlace.Store(true)
			log.Info("blocks are written aside and named at commit (the tier keeps no sticky bit on files)", zap.String("tier", sp.Alias))
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("block store: tier %s: %w", sp.Alias, err)
		}
		cut := 0
		for _, e := range ents {
			id, pinned, ok := parseBlockName(e.Name())
			if !ok || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if fi.Mode()&os.ModeSticky != 0 {
				// Written in place and never committed (writeInPlace): the
				// worker stopped mid-write, so the bytes may be partial.
				_ = os.Remove(p)
				cut++
				continue
			}
			if _, dup := s.blocks[id]; dup {
				// A copy left by an interrupted move: keep the faster one.
				_ = os.Remove(p)
				continue
			}
			b := &block{id: id, length: fi.Size(), tier: t, path: p, pinned: pinned}
			s.blocks[id] = b
			t.used += b.length
			all = append(all, found{b, fi.ModTime()})
		}
		if cut > 0 {
			log.Info("removed blocks whose write was cut short", zap.String("tier", sp.Alias), zap.Int("count", cut))
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, f := range all {
		ev.Add(f.b.id)
	}
	// A quota lowered since the last run: evict down to it.
	for _, t := range s.tiers {
		if t.used > t.quota {
			s.evictFor(t, 0)
		}
	}
	return s, nil
}

// Close lets go of the tier directories the store holds open; blocks are
// still written after it (by path), but the store's owner is done with it.
func (s *Store) Close() {
	for _, t := range s.tiers {
		if fd := t.dirFD.Swap(-1); fd >= 0 {
			closeDirFD(int(fd))
		}
	}
}

// SetListener installs the listener (before the store is shared).
func (s *Store) SetListener(l Listener) {
	s.mu.Lock()
	s.listener = l
	s.mu.Unlock()
}

func parseBlockName(name string) (id int64, pinned bool, ok bool) {
	base := strings.TrimSuffix(name, ".pin")
	pinned = base != name
	id, err := strconv.ParseInt(base, 10, 64)
	if err != nil || id < 0 || strconv.FormatInt(id, 10) != base {
		return 0, false, false
	}
	return id, pinned, true
}

func blockPath(t *tier, id int64, pinned bool) string {
	// filepath.Join(t.dir, name) built in one allocation (every block
	// written makes one): t.dir is absolute and clean (filepath.Abs).
	var buf [128]byte
	b := append(buf[:0], t.dir...)
	if !strings.HasSuffix(t.dir, "/") {
		b = append(b, '/')
	}
	b = strconv.AppendInt(b, id, 10)
	if pinned {
		b = append(b, ".pin"...)
	}
	return string(b)
}

func (s *Store) tierByAlias(alias string) *tier {
	for _, t := range s.tiers {
		if t.alias == alias {
			return t
		}
	}
	return nil
}

func (s *Store) evictable(b *block) bool { return !b.pinned && b.refs == 0 && !b.moving }

// evictFor evicts least recently used blocks of t until it has n bytes
// free. It evicts nothing and returns false when that is impossible.
func (s *Store) evictFor(t *tier, n int64) bool {
	if t.free() >= n {
		return true
	}
	var can int64
	for _, b := range s.blocks {
		if b.tier == t && s.evictable(b) {
			can += b.length
		}
	}
	if t.free()+can < n {
		return false
	}
	for id := range s.ev.Victims() {
		b := s.blocks[id]
		if b == nil || b.tier != t || !s.evictable(b) {
			continue
		}
		s.dropLocked(b)
		s.evictions++
		s.log.Debug("evicted block", zap.Int64("block", id), zap.String("tier", t.alias), zap.Int64("bytes", b.length))
		if t.free() >= n {
			return true
		}
	}
	return t.free() >= n
}

// dropLocked makes b invisible and deletes its file unless a lease still
// needs the path.
func (s *Store) dropLocked(b *block) {
	delete(s.blocks, b.id)
	s.ev.Remove(b.id)
	b.removed = true
	if s.listener != nil {
		s.listener.BlockRemoved(b.id)
	}
	if b.leases > 0 {
		s.doomed[b.id] = b
		return
	}
	s.unlinkLocked(b)
}

func (s *Store) unlinkLocked(b *block) {
	if b.path != "" {
		if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove block file", zap.String("path", b.path), zap.Error(err))
		}
		b.path = ""
	}
	b.tier.used -= b.length
}

// allocate reserves n bytes in the preferred tier, else the fastest tier
// with room, else the fastest tier where eviction makes room.
func (s *Store) allocate(n int64, alias string) (*tier, error) {
	cands := s.tiers
	if alias != "" {
		pref := s.tierByAlias(alias)
		if pref == nil {
			return nil, fmt.Errorf("tier %q: %w", alias, errUnknownTier)
		}
		cands = append([]*tier{pref}, cands...)
	}
	for _, t := range cands {
		if t.free() >= n {
			t.used += n
			return t, nil
		}
	}
	for _, t := range cands {
		if s.evictFor(t, n) {
			t.used += n
			return t, nil
		}
	}
	return nil, s.noSpace(n)
}

var errUnknownTier = errors.New("no such tier on this worker")

// roomiest returns the tier (alias first when it has as much) with the
// most bytes free or evictable, nil when none has any. Call with s.mu held.
func (s *Store) roomiest(alias string) *tier {
	// One pass over the blocks for every tier's evictable bytes (this runs
	// on a write into a full worker, under s.mu).
	evictable := make(map[*tier]int64, len(s.tiers))
	for _, b := range s.blocks {
		if s.evictable(b) {
			evictable[b.tier] += b.length
		}
	}
	best := s.tierByAlias(alias)
	var room int64
	if best != nil {
		room = best.free() + evictable[best]
	}
	for _, t := range s.tiers {
		if r := t.free() + evictable[t]; r > room {
			best, room = t, r
		}
	}
	if room <= 0 {
		return nil
	}
	return best
}

// SetPinned pins block id (never evicted: it is pinned, or the only copy
// of bytes not in the UFS, as the FS master says) or unpins it. The file
// is renamed to match ("<id>.pin"), so the pin survives a restart; a
// leased block keeps its path until its leases end.
func (s *Store) SetPinned(id int64, pinned bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blocks[id]
	if b == nil {
		return fmt.Errorf("block %d: %w", id, ErrNotFound)
	}
	if b.pinned == pinned {
		return nil
	}
	b.pinned = pinned
	s.renameForPinLocked(b)
	if s.listener != nil {
		s.listener.BlockAdded(BlockMeta{ID: id, Length: b.length, Tier: b.tier.alias, Pinned: pinned})
	}
	return nil
}

// renameForPinLocked gives b's file the name its pin says, unless a lease
// holds the path (Unlease renames it later) or a move is copying it (the
// move names the copy).
func (s *Store) renameForPinLocked(b *block) {
	want := blockPath(b.tier, b.id, b.pinned)
	if b.path == "" || b.path == want || b.leases > 0 || b.moving {
		return
	}
	if err := os.Rename(b.path, want); err != nil {
		s.log.Warn("rename block file for its pin", zap.Int64("block", b.id), zap.String("path", b.path), zap.Error(err))
		return
	}
	b.path = want
}

func (s *Store) noSpace(n int64) error {
	var parts []string
	for _, t := range s.tiers {
		var pinned, inUse, stored int64
		for _, b := range s.blocks {
			if b.tier != t {
				continue
			}
			stored += b.length
			if b.pinned {
				pinned += b.length
			} else if b.refs > 0 || b.moving {
				inUse += b.length
			}
		}
		for _, b := range s.doomed {
			if b.tier == t {
				stored += b.length // removed, space held until its leases end
			}
		}
		// What is used but not in a block is reserved by blocks being
		// written or filled: space that cannot be evicted either.
		parts = append(parts, fmt.Sprintf("%s %d/%d used, %d pinned, %d in use, %d reserved by writes in progress",
			t.alias, t.used, t.quota, pinned, inUse, max(t.used-stored, 0)))
	}
	return fmt.Errorf("%w for %d bytes (%s)", ErrNoSpace, n, strings.Join(parts, "; "))
}

// TempBlock is a block being written. Readers cannot see it until Commit.
type TempBlock struct {
	s        *Store
	id       int64
	t        *tier
	pinned   bool
	path     string // for an unnamed file (anon), its /proc/self/fd name
	anon     bool
	inPlace  bool // written under its final name, sticky until Commit
	f        blockFile
	reserved int64
	written  int64
	done     bool
}

// Create starts writing block id, reserving hint bytes (the write grows the
// reservation as needed) in the tier alias, or the fastest tier with room.
// hint is the block's length as far as the caller knows it: when it does
// not fit, the block does not.
func (s *Store) Create(id int64, hint int64, alias string, pinned bool) (*TempBlock, error) {
	return s.create(id, hint, alias, pinned, false)
}

// CreateUpTo is Create for a block that is at most hint long (a client's
// block size: its last block is shorter): when hint does not fit, it starts
// in the tier with the most room, reserving nothing, and fails only when
// the bytes written outgrow the room.
func (s *Store) CreateUpTo(id int64, hint int64, alias string, pinned bool) (*TempBlock, error) {
	return s.create(id, hint, alias, pinned, true)
}

func (s *Store) create(id int64, hint int64, alias string, pinned, upTo bool) (*TempBlock, error) {
	s.mu.Lock()
	// A hint beyond every tier (a big block size, a small quota) would fail
	// before a byte is written; the reservation grows as bytes come instead.
	var biggest int64
	for _, t := range s.tiers {
		biggest = max(biggest, t.quota)
	}
	hint = min(max(hint, 0), biggest)
	if _, ok := s.blocks[id]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("block %d: %w", id, ErrExists)
	}
	if _, ok := s.writing[id]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("block %d: %w", id, ErrWriting)
	}
	t, err := s.allocate(hint, alias)
	if upTo && errors.Is(err, ErrNoSpace) && hint > 0 {
		if t = s.roomiest(alias); t != nil {
			hint, err = 0, nil
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("block %d: %w", id, err)
	}
	tb := &TempBlock{s: s, id: id, t: t, pinned: pinned, reserved: hint}
	s.writing[id] = tb
	s.mu.Unlock()

	f, err := s.openTemp(tb)
	if err != nil {
		s.mu.Lock()
		delete(s.writing, id)
		t.used -= hint
		s.mu.Unlock()
		return nil, fmt.Errorf("block %d: create in tier %s: %w", id, t.alias, err)
	}
	tb.f = f
	return tb, nil
}

// blockFile is a block being written: an *os.File, or a bare descriptor
// (rawFile) for the unnamed files of the small-file path.
type blockFile interface {
	Write(p []byte) (int, error)
	Close() error
}

// openTemp opens the file tb is written to: under its final name, marked
// as being written, when the tier allows (writeInPlace) and the name is
// free; else unnamed when the tier allows; else under a fresh name in the
// tier's temp dir.
func (s *Store) openTemp(tb *TempBlock) (blockFile, error) {
	if !s.noInPlace.Load() {
		final := blockPath(tb.t, tb.id, tb.pinned)
		if f, ok := writeInPlace(int(tb.t.dirFD.Load()), filepath.Base(final), final); ok {
			tb.path, tb.inPlace = final, true
			return f, nil
		}
		// The name is taken (a removed block a lease still holds) or the
		// tier refused: write aside, the commit replaces the file.
	}
	if !s.noAnon.Load() {
		if f, path, ok := openAnon(tb.t.dir, int(tb.t.dirFD.Load())); ok {
			tb.path, tb.anon = path, true
			return f, nil
		}
		s.noAnon.Store(true)
	}
	tb.path = tempName(tb.t, tb.id, "")
	return os.OpenFile(tb.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
}

// inPlaceWorks tries a block file written in place in t's temp dir: the
// file system must keep the sticky bit the file is made with, and clear it.
func inPlaceWorks(t *tier) bool {
	probe := tempName(t, 0, "probe-")
	f, ok := writeInPlace(-1, "", probe)
	if !ok {
		return false
	}
	defer os.Remove(probe)
	fi, err := os.Stat(probe)
	if err != nil || fi.Mode()&os.ModeSticky == 0 {
		f.Close()
		return false
	}
	if err := sealInPlace(f); err != nil {
		f.Close()
		return false
	}
	f.Close()
	fi, err = os.Stat(probe)
	return err == nil && fi.Mode()&os.ModeSticky == 0
}

// anonWorks tries an unnamed file and its link in t's temp dir: some file
// systems lack O_TMPFILE, and the link needs /proc.
func anonWorks(t *tier) bool {
	f, path, ok := openAnon(t.dir, int(t.dirFD.Load()))
	if !ok {
		return false
	}
	defer f.Close()
	probe := tempName(t, 0, "probe-")
	if err := linkAnon(f, path, -1, "", probe); err != nil {
		return false
	}
	_ = os.Remove(probe)
	return true
}

// tempName is a fresh name for block id in t's temp dir.
func tempName(t *tier, id int64, what string) string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return filepath.Join(t.dir, tmpDir, fmt.Sprintf("%d-%s%s", id, what, hex.EncodeToString(rnd[:])))
}

// ID returns the block id.
func (tb *TempBlock) ID() int64 { return tb.id }

// Tier returns the tier the block is written to.
func (tb *TempBlock) Tier() string { return tb.t.alias }

// Path returns the temp file (for readers of a fill in progress).
func (tb *TempBlock) Path() string { return tb.path }

// Written returns the bytes written so far.
func (tb *TempBlock) Written() int64 { return tb.written }

// Write appends p, growing the reservation (evicting if need be).
func (tb *TempBlock) Write(p []byte) (int, error) {
	if tb.done {
		return 0, fmt.Errorf("block %d: write after commit or abort", tb.id)
	}
	if need := tb.written + int64(len(p)) - tb.reserved; need > 0 {
		grow := max(need, 4<<20)
		if err := tb.s.grow(tb, grow); err != nil {
			if err = tb.s.grow(tb, need); err != nil {
				return 0, fmt.Errorf("block %d: %w", tb.id, err)
			}
		}
	}
	n, err := tb.f.Write(p)
	tb.written += int64(n)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: tier %s disk full: %v", ErrNoSpace, tb.t.alias, err)
		}
		return n, fmt.Errorf("block %d: %w", tb.id, err)
	}
	return n, nil
}

func (s *Store) grow(tb *TempBlock, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.evictFor(tb.t, n) {
		return fmt.Errorf("tier %s: %w", tb.t.alias, s.noSpace(n))
	}
	tb.t.used += n
	tb.reserved += n
	return nil
}

// Commit makes the block visible: its file is renamed into the tier dir.
func (tb *TempBlock) Commit() (BlockMeta, error) {
	if tb.done {
		return BlockMeta{}, fmt.Errorf("block %d: already committed or aborted", tb.id)
	}
	tb.done = true
	if tb.inPlace {
		return tb.commitInPlace()
	}
	if !tb.anon {
		if err := tb.f.Close(); err != nil {
			tb.release()
			return BlockMeta{}, fmt.Errorf("block %d: close: %w", tb.id, err)
		}
	} else {
		// An unnamed file lives while open: it is closed once linked.
		defer tb.f.Close()
	}
	s := tb.s
	final := blockPath(tb.t, tb.id, tb.pinned)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, exists := s.blocks[tb.id]
	if d := s.doomed[tb.id]; !exists && d == nil {
		// The usual case: name the file without holding the store lock
		// (a link is a syscall; every other fill and read waits on the
		// lock). The id stays in s.writing meanwhile, so no other block
		// of this id can appear.
		s.mu.Unlock()
		err := tb.publish(final)
		s.mu.Lock()
		delete(s.writing, tb.id)
		if err != nil {
			tb.removeTemp()
			tb.t.used -= tb.reserved
			return BlockMeta{}, fmt.Errorf("block %d: commit: %w", tb.id, err)
		}
	} else {
		delete(s.writing, tb.id)
		if exists {
			tb.removeTemp()
			tb.t.used -= tb.reserved
			return BlockMeta{}, fmt.Errorf("block %d: %w", tb.id, ErrExists)
		}
		if d.path == final {
			// The new file replaces the removed block's, which its lease
			// holders keep open; its space is returned when the lease ends.
			d.path = ""
		}
		if err := tb.publish(final); err != nil {
			tb.removeTemp()
			tb.t.used -= tb.reserved
			return BlockMeta{}, fmt.Errorf("block %d: commit: %w", tb.id, err)
		}
	}
	return tb.addLocked(final), nil
}

// commitInPlace commits a block written under its final name: clearing
// its sticky bit says it is whole (a restart keeps it from then on).
func (tb *TempBlock) commitInPlace() (BlockMeta, error) {
	err := sealInPlace(tb.f)
	if cerr := tb.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.release()
		return BlockMeta{}, fmt.Errorf("block %d: commit: %w", tb.id, err)
	}
	s := tb.s
	s.mu.Lock()
	defer s.mu.Unlock()
	// No other block of this id can have appeared: the id was in
	// s.writing all along, and the name was free when the write began.
	delete(s.writing, tb.id)
	return tb.addLocked(tb.path), nil
}

// addLocked enters the committed block, its file at final, in the store.
func (tb *TempBlock) addLocked(final string) BlockMeta {
	s := tb.s
	tb.t.used += tb.written - tb.reserved
	b := &block{id: tb.id, length: tb.written, tier: tb.t, path: final, pinned: tb.pinned}
	s.blocks[tb.id] = b
	s.ev.Add(tb.id)
	m := BlockMeta{ID: tb.id, Length: tb.written, Tier: tb.t.alias, Pinned: tb.pinned}
	if s.listener != nil {
		s.listener.BlockAdded(m)
	}
	return m
}

// Abort drops the block being written.
func (tb *TempBlock) Abort() {
	if tb.done {
		return
	}
	tb.done = true
	tb.f.Close()
	tb.release()
}

// publish gives the written file its block name, replacing a file there.
func (tb *TempBlock) publish(final string) error {
	if !tb.anon {
		return os.Rename(tb.path, final)
	}
	// final is a name in the tier's directory (blockPath): linked relative
	// to the descriptor the store holds of it.
	err := linkAnon(tb.f, tb.path, int(tb.t.dirFD.Load()), filepath.Base(final), final)
	if !errors.Is(err, os.ErrExist) {
		return err
	}
	// A leftover file has the name (a removed block still leased): link
	// under a temp name and rename over it, which replaces atomically.
	tmp := tempName(tb.t, tb.id, "link-")
	if err := linkAnon(tb.f, tb.path, -1, "", tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// removeTemp drops the file written (an unnamed one goes with its close;
// one written in place is removed from its final name, which no other
// block of the id can hold while this one is being written).
func (tb *TempBlock) removeTemp() {
	if !tb.anon {
		_ = os.Remove(tb.path)
	}
}

func (tb *TempBlock) release() {
	tb.removeTemp()
	tb.s.mu.Lock()
	delete(tb.s.writing, tb.id)
	tb.t.used -= tb.reserved
	tb.s.mu.Unlock()
}

// Handle is an open committed block; the block is not evicted while it is
// held. Release it when done.
type Handle struct {
	s      *Store
	b      *block
	File   *os.File
	Length int64
	Tier   string
	once   sync.Once
}

// ReadAt reads from the block file.
func (h *Handle) ReadAt(p []byte, off int64) (int, error) { return h.File.ReadAt(p, off) }

// Release closes the handle.
func (h *Handle) Release() {
	h.once.Do(func() {
		h.File.Close()
		h.s.mu.Lock()
		h.b.refs--
		h.s.mu.Unlock()
	})
}

// Open opens a committed block for reading and marks it used (for LRU).
func (s *Store) Open(id int64) (*Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blocks[id]
	if b == nil {
		return nil, fmt.Errorf("block %d: %w", id, ErrNotFound)
	}
	f, err := os.Open(b.path)
	if err != nil {
		return nil, fmt.Errorf("block %d: open %s: %w", id, b.path, err)
	}
	b.refs++
	s.ev.Touch(id)
	return &Handle{s: s, b: b, File: f, Length: b.length, Tier: b.tier.alias}, nil
}

// Lease keeps block id's file at its path (no eviction, no move) until
// Unlease, for a short-circuit reader on this host.
func (s *Store) Lease(id int64) (path string, length int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blocks[id]
	if b == nil {
		return "", 0, fmt.Errorf("block %d: %w", id, ErrNotFound)
	}
	b.refs++
	b.leases++
	s.ev.Touch(id)
	return b.path, b.length, nil
}

// Unlease ends one lease of block id taken by Lease.
func (s *Store) Unlease(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A removed copy still leased ends its leases first: they are older
	// than any lease of the block cached again under the same id (leases
	// are counted per id, so which one ended cannot be told; the counts
	// come out right either way, only the old file may go a little late).
	b := s.doomed[id]
	if b == nil || b.leases == 0 {
		b = s.blocks[id]
	}
	if b == nil || b.leases == 0 {
		return
	}
	b.refs--
	b.leases--
	if b.removed && b.leases == 0 {
		delete(s.doomed, id)
		s.unlinkLocked(b)
	} else if b.leases == 0 {
		s.renameForPinLocked(b) // a pin changed while leased
	}
}

// Remove drops block id, pinned or not. Open readers keep reading their
// open file; leased paths stay until the leases end.
func (s *Store) Remove(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blocks[id]
	if b == nil {
		return fmt.Errorf("block %d: %w", id, ErrNotFound)
	}
	s.dropLocked(b)
	return nil
}

// Move moves block id to the tier alias (making room there by eviction).
// Readers with the block open keep reading; a leased block is not moved.
func (s *Store) Move(id int64, alias string) error {
	s.mu.Lock()
	b := s.blocks[id]
	if b == nil {
		s.mu.Unlock()
		return fmt.Errorf("block %d: %w", id, ErrNotFound)
	}
	dst := s.tierByAlias(alias)
	switch {
	case dst == nil:
		s.mu.Unlock()
		return fmt.Errorf("block %d: tier %q: %w", id, alias, errUnknownTier)
	case dst == b.tier:
		s.mu.Unlock()
		return nil
	case b.leases > 0 || b.moving:
		s.mu.Unlock()
		return fmt.Errorf("block %d: %w (leased or moving)", id, ErrBusy)
	}
	b.moving = true // not evictable while we reserve and copy
	if !s.evictFor(dst, b.length) {
		b.moving = false
		err := s.noSpace(b.length)
		s.mu.Unlock()
		return fmt.Errorf("block %d: move to %s: %w", id, alias, err)
	}
	dst.used += b.length
	src := b.path
	s.mu.Unlock()

	tmp := tempName(dst, id, "move-")
	err := copyFile(src, tmp)

	s.mu.Lock()
	defer s.mu.Unlock()
	b.moving = false
	if err == nil && (b.removed || b.leases > 0) {
		err = fmt.Errorf("block %d: %w (removed or leased during the move)", id, ErrBusy)
	}
	final := blockPath(dst, id, b.pinned)
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		dst.used -= b.length
		return fmt.Errorf("block %d: move to %s: %w", id, alias, err)
	}
	_ = os.Remove(src)
	b.tier.used -= b.length
	b.tier, b.path = dst, final
	if s.listener != nil {
		s.listener.BlockAdded(BlockMeta{ID: id, Length: b.length, Tier: dst.alias, Pinned: b.pinned})
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Has reports whether block id is cached (committed).
func (s *Store) Has(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocks[id] != nil
}

// Stat returns a committed block's metadata.
func (s *Store) Stat(id int64) (BlockMeta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blocks[id]
	if b == nil {
		return BlockMeta{}, false
	}
	return BlockMeta{ID: id, Length: b.length, Tier: b.tier.alias, Pinned: b.pinned}, true
}

// TopTier returns the fastest tier's alias.
func (s *Store) TopTier() string { return s.tiers[0].alias }

// Usage returns capacity and use per tier alias, fastest first.
func (s *Store) Usage() []TierStat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usageLocked()
}

func (s *Store) usageLocked() []TierStat {
	var out []TierStat
	for _, t := range s.tiers {
		if n := len(out); n > 0 && out[n-1].Alias == t.alias {
			out[n-1].Capacity += t.quota
			out[n-1].Used += t.used
			continue
		}
		out = append(out, TierStat{Alias: t.alias, Capacity: t.quota, Used: t.used})
	}
	return out
}

// Report returns every committed block and the tier usage in one snapshot;
// then, still under the store's lock, it calls after (which may reset a
// listener's deltas that the snapshot supersedes).
func (s *Store) Report(after func()) ([]BlockMeta, []TierStat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BlockMeta, 0, len(s.blocks))
	for _, b := range s.blocks {
		out = append(out, BlockMeta{ID: b.id, Length: b.length, Tier: b.tier.alias, Pinned: b.pinned})
	}
	if after != nil {
		after()
	}
	return out, s.usageLocked()
}

// Count returns the number of committed blocks.
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blocks)
}

// Evictions returns how many blocks were evicted since the store opened.
func (s *Store) Evictions() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evictions
}
