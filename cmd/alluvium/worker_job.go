package main

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/jobworker"
	"github.com/alluvium/alluvium/plans"
)

// colocated describes the block worker a job worker runs beside.
type colocated struct {
	BlockWorkerID      int64
	BlockWorkerAddress string // host:rpc-port
}

// startJobWorker starts the job-worker role of `alluvium worker` (and of
// `alluvium local`, once per block worker) and returns its stop function.
// It registers with the job masters in jobworker.job-master in the
// background, so the job master may start later.
func startJobWorker(ctx context.Context, cfg *config.Config, log *zap.Logger, bw colocated) (stop func(context.Context) error, err error) {
	setBuiltinVersion()
	w, err := jobworker.New(cfg, log, jobworker.Colocated{BlockWorkerID: bw.BlockWorkerID, BlockWorkerAddress: bw.BlockWorkerAddress})
	if err != nil {
		return nil, err
	}
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	return w.Stop, nil
}

var builtinVersionOnce sync.Once

// setBuiltinVersion gives the built-in plans the binary's version, once:
// `alluvium local` starts several job workers (and a job master) at the
// same time, and each reads it as soon as it runs.
func setBuiltinVersion() {
	builtinVersionOnce.Do(func() { plans.BuiltinVersion = version })
}
