package client

import (
	"github.com/alluvium/alluvium/api"
)

// Cluster is a client of a cluster's FS masters (the leader followed) and
// its block workers (one pooled connection each): what the plans' Env
// needs on the job master (planning) and on the job workers (running).
type Cluster struct {
	*FSMaster
	workers *Pool
}

// NewCluster returns a client of the FS masters at masters (host:port or
// comma-separated lists). Nothing is dialled before the first call.
func NewCluster(masters []string, o Options) (*Cluster, error) {
	m, err := NewFSMaster(masters, o)
	if err != nil {
		return nil, err
	}
	return &Cluster{FSMaster: m, workers: NewPool(o.Auth)}, nil
}

// BlockWorker returns a client of the block worker at addr (host:port).
func (c *Cluster) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	return c.workers.BlockWorker(addr)
}

// ForgetBlockWorker drops the connection to the block worker at addr (one
// declared LOST): calls in flight on it fail at once, and the next call
// dials again.
func (c *Cluster) ForgetBlockWorker(addr string) { c.workers.Forget(addr) }

// Close closes every connection.
func (c *Cluster) Close() error {
	c.workers.Close()
	return c.FSMaster.Close()
}
