package fsmaster

import (
	"context"

	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// CreateFiles creates many files under one lock and waits for the journal
// once (the small files of a copy). Each file succeeds or fails on its own.
func (ns *namespace) CreateFiles(ctx context.Context, req *api.CreateFilesRequest) (*api.CreateFilesResponse, error) {
	ns.op("create-files")
	files := req.GetFiles()
	resp := &api.CreateFilesResponse{Results: make([]*api.CreateFileResult, len(files))}
	args := make([]createReq, len(files))
	ok := make([]bool, len(files))
	fail := func(i int, err error) {
		st := status.Convert(err)
		resp.Results[i] = &api.CreateFileResult{Code: int32(st.Code()), Error: st.Message()}
	}
	for i, f := range files {
		a, err := ns.createArgs(ctx, f)
		if err != nil {
			fail(i, err)
			continue
		}
		args[i], ok[i] = a, true
	}
	var last *txn
	ns.mu.Lock()
	for i, f := range files {
		if !ok[i] {
			continue
		}
		info, t, err := ns.createCompleteLocked(ctx, args[i], f)
		if err != nil {
			fail(i, err)
			continue
		}
		resp.Results[i] = &api.CreateFileResult{Info: info}
		last = t
	}
	ns.mu.Unlock()
	if last != nil {
		// Entries are durable in order: the last one's wait covers all.
		if err := last.wait(ctx); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
