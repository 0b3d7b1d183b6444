package rpc

import (
	"bytes"
	"crypto/rand"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// split cuts b into a BufferSlice of pieces of n bytes, as frames arrive.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		c := min(n, len(b))
		piece := append([]byte(nil), b[:c]...)
		s = append(s, mem.SliceBuffer(piece))
		b = b[c:]
	}
	return s
}

func TestOwnedChunkIsProtobuf(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16 << 10, 1<<20 + 3} {
		data := make([]byte, n)
		_, _ = rand.Read(data)
		pool := NewChunkPool(1 << 20)
		buf := pool.Get(n)
		copy(*buf, data)
		out, err := codec.Marshal(&OwnedChunk{Buf: buf, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		wire := out.Materialize()
		var m api.ReadBlockResponse
		if err := proto.Unmarshal(wire, &m); err != nil {
			t.Fatalf("n=%d: protobuf cannot read the chunk: %v", n, err)
		}
		if !bytes.Equal(m.GetChunk(), data) {
			t.Errorf("n=%d: protobuf read %d bytes back", n, len(m.GetChunk()))
		}
		want, _ := proto.Marshal(&api.ReadBlockResponse{Chunk: data})
		if !bytes.Equal(wire, want) {
			t.Errorf("n=%d: wire form differs from protobuf's", n)
		}
		out.Free()
	}
}

func TestChunkReceive(t *testing.T) {
	data := make([]byte, 1<<20+7)
	_, _ = rand.Read(data)
	wire, _ := proto.Marshal(&api.ReadBlockResponse{Chunk: data})
	for _, frame := range []int{997, 16 << 10, len(wire)} {
		var m api.ReadBlockResponse
		if err := codec.Unmarshal(split(wire, frame), &m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.GetChunk(), data) {
			t.Errorf("frames of %d: ChunkReceiver got %d bytes", frame, len(m.GetChunk()))
		}
		// The buffer is reused by the next receive into the same message.
		prev := &m.Chunk[0]
		small, _ := proto.Marshal(&api.ReadBlockResponse{Chunk: data[:100]})
		if err := codec.Unmarshal(split(small, frame), &m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.GetChunk(), data[:100]) || &m.Chunk[0] != prev {
			t.Errorf("frames of %d: second receive did not reuse the buffer", frame)
		}

		var ref ChunkRef
		if err := codec.Unmarshal(split(wire, frame), &ref); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		p := make([]byte, 1000)
		n := ref.Read(p)
		got.Write(p[:n])
		if _, err := ref.WriteTo(&got, 5000); err != nil {
			t.Fatal(err)
		}
		for ref.Len() > 0 {
			n := ref.Read(p)
			got.Write(p[:n])
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Errorf("frames of %d: ChunkRef gave %d bytes", frame, got.Len())
		}
	}
	// A message with an extra field from a newer peer still decodes.
	extra := protowire.AppendTag(nil, 7, protowire.VarintType)
	extra = protowire.AppendVarint(extra, 42)
	odd := append(append([]byte(nil), wire...), extra...)
	var m api.ReadBlockResponse
	if err := codec.Unmarshal(split(odd, 999), &m); err != nil || !bytes.Equal(m.GetChunk(), data) {
		t.Errorf("message with an unknown field: %v", err)
	}
	var ref ChunkRef
	if err := codec.Unmarshal(split(odd, 999), &ref); err != nil || ref.Len() != len(data) {
		t.Errorf("ChunkRef of a message with an unknown field: %v, %d bytes", err, ref.Len())
	}
	ref.Free()
}

// FuzzChunkDecode feeds arbitrary bytes to the chunk decoders: they must
// agree with protobuf on what field 1 holds, or fail, never panic.
func FuzzChunkDecode(f *testing.F) {
	good, _ := proto.Marshal(&api.ReadBlockResponse{Chunk: []byte("hello")})
	f.Add(good, 3)
	f.Add([]byte{}, 1)
	f.Add([]byte{0x0a}, 1)
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 2)
	f.Add([]byte{0x0a, 0x05, 'a'}, 1)
	f.Add(append(append([]byte{}, good...), 0x38, 0x2a), 4)
	f.Fuzz(func(t *testing.T, wire []byte, frame int) {
		if frame <= 0 {
			frame = 1
		}
		var want api.ReadBlockResponse
		werr := proto.Unmarshal(wire, &want)
		var ref ChunkRef
		rerr := codec.Unmarshal(split(wire, frame), &ref)
		if werr == nil && rerr == nil {
			got := make([]byte, ref.Len())
			ref.Read(got)
			if !bytes.Equal(got, want.GetChunk()) {
				t.Errorf("ChunkRef read %q, protobuf %q", got, want.GetChunk())
			}
		}
		ref.Free()
		var m api.ReadBlockResponse
		if err := codec.Unmarshal(split(wire, frame), &m); err == nil && werr == nil && !bytes.Equal(m.GetChunk(), want.GetChunk()) {
			t.Errorf("ChunkReceiver read %q, protobuf %q", m.GetChunk(), want.GetChunk())
		}
	})
}

// A oneof chunk (WriteBlockRequest) decodes by the fast path, a header by
// protobuf, into the same reused message.
func TestOneofChunkReceive(t *testing.T) {
	m := &api.WriteBlockRequest{}
	hdr, _ := proto.Marshal(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Header{Header: &api.WriteBlockHeader{BlockId: 9, Pinned: true}}})
	if err := codec.Unmarshal(split(hdr, 3), m); err != nil || m.GetHeader().GetBlockId() != 9 || m.GetChunk() != nil {
		t.Fatalf("header: %v %v", m, err)
	}
	for _, n := range []int{5000, 0, 70000} {
		data := make([]byte, n)
		_, _ = rand.Read(data)
		wire, _ := proto.Marshal(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Chunk{Chunk: data}})
		if err := codec.Unmarshal(split(wire, 16<<10), m); err != nil {
			t.Fatal(err)
		}
		if m.GetHeader() != nil || !bytes.Equal(m.GetChunk(), data) {
			t.Errorf("chunk of %d: got header %v, %d bytes", n, m.GetHeader(), len(m.GetChunk()))
		}
	}
	if err := codec.Unmarshal(split(hdr, 3), m); err != nil || m.GetHeader().GetBlockId() != 9 {
		t.Errorf("header after chunks: %v %v", m, err)
	}
}
