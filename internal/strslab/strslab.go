// Package strslab builds many short strings in shared chunks: a listing
// that makes a path, a UFS path and a fingerprint for each of thousands of
// files spends one allocation a chunk instead of one a string.
package strslab

import "unsafe"

// DefaultChunk is a Slab's chunk size when Chunk is 0: some hundreds of
// paths.
const DefaultChunk = 32 << 10

// Slab hands out strings whose bytes live in shared chunks. A chunk is
// only ever appended to, and a full one is left for a new one, so the
// bytes a string covers are never written again: the strings stay
// immutable. A chunk lives as long as any of its strings, so a Slab is for
// strings that go together (a page that is sent, a batch that is parsed),
// not for ones kept one by one. The zero Slab is ready to use.
type Slab struct {
	// Chunk is the size of each chunk (0: DefaultChunk).
	Chunk int
	buf   []byte
	from  int
}

// Start makes room for about n more bytes (a new chunk if they do not
// fit) and returns the buffer to append the next string to; End takes it
// back.
func (s *Slab) Start(n int) []byte {
	if cap(s.buf)-len(s.buf) < n {
		chunk := s.Chunk
		if chunk <= 0 {
			chunk = DefaultChunk
		}
		s.buf = make([]byte, 0, max(n, chunk))
	}
	s.from = len(s.buf)
	return s.buf
}

// End returns the string appended to b (Start's buffer) since Start. Had
// it outgrown the room Start made, append moved it to a new array holding
// a copy of the earlier bytes; the strings already handed out keep
// pointing at the old one, which nothing writes again.
func (s *Slab) End(b []byte) string {
	s.buf = b
	if len(b) == s.from {
		return ""
	}
	return unsafe.String(&b[s.from], len(b)-s.from)
}
