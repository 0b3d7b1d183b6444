package rpc

import (
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the fallback codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Bulk data (block chunks) is most of the bytes Alluvium moves. The generic
// protobuf codec copies them twice on receive (frames into one buffer, then
// into a freshly allocated field) and once on send. The codec here keeps
// the wire format — a message whose only field is bytes field 1 — and
// moves such chunks with one copy on receive and none on send; every other
// message goes through the protobuf codec unchanged.

// ChunkReceiver is a message that usually carries just one bytes field
// (api.ReadBlockResponse's field 1, the chunk of a WriteBlockRequest).
// ChunkField names that field; ChunkBuffer, called only when a message of
// exactly that shape arrives, returns where its bytes go. Receiving reuses
// the capacity there, so a caller that receives into the same message again
// and again allocates nothing. Other shapes go through protobuf.
type ChunkReceiver interface {
	ChunkField() protowire.Number
	ChunkBuffer() *[]byte
}

// OwnedChunk sends bytes as field 1 of a message without copying them: the
// codec hands the buffer to the transport, which returns it to Pool once it
// is written. After SendMsg the sender must not touch Buf.
type OwnedChunk struct {
	Buf  *[]byte // len is the chunk
	Pool mem.BufferPool
}

// ChunkPool is a BufferPool of fixed-size buffers that are not zeroed on
// reuse: a chunk is always filled before it is sent.
type ChunkPool struct {
	size int
	p    sync.Pool
}

// NewChunkPool returns a pool of size-byte buffers.
func NewChunkPool(size int) *ChunkPool {
	cp := &ChunkPool{size: size}
	cp.p.New = func() any { b := make([]byte, size); return &b }
	return cp
}

// Size is the pool's buffer size.
func (cp *ChunkPool) Size() int { return cp.size }

// Get implements mem.BufferPool: a buffer of length n (n <= Size, else a
// fresh one).
func (cp *ChunkPool) Get(n int) *[]byte {
	if n > cp.size {
		b := make([]byte, n)
		return &b
	}
	b := cp.p.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// Put implements mem.BufferPool.
func (cp *ChunkPool) Put(b *[]byte) {
	if cap(*b) == cp.size {
		*b = (*b)[:cp.size]
		cp.p.Put(b)
	}
}

type chunkCodec struct{ fallback encoding.CodecV2 }

// codec is the codec of every server and connection made here.
var codec = chunkCodec{fallback: encoding.GetCodecV2("proto")}

func (c chunkCodec) Name() string { return "proto" }

func (c chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if oc, ok := v.(*OwnedChunk); ok {
		n := len(*oc.Buf)
		if n == 0 {
			oc.Pool.Put(oc.Buf)
			return mem.BufferSlice{}, nil // proto3 omits an empty field
		}
		hdr := protowire.AppendVarint([]byte{0x0a}, uint64(n))
		return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(oc.Buf, oc.Pool)}, nil
	}
	return c.fallback.Marshal(v)
}

func (c chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if ref, ok := v.(*ChunkRef); ok {
		return ref.take(data)
	}
	cr, ok := v.(ChunkReceiver)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	total := data.Len()
	tag := byte(protowire.EncodeTag(cr.ChunkField(), protowire.BytesType))
	if total == 0 {
		if cr.ChunkField() == 1 {
			dst := cr.ChunkBuffer()
			*dst = (*dst)[:0]
			return nil
		}
		return c.fallback.Unmarshal(data, v)
	}
	var head [1 + binaryMaxVarintLen]byte
	hn := copyAt(data, 0, head[:min(len(head), total)])
	n, vn := protowire.ConsumeVarint(head[1:hn])
	if head[0] != tag || vn < 0 || uint64(total) != uint64(1+vn)+n {
		// Not the one-field shape (a header, unknown fields from a newer
		// peer): let protobuf decode it.
		return c.fallback.Unmarshal(data, v)
	}
	dst := cr.ChunkBuffer()
	buf := *dst
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copyAt(data, 1+vn, buf)
	*dst = buf
	return nil
}

// copyAt copies s's bytes from offset off into dst and returns the count.
func copyAt(s mem.BufferSlice, off int, dst []byte) int {
	n := 0
	for _, b := range s {
		d := b.ReadOnlyData()
		if off >= len(d) {
			off -= len(d)
			continue
		}
		n += copy(dst[n:], d[off:])
		off = 0
		if n == len(dst) {
			break
		}
	}
	return n
}

const binaryMaxVarintLen = 10

// dirtyPool is the transports' buffer pool: power-of-two tiers like gRPC's
// default, but buffers are not zeroed on reuse (gRPC fills every byte it
// reads into them), which the default pool spends a tenth of a bulk read on.
type dirtyPool struct {
	tiers [maxTier - minTier + 1]sync.Pool
}

const (
	minTier = 8  // 256 B
	maxTier = 22 // 4 MiB
)

var transportPool = &dirtyPool{}

func tierOf(n int) int {
	t := minTier
	for 1<<t < n {
		t++
	}
	return t
}

func (p *dirtyPool) Get(n int) *[]byte {
	t := tierOf(n)
	if t > maxTier {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t-minTier].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<t)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minTier || c > 1<<maxTier || c&(c-1) != 0 {
		return // not one of ours
	}
	p.tiers[tierOf(c)-minTier].Put(b)
}

// ChunkRef receives a one-bytes-field message (see ChunkReceiver) without
// copying it: it keeps the transport's buffers until the bytes are consumed
// or Free is called. Receive into it with stream.RecvMsg(ref).
type ChunkRef struct {
	data mem.BufferSlice // referenced; nil once consumed
	off  int             // next byte in data
	end  int
	own  []byte // a message of another shape, decoded
}

// take makes ref hold the chunk of data (replacing what it held).
func (ref *ChunkRef) take(data mem.BufferSlice) error {
	ref.Free()
	total := data.Len()
	if total == 0 {
		return nil
	}
	var head [1 + binaryMaxVarintLen]byte
	hn := copyAt(data, 0, head[:min(len(head), total)])
	n, vn := protowire.ConsumeVarint(head[1:hn])
	if head[0] == 0x0a && vn >= 0 && uint64(total) == uint64(1+vn)+n {
		data.Ref()
		ref.data, ref.off, ref.end = data, 1+vn, total
		return nil
	}
	// Another shape (unknown fields from a newer peer): take field 1.
	b := data.Materialize()
	for len(b) > 0 {
		num, typ, tn := protowire.ConsumeTag(b)
		if tn < 0 {
			return fmt.Errorf("chunk message: %w", protowire.ParseError(tn))
		}
		b = b[tn:]
		if num == 1 && typ == protowire.BytesType {
			v, vn := protowire.ConsumeBytes(b)
			if vn < 0 {
				return fmt.Errorf("chunk message: %w", protowire.ParseError(vn))
			}
			ref.own = append(ref.own[:0], v...)
			b = b[vn:]
			continue
		}
		fn := protowire.ConsumeFieldValue(num, typ, b)
		if fn < 0 {
			return fmt.Errorf("chunk message: %w", protowire.ParseError(fn))
		}
		b = b[fn:]
	}
	return nil
}

// Len returns the bytes not yet consumed.
func (ref *ChunkRef) Len() int {
	if ref.data != nil {
		return ref.end - ref.off
	}
	return len(ref.own)
}

// Read copies up to len(p) unconsumed bytes into p.
func (ref *ChunkRef) Read(p []byte) int {
	if ref.data == nil {
		n := copy(p, ref.own)
		ref.own = ref.own[n:]
		return n
	}
	n := copyAt(ref.data, ref.off, p[:min(len(p), ref.end-ref.off)])
	ref.off += n
	if ref.off == ref.end {
		ref.Free()
	}
	return n
}

// WriteTo writes up to max unconsumed bytes to w, buffer by buffer, with
// no copy on this side.
func (ref *ChunkRef) WriteTo(w io.Writer, max int) (int, error) {
	if ref.data == nil {
		b := ref.own[:min(max, len(ref.own))]
		n, err := w.Write(b)
		ref.own = ref.own[n:]
		return n, err
	}
	written, skip := 0, ref.off
	for _, buf := range ref.data {
		d := buf.ReadOnlyData()
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		d = d[skip:]
		skip = 0
		d = d[:min(len(d), max-written, ref.end-ref.off)]
		if len(d) == 0 {
			break
		}
		n, err := w.Write(d)
		written += n
		ref.off += n
		if err != nil {
			return written, err
		}
	}
	if ref.off == ref.end {
		ref.Free()
	}
	return written, nil
}

// Free releases the held buffers.
func (ref *ChunkRef) Free() {
	if ref.data != nil {
		ref.data.Free()
		ref.data = nil
	}
	ref.off, ref.end = 0, 0
	ref.own = ref.own[:0]
}
