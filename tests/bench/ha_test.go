package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
)

// The embedded journal's figures (issue 15): creates/s of three FS masters
// sharing a raft journal beside one master with a local journal, the time
// from SIGKILL of the leader to the first create acknowledged by the next
// one beside a single master restarted at once, and the time a cut-off
// leader needs to be a caught-up standby once its link is back beside a
// standby restarted after missing the same writes.

// inProcessMasters starts n FS masters in this process — one with a local
// journal, or n sharing an embedded journal over loopback TCP — each on
// its own journal dir, and returns a client of them that follows the
// leader (as every caller's client layer does) and a stop function.
func inProcessMasters(b *testing.B, n int) (*client.FSMaster, []*fsmaster.Master, func()) {
	b.Helper()
	ports := make([]int, 2*n)
	for i := range ports {
		ports[i] = testutil.FreePort(b)
	}
	var peers, addrs []string
	for i := 0; i < n; i++ {
		peers = append(peers, fmt.Sprintf("m%d=127.0.0.1:%d|127.0.0.1:%d", i, ports[n+i], ports[i]))
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	var ms []*fsmaster.Master
	for i := 0; i < n; i++ {
		l := config.NewLoader()
		l.Set("home", b.TempDir())
		l.Set("fsmaster.rpc-port", ports[i])
		l.Set("fsmaster.http-port", 0)
		l.Set("fsmaster.host", "127.0.0.1")
		if n > 1 {
			l.Set("fsmaster.journal.type", "embedded")
			l.Set("fsmaster.raft.node-id", fmt.Sprintf("m%d", i))
			l.Set("fsmaster.raft.port", ports[n+i])
			l.Set("fsmaster.raft.peers", strings.Join(peers, ","))
		}
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
		ms = append(ms, m)
	}
	cl, err := client.NewFSMaster(addrs, client.Defaults(rpc.ClientOptions{}))
	if err != nil {
		b.Fatal(err)
	}
	stop := func() {
		cl.Close()
		for _, m := range ms {
			_ = m.Stop(context.Background())
		}
	}
	return cl, ms, stop
}

// createPairs runs ops MUST_CACHE create+complete pairs over clients
// concurrent callers of fs, each in its own directory (run, as
// FSMasterCreate does), and returns the time.
func createPairs(b *testing.B, fs api.FileSystemMasterClient, clients, ops int, tag string) time.Duration {
	b.Helper()
	ctx := context.Background()
	callers := make([]api.FileSystemMasterClient, clients)
	for w := range callers {
		callers[w] = fs
		if _, err := fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/%s/c%02d", tag, w), Recursive: true}); err != nil {
			b.Fatal(err)
		}
	}
	return run(b, callers, ops, func(fs api.FileSystemMasterClient, w, i int) error {
		p := fmt.Sprintf("/%s/c%02d/f%07d", tag, w, i)
		resp, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: p, WriteType: api.WriteType_MUST_CACHE})
		if err == nil {
			_, err = fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: p, Length: 1 << 20, FileId: resp.GetInfo().GetFileId()})
		}
		return err
	})
}

// BenchmarkFSMasterEmbeddedCreate: create+complete pairs per second from
// 64 concurrent clients against three FS masters sharing an embedded
// journal (every entry on a majority's disk before the answer), and, in
// the same run, against one master with a local journal.
func BenchmarkFSMasterEmbeddedCreate(b *testing.B) {
	const clients, ops = 64, 16000
	var emb, single time.Duration
	var entries, fsyncs int64
	for range b.N {
		cl, _, stop := inProcessMasters(b, 1)
		single += createPairs(b, cl.FS(), clients, ops, "single")
		stop()
		cl, ms, stop := inProcessMasters(b, 3)
		emb += createPairs(b, cl.FS(), clients, ops, "embedded")
		for _, m := range ms {
			// Only the leader makes entries; Batches are its raft log
			// writes (one fsync each).
			if st := m.JournalStats(); st.Entries > 0 {
				entries += st.Entries
				fsyncs += st.Batches
			}
		}
		stop()
	}
	b.ReportMetric(float64(ops*b.N)/emb.Seconds(), "creates/s")
	b.ReportMetric(float64(ops*b.N)/single.Seconds(), "single-creates/s")
	b.ReportMetric(single.Seconds()/emb.Seconds(), "ratio-embedded/single")
	if fsyncs > 0 {
		b.ReportMetric(float64(entries)/float64(fsyncs), "entries/fsync")
	}
	reference(b, "*", "single-creates/s: one FS master with a local journal, the same calls in the same run")
	reference(b, "single-creates/s", "the reference itself")
	b.Logf("NOTE: %s: %d clients, %d MUST_CACHE create+complete pairs, over gRPC on loopback through the client layer (leader-following) on both sides; embedded: three masters in this process, raft over loopback TCP, each master's raft log its own bbolt file fsynced on the same disk, an answer once a majority has the entry; single: one master, local journal (bbolt segments, fsync per group commit), no secondary; entries/fsync: the leader's journal entries per raft log write", strings.TrimPrefix(b.Name(), "Benchmark"), clients, ops)
}

// failoverRun starts creators on the cluster, kills (and for the single
// master restarts) at once, and returns the time from the kill to the
// first create acknowledged afterwards.
func failoverRun(b *testing.B, fsMasters int) time.Duration {
	b.Helper()
	c := testutil.NewCluster(b, testutil.ClusterOptions{FSMasters: fsMasters, ReadyTimeout: 60 * time.Second})
	c.StartFSMaster()
	cl, err := client.NewFSMaster(c.MasterAddrs, client.Defaults(rpc.ClientOptions{Token: testutil.ClusterToken()}))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := cl.FS().CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/f"}); err != nil {
		b.Fatal(err)
	}
	var (
		acks  atomic.Int64
		dead  atomic.Int64 // unix ns when the killed process was gone
		first = make(chan time.Time, 1)
		wg    sync.WaitGroup
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				sent := time.Now()
				_, err := cl.FS().CreateFile(ctx, &api.CreateFileRequest{Path: fmt.Sprintf("/f/w%02d-%07d", w, i), WriteType: api.WriteType_MUST_CACHE})
				now := time.Now()
				if err != nil {
					continue
				}
				acks.Add(1)
				// Only a create sent once the killed process was gone
				// counts: an answer it sent before dying may arrive late.
				if k := dead.Load(); k != 0 && sent.UnixNano() > k {
					select {
					case first <- now:
					default:
					}
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	for acks.Load() < 300 {
		time.Sleep(5 * time.Millisecond)
	}
	victim := 0
	if fsMasters > 1 {
		victim = c.WaitFSLeader()
	}
	t0 := time.Now()
	c.FSMasters[victim].Kill() // returns once the process is gone
	dead.Store(time.Now().UnixNano())
	if fsMasters == 1 {
		// What a single master can do at best: a supervisor restarts it at once.
		c.StartFSMasterOf(0)
	}
	select {
	case t := <-first:
		return t.Sub(t0)
	case <-time.After(60 * time.Second):
		b.Fatal("no create acknowledged within 60 s of the kill")
		return 0
	}
}

// BenchmarkFSMasterFailover: SIGKILL of the leading FS master (of three
// sharing an embedded journal) while 16 clients create files, to the
// first create acknowledged by the next leader, through the client layer.
// The reference, in the same run: one master with a local journal
// SIGKILLed and restarted at once, to its first acknowledged create.
func BenchmarkFSMasterFailover(b *testing.B) {
	if err := os.Setenv("ALLUVIUM_BIN", plainBinary(b)); err != nil {
		b.Fatal(err)
	}
	var emb, single []float64
	for range b.N {
		emb = append(emb, failoverRun(b, 3).Seconds())
		single = append(single, failoverRun(b, 1).Seconds())
	}
	b.ReportMetric(medianOf(emb), "failover-s")
	b.ReportMetric(medianOf(single), "restart-s")
	reference(b, "failover-s", "restart-s: a single master killed and restarted at once, the same clients, the same run")
	reference(b, "restart-s", "the reference itself")
	b.Logf("NOTE: %s: real processes (plain binary) on loopback; 16 clients creating MUST_CACHE files through the client layer (leader-following, its retry backoff included); failover-s: kill -9 of the leader of three FS masters (raft heartbeat and election timeouts 500 ms, the defaults) to the first create acknowledged afterwards; restart-s: kill -9 of a single master (local journal) restarted at once, same measure", strings.TrimPrefix(b.Name(), "Benchmark"))
}

// BenchmarkFSMasterPartitionHeal: three FS masters on three network
// namespaces; the leader's link goes down, the others elect and take 300
// writes, the link comes back: the time until the old leader is a
// caught-up standby. The reference, in the same run and cluster: a standby
// SIGKILLed, the same writes made, restarted: the time until it has caught
// up. Needs root (skipped otherwise).
func BenchmarkFSMasterPartitionHeal(b *testing.B) {
	bin := plainBinary(b)
	if err := os.Setenv("ALLUVIUM_BIN", bin); err != nil {
		b.Fatal(err)
	}
	n := testutil.NewNet(b)
	dir := b.TempDir()
	var hosts []*testutil.Host
	var peers []string
	for i := 1; i <= 3; i++ {
		h := n.AddHost(fmt.Sprintf("m%d", i))
		hosts = append(hosts, h)
		peers = append(peers, fmt.Sprintf("m%d=m%d:19997|m%d:19998", i, i, i))
	}
	cli := n.AddHost("client")
	procs := make([]*testutil.Process, 3)
	start := func(i int) {
		procs[i] = hosts[i].Start(fmt.Sprintf("fsmaster-m%d", i+1), []string{"ALLUVIUM_FSMASTER_HOST=" + hosts[i].Name, "ALLUVIUM_FSMASTER_BIND_HOST=0.0.0.0",
			"ALLUVIUM_LOG_LEVEL=warn"}, "fsmaster", "--home", filepath.Join(dir, hosts[i].Name), "--journal-type", "embedded",
			"--node-id", hosts[i].Name, "--peers", strings.Join(peers, ","), "--ufs", "file://"+dir)
	}
	for i := range hosts {
		start(i)
	}
	env := []string{"ALLUVIUM_MASTER=m1:19998,m2:19998,m3:19998"}
	group := func() map[string][2]string {
		out, _, code := cli.Run(env, "fsadmin", "journal", "quorum", "info", "--output", "json")
		roles := map[string][2]string{}
		if code != 0 {
			return roles
		}
		var g struct {
			Masters []struct {
				ID   string `json:"id"`
				Role string `json:"role"`
				Lag  uint64 `json:"lag"`
			} `json:"masters"`
		}
		if json.Unmarshal([]byte(out), &g) == nil {
			for _, m := range g.Masters {
				roles[m.ID] = [2]string{m.Role, fmt.Sprint(m.Lag)}
			}
		}
		return roles
	}
	leader := func(not string) string {
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for id, r := range group() {
				if r[0] == "LEADER" && id != not {
					return id
				}
			}
		}
		b.Fatal("no FS master leads")
		return ""
	}
	caughtUp := func(id string) time.Time {
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
			if r := group()[id]; r[0] == "FOLLOWER" && r[1] == "0" {
				return time.Now()
			}
		}
		b.Fatalf("%s never caught up", id)
		return time.Time{}
	}
	writes := func(tag string) {
		args := []string{"fs", "mkdir"}
		for i := 0; i < 300; i++ {
			args = append(args, fmt.Sprintf("/%s/d%03d", tag, i))
		}
		if out, errOut, code := cli.Run(env, "fs", "mkdir", "/"+tag); code != 0 {
			b.Fatalf("mkdir: %s%s", out, errOut)
		}
		if out, errOut, code := cli.Run(env, args...); code != 0 {
			b.Fatalf("mkdir: %s%s", out, errOut)
		}
	}
	var heal, restart []float64
	for run := 0; run < b.N; run++ {
		l := leader("")
		var h *testutil.Host
		for _, x := range hosts {
			if x.Name == l {
				h = x
			}
		}
		h.LinkDown()
		leader(l)
		writes(fmt.Sprintf("p%d", run))
		t0 := time.Now()
		h.LinkUp()
		heal = append(heal, caughtUp(l).Sub(t0).Seconds())
		// The reference: a standby down for the same writes, restarted.
		s := leader("")
		var si int
		for i, x := range hosts {
			if x.Name != s {
				si = i
				break
			}
		}
		procs[si].Kill()
		writes(fmt.Sprintf("r%d", run))
		t0 = time.Now()
		start(si)
		restart = append(restart, caughtUp(hosts[si].Name).Sub(t0).Seconds())
	}
	b.ReportMetric(medianOf(heal), "heal-s")
	b.ReportMetric(medianOf(restart), "standby-restart-s")
	reference(b, "heal-s", "standby-restart-s: a standby killed, the same 300 writes made, restarted (process start included), the same run and cluster")
	reference(b, "standby-restart-s", "the reference itself")
	b.Logf("NOTE: %s: three FS masters (plain binary) each in its own network namespace on a bridge; heal-s: from the leader's link coming back (ip link set up) to `fsadmin journal quorum info` showing it FOLLOWER with lag 0, polled from a client namespace (each poll a CLI run: ~0.1 s granularity); the group took 300 mkdirs while it was cut off", strings.TrimPrefix(b.Name(), "Benchmark"))
}
