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
	"github.com/alluvium/alluvium/sdk"
)

// benchConns is how many gRPC connections the clients share: as an SDK
// client process multiplexes its calls over one connection.
const benchConns = 4

// benchToken is the cluster token of benchMaster: token auth on, as a
// cluster runs, so every call goes through the interceptor that checks it.
const benchToken = "bench-cluster-token-0123456789abcdef"

// benchMaster starts an in-process FS master (real journal on the test's
// temp disk, real gRPC over loopback) and returns one connection per client.
func benchMaster(b *testing.B, clients int) (*fsmaster.Master, []api.FileSystemMasterClient) {
	b.Helper()
	l := config.NewLoader()
	l.Set("home", b.TempDir())
	l.Set("fsmaster.rpc-port", 0)
	l.Set("fsmaster.http-port", 0)
	l.Set("security.token", benchToken)
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
		cc, err := rpc.Dial(m.RPCAddr(), rpc.ClientOptions{Token: benchToken})
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
	return runN(b, len(clients), ops, func(w, i int) error { return op(clients[w], w, i) })
}

// runN splits ops operations over n goroutines (goroutine w does w, w+n,
// ...) and returns the elapsed time.
func runN(b *testing.B, n, ops int, op func(w, i int) error) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	var failed atomic.Bool
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			for i := w; i < ops && !failed.Load(); i += n {
				if err := op(w, i); err != nil {
					failed.Store(true)
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// benchSDK is one SDK client of m shared by every goroutine of a
// benchmark, as an S3 gateway or a copy's streams share theirs: its
// concurrent calls are joined into batch RPCs (sdk/batch.go).
func benchSDK(b *testing.B, m *fsmaster.Master) *sdk.Client {
	b.Helper()
	c, err := sdk.Dial(context.Background(), sdk.WithMaster(m.RPCAddr()), sdk.WithToken(benchToken))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkFSMasterCreate measures journaled create+complete pairs per
// second from 1, 16 and 64 concurrent clients (each pair is two journal
// entries, each call returns after its entry is fsynced) and how many
// entries one fsync carried, two ways: clients=N, one gRPC call per create
// and per complete (the per-call reference), and sdk/clients=N, N
// goroutines sharing one SDK client as users call (Create then Close of an
// empty file), whose concurrent calls the SDK joins into CreateFiles and
// CompleteFiles batches. The reference, in the same run, does the same
// durability work with nothing else: the same number of journal entries (a
// create's and a complete's, CRC-prefixed as the journal keeps them) put
// into bbolt in the same number of fsynced transactions.
// ratio-create/bbolt is the reference's time over the master's: 1.0 would
// be a master that costs nothing beyond its fsyncs. commit-us against
// bbolt-commit-us splits the difference: the journal writer's own time per
// commit (a bare bbolt transaction's, or more when the commit is slowed by
// the work around it) and journal-busy the share of the run it spent
// committing (the rest it waited for entries to come back).
func BenchmarkFSMasterCreate(b *testing.B) {
	for _, c := range []struct{ clients, ops int }{{1, 500}, {16, 4000}, {64, 16000}} {
		b.Run(fmt.Sprintf("clients=%d", c.clients), func(b *testing.B) {
			benchCreates(b, c.clients, c.ops, false)
			b.Logf("NOTE: FSMasterCreate: MUST_CACHE create + complete over gRPC, one call each (loopback, %d connections), each call answered once its journal entry is fsynced (group commit); the reference puts the same number of entries of the same kinds into one bbolt file with the journal's options in the same number of transactions, each fsynced, from one goroutine, with no RPC, namespace or entry encoding; both on the same disk, neither verifies", benchConns)
		})
	}
	for _, c := range []struct{ clients, ops int }{{1, 500}, {64, 32000}} {
		b.Run(fmt.Sprintf("sdk/clients=%d", c.clients), func(b *testing.B) {
			benchCreates(b, c.clients, c.ops, true)
			b.Logf("NOTE: FSMasterCreate/sdk: %d goroutines share one SDK client (one connection): sdk.Create + Close of an empty MUST_CACHE file; the SDK joins the creates made while three are in flight into one CreateFiles call and the closes into one CompleteFiles call (up to three batches of each kind in flight; a lone call goes alone), the master takes its lock once per batch and each caller is answered once its own entry is fsynced (group commit); the reference puts the same number of entries of the same kinds into one bbolt file in the same number of fsynced transactions with no RPC, namespace or encoding; neither verifies", c.clients)
		})
	}
}

// benchCreates runs one FSMasterCreate row: ops creates from clients
// goroutines, over raw gRPC or through one shared SDK client.
func benchCreates(b *testing.B, clients, ops int, viaSDK bool) {
	var elapsed, refElapsed, cpu, refCPU time.Duration
	var entries, fsyncs int64
	var commitTime time.Duration
	for range b.N {
		m, conns := benchMaster(b, clients)
		ctx := context.Background()
		for w := range clients {
			if _, err := conns[0].CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/bench/c%02d", w), Recursive: true, WriteType: api.WriteType_MUST_CACHE}); err != nil {
				b.Fatal(err)
			}
		}
		op := func(w, i int) error {
			p := fmt.Sprintf("/bench/c%02d/part-%07d", w, i)
			resp, err := conns[w].CreateFile(ctx, &api.CreateFileRequest{Path: p, WriteType: api.WriteType_MUST_CACHE})
			if err != nil {
				return err
			}
			_, err = conns[w].CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: 1 << 20, FileId: resp.Info.FileId})
			return err
		}
		if viaSDK {
			c := benchSDK(b, m)
			op = func(w, i int) error {
				fw, err := c.Create(ctx, fmt.Sprintf("/bench/c%02d/part-%07d", w, i), sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE})
				if err != nil {
					return err
				}
				return fw.Close()
			}
		}
		before := m.JournalStats()
		cpu0 := cpuTime()
		elapsed += runN(b, clients, ops, op)
		cpu += cpuTime() - cpu0
		after := m.JournalStats()
		n, txs := after.Entries-before.Entries, after.Batches-before.Batches
		entries += n
		fsyncs += txs
		commitTime += after.CommitTime - before.CommitTime
		ref := createEntries(int(n+1) / 2)[:n]
		cpu0 = cpuTime()
		refElapsed += bboltDurableWrites(b, b.TempDir(), ref, int(txs))
		refCPU += cpuTime() - cpu0
	}
	b.ReportMetric(float64(ops*b.N)/elapsed.Seconds(), "creates/s")
	// Master and clients in this process: their CPU per create (two calls,
	// two journal entries), which a busy machine does not distort as it
	// does the rate.
	b.ReportMetric(float64(cpu.Microseconds())/float64(ops*b.N), "cpu-us/create")
	// The reference's CPU per create: the fsyncs' own cost (the kernel's
	// work in fdatasync is CPU time too, two per bbolt commit), which at one
	// client is most of the master's.
	b.ReportMetric(float64(refCPU.Microseconds())/float64(ops*b.N), "bbolt-cpu-us/create")
	b.ReportMetric(float64(entries)/float64(fsyncs), "entries/fsync")
	// The journal writer's time per commit (bbolt transaction, both
	// fdatasyncs, acknowledgement) against the reference's per
	// transaction: what the master's commits cost beyond bbolt's under the
	// same load of entries. journal-busy is the share of the run the single
	// writer spent committing; the rest it waited for entries to come back
	// from their callers.
	b.ReportMetric(float64(commitTime.Microseconds())/float64(fsyncs), "commit-us")
	b.ReportMetric(float64(refElapsed.Microseconds())/float64(fsyncs), "bbolt-commit-us")
	b.ReportMetric(commitTime.Seconds()/elapsed.Seconds(), "journal-busy")
	b.ReportMetric(float64(ops*b.N)/refElapsed.Seconds(), "bbolt-creates/s")
	b.ReportMetric(refElapsed.Seconds()/elapsed.Seconds(), "ratio-create/bbolt")
	reference(b, "*", "bbolt alone: the same entries in the same number of fsynced transactions")
	reference(b, "bbolt-cpu-us/create", "the reference's own CPU per create (the kernel's work in its fdatasyncs included)")
	reference(b, "bbolt-commit-us", "the reference's time per fsynced transaction, against commit-us, the journal writer's")
}

// BenchmarkFSMasterGetStatus measures GetStatus calls per second from 1, 16
// and 64 concurrent clients on a namespace of 2000 files, two ways:
// clients=N, one gRPC call per stat, and sdk/clients=N, N goroutines
// sharing one SDK client (sdk.Stat), whose concurrent stats the SDK joins
// into GetStatuses batches. The reference, in the same run: as many
// GetLeader calls from N raw clients to the same server, which answers them
// with no namespace work (the per-call floor). cpu-us/getstatus is the CPU
// time (master and clients, in this process) per stat.
func BenchmarkFSMasterGetStatus(b *testing.B) {
	for _, c := range []struct{ clients, ops int }{{1, 5000}, {16, 40000}, {64, 80000}} {
		b.Run(fmt.Sprintf("clients=%d", c.clients), func(b *testing.B) {
			benchStats(b, c.clients, c.ops, false)
			b.Logf("NOTE: FSMasterGetStatus: GetStatus of one of 2,000 files over gRPC, one call each (loopback, %d connections, token auth, the master's interceptors) against GetLeader on the same server and connections; both are reads served from memory, nothing written or verified", benchConns)
		})
	}
	for _, c := range []struct{ clients, ops int }{{1, 5000}, {64, 320000}} {
		b.Run(fmt.Sprintf("sdk/clients=%d", c.clients), func(b *testing.B) {
			benchStats(b, c.clients, c.ops, true)
			b.Logf("NOTE: FSMasterGetStatus/sdk: %d goroutines share one SDK client (one connection, token auth): sdk.Stat of one of 2,000 files; the SDK joins the stats made while one is in flight into one GetStatuses call (a lone stat goes alone), each path checked and answered on its own; against one GetLeader call per stat from %d raw clients; all reads served from memory", c.clients, c.clients)
		})
	}
}

// benchStats runs one FSMasterGetStatus row.
func benchStats(b *testing.B, clients, ops int, viaSDK bool) {
	const files = 2000
	var elapsed, refElapsed, cpu time.Duration
	for range b.N {
		m, conns := benchMaster(b, clients)
		ctx := context.Background()
		run(b, conns[:1], files, func(fs api.FileSystemMasterClient, _, i int) error {
			_, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: fmt.Sprintf("/stat/d%02d/f%05d", i%50, i), Recursive: true, WriteType: api.WriteType_MUST_CACHE})
			return err
		})
		path := func(i int) string {
			k := (i * 7919) % files
			return fmt.Sprintf("/stat/d%02d/f%05d", k%50, k)
		}
		op := func(w, i int) error {
			_, err := conns[w].GetStatus(ctx, &api.GetStatusRequest{Path: path(i)})
			return err
		}
		if viaSDK {
			c := benchSDK(b, m)
			op = func(w, i int) error {
				_, err := c.Stat(ctx, path(i))
				return err
			}
		}
		cpu0 := cpuTime()
		elapsed += runN(b, clients, ops, op)
		cpu += cpuTime() - cpu0
		refElapsed += getLeaderRPCs(b, conns, ops)
	}
	b.ReportMetric(float64(ops*b.N)/elapsed.Seconds(), "getstatus/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(ops*b.N), "cpu-us/getstatus")
	b.ReportMetric(float64(ops*b.N)/refElapsed.Seconds(), "getleader/s")
	b.ReportMetric(refElapsed.Seconds()/elapsed.Seconds(), "ratio-getstatus/getleader")
	reference(b, "*", "GetLeader: one call per stat, from as many raw clients to the same server, no namespace work")
}
