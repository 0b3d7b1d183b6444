package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// Cluster is a client of a cluster's FS masters (the leader followed) and
// its block workers (one pooled connection each): what the plans' Env
// needs on the job master (planning) and on the job workers (running).
type Cluster struct {
	*FSMaster
	workers *Pool

	mu sync.Mutex
	// lost: block workers declared LOST (ForgetBlockWorker) → when the FS
	// master was last asked whether they are back.
	lost map[string]time.Time
}

// lostRecheck is how often a call to a block worker declared LOST asks the
// FS master whether it is LIVE again; in between such calls fail at once.
const lostRecheck = time.Second

// NewCluster returns a client of the FS masters at masters (host:port or
// comma-separated lists). Nothing is dialled before the first call.
func NewCluster(masters []string, o Options) (*Cluster, error) {
	m, err := NewFSMaster(masters, o)
	if err != nil {
		return nil, err
	}
	return &Cluster{FSMaster: m, workers: NewPool(o.Auth), lost: map[string]time.Time{}}, nil
}

// BlockWorker returns a client of the block worker at addr (host:port). One
// declared LOST is refused (Unavailable) until the FS master counts it LIVE
// again: dialling a process that is frozen or cut off would wait out the
// connection's handshake (20 s) instead of letting the caller go elsewhere.
func (c *Cluster) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	if err := c.stillLost(addr); err != nil {
		return nil, err
	}
	return c.workers.BlockWorker(addr)
}

// ForgetBlockWorker drops the connection to the block worker at addr (one
// declared LOST): calls in flight on it fail at once, and later ones fail
// at once until the FS master counts it LIVE again.
func (c *Cluster) ForgetBlockWorker(addr string) {
	c.mu.Lock()
	c.lost[addr] = time.Time{}
	c.mu.Unlock()
	c.workers.Forget(addr)
}

// stillLost is an Unavailable error while the block worker at addr, once
// declared LOST, is not LIVE again at the FS master (asked at most every
// lostRecheck); nil for any other.
func (c *Cluster) stillLost(addr string) error {
	c.mu.Lock()
	asked, ok := c.lost[addr]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	lostErr := status.Errorf(codes.Unavailable, "block worker %s: declared LOST (not LIVE at the FS master)", addr)
	if time.Since(asked) < lostRecheck {
		c.mu.Unlock()
		return lostErr
	}
	c.lost[addr] = time.Now()
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.BlockMaster().GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})
	if err != nil {
		return lostErr
	}
	for _, w := range resp.GetWorkers() {
		a := w.GetAddress()
		if st := w.GetState(); fmt.Sprintf("%s:%d", a.GetHost(), a.GetRpcPort()) == addr && (st == api.WorkerState_LIVE || st == api.WorkerState_WORKER_STATE_UNSPECIFIED) {
			c.mu.Lock()
			delete(c.lost, addr)
			c.mu.Unlock()
			return nil
		}
	}
	return lostErr
}

// Close closes every connection.
func (c *Cluster) Close() error {
	c.workers.Close()
	return c.FSMaster.Close()
}
