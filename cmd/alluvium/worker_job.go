package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/internal/config"
)

// colocated describes the block worker a job worker runs beside.
type colocated struct {
	BlockWorkerID      int64
	BlockWorkerAddress string // host:rpc-port
}

// startJobWorker starts the job-worker role of `alluvium worker` and returns
// its stop function. (Owned by the job master work; until then it does
// nothing.)
func startJobWorker(ctx context.Context, cfg *config.Config, log *zap.Logger, bw colocated) (stop func(context.Context) error, err error) {
	return func(context.Context) error { return nil }, nil
}
