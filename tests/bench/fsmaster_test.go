package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
)

// benchConns is how many gRPC connections the clients share: as an SDK
// client process multiplexes its calls over one connection.
const benchConns = 4

// benchMaster starts an in-process FS master (real journal on the test's
// temp disk, real gRPC over loopback) and returns one connection per client.
func benchMaster(b *testing.B, clients int) (*fsmaster.Master, []api.FileSystemMasterClient) {
	b.Helper()
	// Token auth on, as a cluster runs: every call goes through the
	// interceptor that checks it.
	const token = "bench-cluster-token-0123456789abcdef"
	l := config.NewLoader()
	l.Set("home", b.TempDir())
	l.Set("fsmaster.rpc-port", 0)
	l.Set("fsmaster.http-port", 0)
	l.Set("security.token", token)
	cfg, err := l.Load()
	if err != nil {
		b.Fatal(err)
	}
	m, err := fsmaster.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	var conns []*grpc.ClientConn
	for range min(clients, benchConns) {
		cc, err := rpc.Dial(m.RPCAddr(), rpc.ClientOptions{Token: token})
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, cc)
	}
	var out []api.FileSystemMasterClient
	for i := range clients {
		out = append(out, api.NewFileSystemMasterClient(conns[i%len(conns)]))
	}
	b.Cleanup(func() {
		for _, cc := range conns {
			cc.Close()
		}
		_ = m.Stop(context.Background())
	})
	return m, out
}

// run splits ops operations over the clients and returns the elapsed time.
func run(b *testing.B, clients []api.FileSystemMasterClient, ops int, op func(c api.FileSystemMasterClient, client, i int) error) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	var failed atomic.Bool
	start := time.Now()
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < ops && !failed.Load(); i += len(clients) {
				if err := op(c, w, i); err != nil {
					failed.Store(true)
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkFSMasterCreate measures journaled create+complete pairs per
// second over gRPC from 1, 16 and 64 concurrent clients (each pair is two
// journal entries, each call returns after its entry is fsynced) and how
// many entries one fsync carried. The reference, in the same run, does the
// same durability work with nothing else: the same number of journal
// entries (a create's and a complete's, CRC-prefixed as the journal keeps
// them) put into bbolt in the same number of fsynced transactions.
// ratio-create/bbolt is the reference's time over the master's: 1.0 would
// be a master that costs nothing beyond its fsyncs.
func BenchmarkFSMasterCreate(b *testing.B) {
	for _, c := range []struct{ clients, ops int }{{1, 500}, {16, 4000}, {64, 16000}} {
		b.Run(fmt.Sprintf("clients=%d", c.clients), func(b *testing.B) {
			var elapsed, refElapsed, cpu, refCPU time.Duration
			var entries, fsyncs int64
			for range b.N {
				m, clients := benchMaster(b, c.clients)
				ctx := context.Background()
				for w := range c.clients {
					if _, err := clients[0].CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/bench/c%02d", w), Recursive: true, WriteType: api.WriteType_MUST_CACHE}); err != nil {
						b.Fatal(err)
					}
				}
				before := m.JournalStats()
				cpu0 := cpuTime()
				elapsed += run(b, clients, c.ops, func(fs api.FileSystemMasterClient, w, i int) error {
					p := fmt.Sprintf("/bench/c%02d/part-%07d", w, i)
					resp, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: p, WriteType: api.WriteType_MUST_CACHE})
					if err != nil {
						return err
					}
					_, err = fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: 1 << 20, FileId: resp.Info.FileId})
					return err
				})
				cpu += cpuTime() - cpu0
				after := m.JournalStats()
				n, txs := after.Entries-before.Entries, after.Batches-before.Batches
				entries += n
				fsyncs += txs
				ref := createEntries(int(n+1) / 2)[:n]
				cpu0 = cpuTime()
				refElapsed += bboltDurableWrites(b, b.TempDir(), ref, int(txs))
				refCPU += cpuTime() - cpu0
			}
			b.ReportMetric(float64(c.ops*b.N)/elapsed.Seconds(), "creates/s")
			// Master and clients in this process: their CPU per create
			// (two calls, two journal entries), which a busy machine does
			// not distort as it does the rate.
			b.ReportMetric(float64(cpu.Microseconds())/float64(c.ops*b.N), "cpu-us/create")
			// The reference's CPU per create: the fsyncs' own cost (the
			// kernel's work in fdatasync is CPU time too, two per bbolt
			// commit), which at one client is most of the master's.
			b.ReportMetric(float64(refCPU.Microseconds())/float64(c.ops*b.N), "bbolt-cpu-us/create")
			b.ReportMetric(float64(entries)/float64(fsyncs), "entries/fsync")
			b.ReportMetric(float64(c.ops*b.N)/refElapsed.Seconds(), "bbolt-creates/s")
			b.ReportMetric(refElapsed.Seconds()/elapsed.Seconds(), "ratio-create/bbolt")
			reference(b, "*", "bbolt alone: the same entries in the same number of fsynced transactions")
			reference(b, "bbolt-cpu-us/create", "the reference's own CPU per create (the kernel's work in its fdatasyncs included)")
			b.Logf("NOTE: FSMasterCreate: MUST_CACHE create + complete over gRPC (loopback, %d connections), each call answered once its journal entry is fsynced (group commit); the reference puts the same number of entries of the same kinds into one bbolt file with the journal's options in the same number of transactions, each fsynced, from one goroutine, with no RPC, namespace or entry encoding; both on the same disk, neither verifies", benchConns)
		})
	}
}

// BenchmarkFSMasterGetStatus measures GetStatus calls per second over gRPC
// from 1, 16 and 64 concurrent clients on a namespace of 2000 files. The
// reference, in the same run: as many GetLeader calls from the same
// clients to the same server, which answers them with no namespace work.
// cpu-us/getstatus is the CPU time (master and clients, in this process)
// per call.
func BenchmarkFSMasterGetStatus(b *testing.B) {
	const files = 2000
	for _, c := range []struct{ clients, ops int }{{1, 5000}, {16, 40000}, {64, 80000}} {
		b.Run(fmt.Sprintf("clients=%d", c.clients), func(b *testing.B) {
			var elapsed, refElapsed, cpu time.Duration
			for range b.N {
				_, clients := benchMaster(b, c.clients)
				ctx := context.Background()
				run(b, clients[:1], files, func(fs api.FileSystemMasterClient, _, i int) error {
					_, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: fmt.Sprintf("/stat/d%02d/f%05d", i%50, i), Recursive: true, WriteType: api.WriteType_MUST_CACHE})
					return err
				})
				cpu0 := cpuTime()
				elapsed += run(b, clients, c.ops, func(fs api.FileSystemMasterClient, _, i int) error {
					k := (i * 7919) % files
					_, err := fs.GetStatus(ctx, &api.GetStatusRequest{Path: fmt.Sprintf("/stat/d%02d/f%05d", k%50, k)})
					return err
				})
				cpu += cpuTime() - cpu0
				refElapsed += getLeaderRPCs(b, clients, c.ops)
			}
			b.ReportMetric(float64(c.ops*b.N)/elapsed.Seconds(), "getstatus/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(c.ops*b.N), "cpu-us/getstatus")
			b.ReportMetric(float64(c.ops*b.N)/refElapsed.Seconds(), "getleader/s")
			b.ReportMetric(refElapsed.Seconds()/elapsed.Seconds(), "ratio-getstatus/getleader")
			reference(b, "*", "GetLeader: the same calls, clients and server, no namespace work")
			b.Logf("NOTE: FSMasterGetStatus: GetStatus of one of 2,000 files over gRPC (loopback, %d connections, token auth, the master's interceptors) against GetLeader on the same server and connections; both are reads served from memory, nothing written or verified", benchConns)
		})
	}
}
