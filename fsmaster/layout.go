package fsmaster

import (
	"fmt"
	"strings"

	"github.com/alluvium/alluvium/api"
)

// A file's blocks are BlockID(file, i) for i = 0, 1, ... of its block size
// — unless it was assembled from parts (an S3 multipart upload), whose
// bytes were written, part by part as they came, to blocks of their own:
// then its extents say which runs of blocks hold the file, in order (see
// api.Layout). Completing such a file moves no bytes: the extents are
// journaled with the completion and the blocks stay where they are.

// extent is a run of length bytes in blocks first, first+1, ... (each the
// file's block size but the last).
type extent struct {
	first  int64
	length int64
}

// blockCountOf is how many blocks hold length bytes in blocks of bs.
func blockCountOf(length, bs int64) int64 {
	if length <= 0 || bs <= 0 {
		return 0
	}
	return (length + bs - 1) / bs
}

// extents returns n's extents (nil: the usual layout).
func (s *State) extents(n *inode) []extent {
	if e := s.ext(n); e != nil {
		return e.extents
	}
	return nil
}

func (s *State) setExtents(n *inode, ex []extent) {
	if len(ex) == 0 {
		if e := s.ext(n); e != nil {
			e.extents = nil
			s.tidyExt(n)
		}
		return
	}
	s.extFor(n).extents = ex
}

func apiExtents(ex []extent) []*api.FileExtent {
	if len(ex) == 0 {
		return nil
	}
	out := make([]*api.FileExtent, len(ex))
	for i, e := range ex {
		out[i] = &api.FileExtent{FirstBlock: e.first, Length: e.length}
	}
	return out
}

func extentsOf(ex []*api.FileExtent) []extent {
	if len(ex) == 0 {
		return nil
	}
	out := make([]extent, len(ex))
	for i, e := range ex {
		out[i] = extent{first: e.GetFirstBlock(), length: e.GetLength()}
	}
	return out
}

// checkExtents checks extents against a file of length bytes in blocks of
// bs: they add up to the length, and their blocks are distinct indices a
// block id can hold.
func checkExtents(ex []extent, length, bs int64) error {
	var total int64
	type run struct{ lo, hi int64 }
	var runs []run
	for _, e := range ex {
		n := blockCountOf(e.length, bs)
		switch {
		case e.length < 0:
			return fmt.Errorf("extent at block %d has negative length %d", e.first, e.length)
		case e.first < 0 || e.first+n > api.MaxBlocksPerFile:
			return fmt.Errorf("extent at block %d of %d blocks is outside the block index range", e.first, n)
		}
		for _, r := range runs {
			if e.first < r.hi && r.lo < e.first+n {
				return fmt.Errorf("extents overlap at block %d", max(e.first, r.lo))
			}
		}
		runs = append(runs, run{e.first, e.first + n})
		total += e.length
	}
	if total != length {
		return fmt.Errorf("extents hold %d bytes, the file %d", total, length)
	}
	return nil
}

// hasBlock reports whether block index idx holds bytes of completed file n.
func (s *State) hasBlock(n *inode, idx int64) bool {
	ex := s.extents(n)
	if ex == nil {
		return idx < s.blockCount(n)
	}
	bs := s.blockSize(n)
	for _, e := range ex {
		if idx >= e.first && idx < e.first+blockCountOf(e.length, bs) {
			return true
		}
	}
	return false
}

// blockLength is the length of block idx of a completed file (0 when the
// file has no such block).
func (s *State) blockLength(n *inode, idx int64) int64 {
	bs := s.blockSize(n)
	ex := s.extents(n)
	if ex == nil {
		ex = []extent{{0, n.length}}
	}
	for _, e := range ex {
		if k := blockCountOf(e.length, bs); idx >= e.first && idx < e.first+k {
			return min(bs, e.length-(idx-e.first)*bs)
		}
	}
	return 0
}

// dumpExtents renders extents canonically (Dump).
func dumpExtents(ex []extent) string {
	if len(ex) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" extents")
	for _, e := range ex {
		fmt.Fprintf(&b, " %d+%d", e.first, e.length)
	}
	return b.String()
}
