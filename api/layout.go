package api

import "sort"

// BlockSpan is one block of a file: its id, the offset of its first byte
// in the file, and its length.
type BlockSpan struct {
	ID     int64
	Offset int64
	Length int64
}

// Layout says which blocks hold a file's bytes. Most files have the usual
// layout — blocks 0, 1, ... of the file's block size, the last shorter —
// which Layout computes without a table. A file assembled from parts (an
// S3 multipart upload: each part's bytes were written, as they came, to
// blocks of their own) lists its extents, runs of blocks in file order.
type Layout struct {
	fileID, length, bs int64
	spans              []BlockSpan // explicit layouts only
}

// LayoutOf returns the layout of a completed file.
func LayoutOf(fi *FileInfo) Layout {
	return NewLayout(fi.GetFileId(), fi.GetLength(), fi.GetBlockSizeBytes(), fi.GetExtents())
}

// NewLayout returns the layout of file fileID of length bytes in blocks of
// bs, assembled from extents (none: the usual layout).
func NewLayout(fileID, length, bs int64, extents []*FileExtent) Layout {
	if bs <= 0 {
		bs = max(length, 1)
	}
	l := Layout{fileID: fileID, length: length, bs: bs}
	if len(extents) == 0 {
		return l
	}
	l.spans = []BlockSpan{}
	var off int64
	for _, e := range extents {
		for j, rest := int64(0), e.GetLength(); rest > 0; j++ {
			n := min(rest, bs)
			l.spans = append(l.spans, BlockSpan{ID: BlockID(fileID, e.GetFirstBlock()+j), Offset: off, Length: n})
			off += n
			rest -= n
		}
	}
	return l
}

// Count is the number of blocks.
func (l Layout) Count() int64 {
	if l.spans != nil {
		return int64(len(l.spans))
	}
	return (l.length + l.bs - 1) / l.bs
}

// Block returns block i (0 <= i < Count) of the file.
func (l Layout) Block(i int64) BlockSpan {
	if l.spans != nil {
		return l.spans[i]
	}
	off := i * l.bs
	return BlockSpan{ID: BlockID(l.fileID, i), Offset: off, Length: min(l.bs, l.length-off)}
}

// Find returns the block that holds byte off (0 <= off < the length).
func (l Layout) Find(off int64) int64 {
	if l.spans == nil {
		return off / l.bs
	}
	return int64(sort.Search(len(l.spans), func(i int) bool { return l.spans[i].Offset+l.spans[i].Length > off }))
}

// Explicit reports whether the file has extents (not the usual layout).
func (l Layout) Explicit() bool { return l.spans != nil }
