package testutil

import (
	"context"
	"io"

	"github.com/alluvium/alluvium/api"
)

// ReadBlock reads a whole ReadBlock stream: the bytes received and the
// error that ended it (nil at a clean end).
func ReadBlock(ctx context.Context, bw api.BlockWorkerClient, req *api.ReadBlockRequest) ([]byte, error) {
	st, err := bw.ReadBlock(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m.GetChunk()...)
	}
}
