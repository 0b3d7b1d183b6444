package sdk

import (
	"context"
	"hash/fnv"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

// workerCache remembers the live block workers for a moment, so a write of
// many blocks asks the master once.
type workerCache struct {
	mu      sync.Mutex
	at      time.Time
	workers []*api.WorkerInfo
}

const workerCacheTTL = 2 * time.Second

// workerAddr is host:rpc_port of a worker address.
func workerAddr(a *api.WorkerNetAddress) string {
	return net.JoinHostPort(a.GetHost(), strconv.Itoa(int(a.GetRpcPort())))
}

// liveWorkers returns the LIVE block workers, from a short-lived cache
// unless fresh is set.
func (c *Client) liveWorkers(ctx context.Context, fresh bool) ([]*api.WorkerInfo, error) {
	wc := &c.wcache
	wc.mu.Lock()
	if !fresh && wc.workers != nil && time.Since(wc.at) < workerCacheTTL {
		ws := wc.workers
		wc.mu.Unlock()
		return ws, nil
	}
	wc.mu.Unlock()
	all, err := c.Workers(ctx)
	if err != nil {
		return nil, err
	}
	var live []*api.WorkerInfo
	for _, w := range all {
		if w.GetState() == api.WorkerState_LIVE {
			live = append(live, w)
		}
	}
	wc.mu.Lock()
	wc.workers, wc.at = live, time.Now()
	wc.mu.Unlock()
	return live, nil
}

func freeBytes(w *api.WorkerInfo) int64 {
	var free int64
	for _, t := range w.GetTiers() {
		free += t.GetCapacityBytes() - t.GetUsedBytes()
	}
	return free
}

// pickWorker chooses a worker for block key (a block id, or a file id for
// UFS writes): a worker on this host first (the one with the most free
// space), else one spread by key over the workers with room. exclude names
// workers that just failed.
func (c *Client) pickWorker(ctx context.Context, key int64, need int64, exclude map[string]bool) (*api.WorkerInfo, error) {
	ws, err := c.liveWorkers(ctx, len(exclude) > 0)
	if err != nil {
		return nil, err
	}
	var cands []*api.WorkerInfo
	for _, w := range ws {
		if !exclude[workerAddr(w.GetAddress())] {
			cands = append(cands, w)
		}
	}
	if len(cands) == 0 {
		return nil, &Error{Op: "pick worker", Message: "no live block worker (start one with 'alluvium worker')", Code: codes.Unavailable, kind: ErrUnavailable}
	}
	var local []*api.WorkerInfo
	for _, w := range cands {
		if c.isLocalHost(w.GetAddress().GetHost()) {
			local = append(local, w)
		}
	}
	if len(local) > 0 {
		sort.SliceStable(local, func(i, j int) bool { return freeBytes(local[i]) > freeBytes(local[j]) })
		return local[0], nil
	}
	var roomy []*api.WorkerInfo
	for _, w := range cands {
		if freeBytes(w) >= need {
			roomy = append(roomy, w)
		}
	}
	if len(roomy) == 0 {
		roomy = cands
	}
	sort.Slice(roomy, func(i, j int) bool { return roomy[i].GetId() < roomy[j].GetId() })
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(key >> (8 * i))
	}
	h.Write(b[:])
	return roomy[h.Sum64()%uint64(len(roomy))], nil
}

// dataWorker returns a block-worker client for addr (host:port), through the
// worker's unix socket when the worker is on this host and offers one.
func (c *Client) dataWorker(ctx context.Context, addr string) (api.BlockWorkerClient, error) {
	host, _, _ := net.SplitHostPort(addr)
	if c.o.noDomainSock || !c.isLocalHost(host) {
		return c.worker(addr)
	}
	c.mu.Lock()
	sock, known := c.dsocks[addr]
	c.mu.Unlock()
	if known {
		if sock != "" {
			return c.worker(sock)
		}
		return c.worker(addr)
	}
	tcp, err := c.worker(addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := tcp.GetWorkerStatus(sctx, &api.GetWorkerStatusRequest{})
	cancel()
	if err != nil {
		return tcp, nil // decide next time
	}
	if p := st.GetDomainSocket(); p != "" {
		// The same host name may still be another machine (a container):
		// use the socket only when it is here.
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			sock = "unix:" + p
		}
	}
	c.mu.Lock()
	if c.dsocks == nil {
		c.dsocks = map[string]string{}
	}
	if prev, ok := c.dsocks[addr]; ok { // raced with another caller
		sock = prev
	} else {
		c.dsocks[addr] = sock
	}
	c.mu.Unlock()
	if sock != "" {
		return c.worker(sock)
	}
	return tcp, nil
}
