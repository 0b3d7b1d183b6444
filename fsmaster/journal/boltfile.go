package journal

// Checks of bbolt files made from outside bbolt, so that a damaged file is
// never handed to bbolt's mmap (a meta page pointing past EOF would make a
// read fault with SIGBUS), and salvage of entries when bbolt cannot read
// them. The layout constants mirror go.etcd.io/bbolt's file format
// (version 2, little-endian on every platform Alluvium builds for).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
)

const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	leafElemSize     = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	metaSize         = 64 // magic, version, pageSize, flags, root(16), freelist, pgid, txid, checksum
	leafPageFlag     = 0x02
	bucketLeafFlag   = 0x01
	// segmentPageSize is fixed for segments so that salvage knows the page
	// size even when both meta pages are gone.
	segmentPageSize = 4096
)

var le = binary.LittleEndian

// boltMeta is the part of a bbolt meta page this package needs.
type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: every page in use is below it
	txid     uint64
}

// parseMeta decodes and validates the meta page at the start of p.
func parseMeta(p []byte) (boltMeta, bool) {
	if len(p) < pageHeaderSize+metaSize {
		return boltMeta{}, false
	}
	m := p[pageHeaderSize : pageHeaderSize+metaSize]
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	bm := boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if bm.pageSize < 512 || bm.pageSize > 1<<20 || bm.pageSize&(bm.pageSize-1) != 0 {
		return boltMeta{}, false
	}
	return bm, true
}

// readMetas returns the valid meta pages of the file (0, 1 or 2 of them).
func readMetas(f *os.File) []boltMeta {
	var out []boltMeta
	buf := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(buf, 0); err == nil {
		if m, ok := parseMeta(buf); ok {
			out = append(out, m)
			// The second meta page sits one page in.
			if _, err := f.ReadAt(buf, int64(m.pageSize)); err == nil {
				if m2, ok := parseMeta(buf); ok && m2.pageSize == m.pageSize {
					out = append(out, m2)
				}
			}
			return out
		}
	}
	// First meta page unreadable: look for the second at the usual sizes.
	for _, ps := range []int64{4096, 512, 1024, 2048, 8192, 16384, 32768, 65536} {
		if _, err := f.ReadAt(buf, ps); err == nil {
			if m, ok := parseMeta(buf); ok && int64(m.pageSize) == ps {
				return append(out, m)
			}
		}
	}
	return out
}

// checkBoltFile reports whether bbolt may safely map the file: the meta
// page bbolt would pick (the valid one with the highest txid) must claim
// no page beyond the end of the file.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	metas := readMetas(f)
	if len(metas) == 0 {
		return fmt.Errorf("%w: %s: no valid bbolt meta page (file is %d bytes)", ErrCorrupt, path, st.Size())
	}
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	if st.Size() < 2*int64(m.pageSize) {
		return fmt.Errorf("%w: %s: %d bytes, shorter than the two meta pages", ErrCorrupt, path, st.Size())
	}
	if need := int64(m.pgid) * int64(m.pageSize); need > st.Size() || m.pgid > 1<<40 {
		return fmt.Errorf("%w: %s: truncated: meta page (txid %d) needs %d bytes, file has %d",
			ErrCorrupt, path, m.txid, need, st.Size())
	}
	return nil
}

// errFault wraps a panic or memory fault caught while bbolt read a file.
var errFault = errors.New("fault reading bbolt file")

// guarded runs fn on a goroutine of its own that turns memory faults into
// panics (debug.SetPanicOnFault) and panics into errors, so that a damaged
// file bbolt reads through its mmap yields an error, not a crash. fn must
// not call back into code whose panics should propagate.
func guarded(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				ch <- fmt.Errorf("%w: %v", errFault, r)
			}
		}()
		ch <- fn()
	}()
	return <-ch
}

// salvageEntries scans a (possibly truncated or damaged) segment file for
// leaf pages and returns every stored entry value found that decodes (CRC
// and sequence check), keyed by sequence. Entries are immutable, so every
// copy bbolt left of one sequence (copy-on-write leaves old page copies
// behind) holds the same bytes; a sequence found with two different valid
// values is reported in conflicts and must not be trusted.
func salvageEntries(path string) (found map[int64][]byte, conflicts map[int64]bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	ps := segmentPageSize
	if ms := readMetas(f); len(ms) > 0 {
		ps = int(ms[0].pageSize)
	}
	found = map[int64][]byte{}
	conflicts = map[int64]bool{}
	emit := func(k, v []byte) {
		e, err := DecodeEntry(k, v)
		if err != nil {
			return
		}
		if old, ok := found[e.Sequence]; ok {
			if string(old) != string(v) {
				conflicts[e.Sequence] = true
			}
			return
		}
		found[e.Sequence] = append([]byte(nil), v...)
	}
	for off := 2 * ps; off+pageHeaderSize <= len(data); off += ps {
		p := data[off:]
		if le.Uint64(p) != uint64(off/ps) || le.Uint16(p[8:]) != leafPageFlag {
			continue // not a leaf page (or overflow data of one)
		}
		span := (int(le.Uint32(p[12:])) + 1) * ps
		if span > 0 && span < len(p) {
			p = p[:span]
		}
		scanLeaf(p, emit, 0)
	}
	return found, conflicts, nil
}

// scanLeaf calls emit for each key/value of the leaf page p that lies
// wholly inside p, descending into inline buckets.
func scanLeaf(p []byte, emit func(k, v []byte), depth int) {
	if len(p) < pageHeaderSize || le.Uint16(p[8:]) != leafPageFlag || depth > 2 {
		return
	}
	count := int(le.Uint16(p[10:]))
	for i := 0; i < count; i++ {
		eo := pageHeaderSize + i*leafElemSize
		if eo+leafElemSize > len(p) {
			return
		}
		flags := le.Uint32(p[eo:])
		ks := uint64(eo) + uint64(le.Uint32(p[eo+4:]))
		ke := ks + uint64(le.Uint32(p[eo+8:]))
		ve := ke + uint64(le.Uint32(p[eo+12:]))
		if ve > uint64(len(p)) {
			continue
		}
		k, v := p[ks:ke], p[ke:ve]
		if flags&bucketLeafFlag != 0 {
			// An inline bucket (root page id 0) carries its page in the value.
			if len(v) >= bucketHeaderSize && le.Uint64(v) == 0 {
				scanLeaf(v[bucketHeaderSize:], emit, depth+1)
			}
			continue
		}
		emit(k, v)
	}
}
