package api

// ChunkBuffer lets the rpc codec receive a block chunk into the message's
// existing buffer (see internal/rpc.ChunkReceiver): the message is one bytes
// field, number 1.
func (x *ReadBlockResponse) ChunkBuffer() *[]byte { return &x.Chunk }
