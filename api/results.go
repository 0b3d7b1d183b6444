package api

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Err is the error one item of a batch answer (CreateFiles, CompleteFiles,
// GetStatuses) carries, as the single call would have returned it: nil
// when its code is OK.
func (r *CreateFileResult) Err() error {
	if c := codes.Code(r.GetCode()); c != codes.OK {
		return status.Error(c, r.GetError())
	}
	return nil
}
