package api

import "google.golang.org/protobuf/encoding/protowire"

// The block data messages implement internal/rpc.ChunkReceiver, so the rpc
// codec receives their bytes into the message's existing buffer instead of
// decoding them with protobuf (one copy, no allocation).

// ChunkField is the chunk's field number.
func (x *ReadBlockResponse) ChunkField() protowire.Number { return 1 }

// ChunkBuffer is where a received chunk goes.
func (x *ReadBlockResponse) ChunkBuffer() *[]byte { return &x.Chunk }

// ChunkField is the chunk's field number (of the msg oneof).
func (x *WriteBlockRequest) ChunkField() protowire.Number { return 2 }

// ChunkBuffer is where a received chunk goes; it makes the message a chunk.
func (x *WriteBlockRequest) ChunkBuffer() *[]byte {
	c, ok := x.Msg.(*WriteBlockRequest_Chunk)
	if !ok {
		c = &WriteBlockRequest_Chunk{}
		x.Msg = c
	}
	return &c.Chunk
}

// ChunkField is the chunk's field number (of the msg oneof).
func (x *WriteUfsFileRequest) ChunkField() protowire.Number { return 2 }

// ChunkBuffer is where a received chunk goes; it makes the message a chunk.
func (x *WriteUfsFileRequest) ChunkBuffer() *[]byte {
	c, ok := x.Msg.(*WriteUfsFileRequest_Chunk)
	if !ok {
		c = &WriteUfsFileRequest_Chunk{}
		x.Msg = c
	}
	return &c.Chunk
}
