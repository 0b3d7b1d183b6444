package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// seqMkdirs creates prefix/d00000.. one after another (so what a damaged
// journal keeps must be a prefix of them) and returns the master's journal
// sequence after each.
func seqMkdirs(t *testing.T, c *cluster, prefix string, from, to int) {
	t.Helper()
	fs, closeFS := c.fsClient()
	defer closeFS()
	for i := from; i < to; i++ {
		if _, err := fs.CreateDirectory(context.Background(), &api.CreateDirectoryRequest{
			Path: fmt.Sprintf("%s/d%05d", prefix, i), Recursive: true, WriteType: api.WriteType_MUST_CACHE}); err != nil {
			t.Fatal(err)
		}
	}
}

// survivors returns how many of prefix/d00000.. exist, checking that they
// are exactly the first ones (a journal cut keeps a prefix, no holes).
func survivors(t *testing.T, c *cluster, prefix string, created int) int {
	t.Helper()
	seen := walk(t, c.Client)
	n := 0
	for i := 0; i < created; i++ {
		if _, ok := seen[fmt.Sprintf("%s/d%05d", prefix, i)]; !ok {
			break
		}
		n++
	}
	for i := n; i < created; i++ {
		if _, ok := seen[fmt.Sprintf("%s/d%05d", prefix, i)]; ok {
			t.Fatalf("%s/d%05d survived but d%05d did not: the recovered journal has a hole", prefix, i, n)
		}
	}
	return n
}

// segments lists the journal's segment files, oldest first.
func segments(t *testing.T, c *cluster) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(c.journalDir(), "logs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".bolt") && !strings.HasPrefix(de.Name(), ".") {
			out = append(out, filepath.Join(c.journalDir(), "logs", de.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// flipAll flips one byte inside every copy of needle in the file (bbolt's
// copy-on-write leaves stale copies of a page; all must be damaged for the
// entry to be lost). It returns the number of copies.
func flipAll(t *testing.T, path string, needle []byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], needle)
		if i < 0 {
			break
		}
		b[off+i+len(needle)/2] ^= 0xff
		n++
		off += i + len(needle)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// lastIndex is the offset of the last copy of needle in the file.
func lastIndex(t *testing.T, path string, needle []byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.LastIndex(b, needle)
}

func (c *cluster) journalSeq(t *testing.T) int64 {
	t.Helper()
	info, err := c.Client.MasterInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.GetJournalSequence()
}

// TestDamagedJournal: the FS master's journal files are damaged while the
// master is down, as a disk or a crash can damage them; each time the
// damage is detected and reported with a log line, and the master recovers
// a consistent prefix of its history and goes on taking writes.
//
//   - a corrupt entry in the tail segment (bytes flipped): the tail is cut
//     just before it, nothing before it is lost;
//   - a torn tail segment (the file truncated through its newest page):
//     the entries salvaged are a prefix, and everything in closed segments
//     stays;
//   - a corrupt closed segment that is not the tail: cutting it would lose
//     the entries after it, so the master refuses to start, naming the
//     file; with the file restored it starts with everything.
func TestDamagedJournal(t *testing.T) {
	c := newCluster(t, testutil.ClusterOptions{Env: []string{"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=100000"}})
	c.StartFSMaster()
	c.Connect()

	// A closed segment (the restart closes it) and a tail.
	seqMkdirs(t, c, "/j", 0, 300)
	if err := c.FSMaster.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.StartFSMaster()
	c.Connect()
	s0 := c.journalSeq(t)
	seqMkdirs(t, c, "/j", 300, 600)
	if d := c.journalSeq(t) - s0; d != 300 {
		t.Fatalf("300 mkdirs made %d journal entries; this test assumes one each", d)
	}
	c.FSMaster.Kill()

	// 1. A corrupt entry in the tail: d00500's entry.
	segs := segments(t, c)
	tail := segs[len(segs)-1]
	if n := flipAll(t, tail, []byte("d00500")); n == 0 {
		t.Fatalf("d00500 not found in the tail segment %s", tail)
	}
	m := c.StartFSMaster()
	m.WaitLog("journal: cut the torn/corrupt tail of the journal", 10*time.Second)
	c.Connect()
	if n := survivors(t, c, "/j", 600); n != 500 {
		t.Fatalf("after a corrupt entry at d00500: %d of the mkdirs survive, want exactly the 500 before it", n)
	}
	// It takes writes again, and they survive the next crash.
	seqMkdirs(t, c, "/j", 500, 800)
	c.FSMaster.Kill()
	c.StartFSMaster()
	c.Connect()
	if n := survivors(t, c, "/j", 800); n != 800 {
		t.Fatalf("after the recovery and a kill -9: %d of 800", n)
	}

	// 2. A torn tail: the file truncated through the page holding the
	// newest entries.
	seqMkdirs(t, c, "/j", 800, 1100)
	c.FSMaster.Kill()
	segs = segments(t, c)
	tail = segs[len(segs)-1]
	off := lastIndex(t, tail, []byte("d01099"))
	if off < 0 {
		t.Fatalf("d01099 not in the tail %s", tail)
	}
	if err := os.Truncate(tail, int64(off/4096*4096)); err != nil {
		t.Fatal(err)
	}
	m = c.StartFSMaster()
	m.WaitLog("journal: cut the torn/corrupt tail of the journal", 10*time.Second)
	c.Connect()
	n := survivors(t, c, "/j", 1100)
	if n < 800 || n >= 1100 {
		t.Fatalf("after tearing the tail: %d of 1100 survive; want the 800 from closed segments and not the torn end", n)
	}
	t.Logf("torn tail: %d of the tail's 300 entries salvaged", n-800)
	seqMkdirs(t, c, "/j", n, n+100)
	if err := c.FSMaster.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	// 3. A corrupt closed segment that is not the tail.
	segs = segments(t, c)
	if len(segs) < 3 {
		t.Fatalf("want several segments, have %v", segs)
	}
	victim := segs[0]
	orig, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	if flipAll(t, victim, []byte("d00150")) == 0 {
		t.Fatalf("d00150 not in %s", victim)
	}
	p := testutil.Start(t, "fsmaster-damaged", c.Bin, c.Env,
		"fsmaster", "--home", c.FSMasterHome(), "--port-base", fmt.Sprint(c.PortBase), "--ufs", "file://"+c.UFSDir)
	if err := p.Wait(60 * time.Second); err == nil {
		t.Fatalf("the master started on a journal with a corrupt closed segment:\n%s", p.Log())
	}
	if log := p.Log(); !strings.Contains(log, filepath.Base(victim)) || strings.Contains(log, "fsmaster ready") {
		t.Fatalf("the refusal does not name the damaged segment %s:\n%s", filepath.Base(victim), log)
	}
	if err := os.WriteFile(victim, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	c.StartFSMaster()
	c.Connect()
	if got := survivors(t, c, "/j", n+100); got != n+100 {
		t.Fatalf("with the segment restored: %d of %d", got, n+100)
	}
}

// TestDamagedCheckpoint: the secondary has written two checkpoints; while
// everything is down the newest one is damaged. The restarted master
// reports it (a log line naming the file), loads the one before it, and
// replays the segments after that one — which it kept for exactly this —
// so no acknowledged mkdir is lost. The next checkpoint removes the
// damaged file.
func TestDamagedCheckpoint(t *testing.T) {
	c := newCluster(t, testutil.ClusterOptions{Env: []string{
		"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=50",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_PERIOD_ENTRIES=200",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_POLL_INTERVAL=100ms",
	}})
	c.StartFSMaster()
	c.Connect()
	sec := c.StartSecondary()
	seqMkdirs(t, c, "/k", 0, 700)
	testutil.Eventually(t, 30*time.Second, func() error {
		if cps := checkpointsOf(t, c); len(cps) < 2 {
			return fmt.Errorf("%d checkpoints", len(cps))
		}
		return nil
	})
	if err := sec.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	seqMkdirs(t, c, "/k", 700, 750)
	c.FSMaster.Kill()
	cps := checkpointsOf(t, c)
	newest, older := cps[len(cps)-1], cps[len(cps)-2]
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i+100 < len(b); i += 4096 {
		b[i+100] ^= 0xff
	}
	if err := os.WriteFile(newest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m := c.StartFSMaster()
	m.WaitLog("journal: skipping invalid checkpoint", 10*time.Second)
	if !strings.Contains(m.Log(), newest) {
		t.Fatalf("the warning does not name %s:\n%s", newest, m.Log())
	}
	m.WaitLog("loaded checkpoint "+older, 10*time.Second)
	c.Connect()
	if n := survivors(t, c, "/k", 750); n != 750 {
		t.Fatalf("after falling back to the older checkpoint: %d of 750 mkdirs", n)
	}
	// The next checkpoint replaces the damaged one.
	c.StartSecondary()
	info, err := c.Client.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, p := range checkpointsOf(t, c) {
			if p == newest && !strings.HasSuffix(p, fmt.Sprintf("/%d.bolt", info.GetSequence())) {
				return fmt.Errorf("damaged %s still there", p)
			}
		}
		return nil
	})
}

func checkpointsOf(t *testing.T, c *cluster) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(c.journalDir(), "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	type cp struct {
		seq  int64
		path string
	}
	var cps []cp
	for _, de := range des {
		var seq int64
		if _, err := fmt.Sscanf(de.Name(), "%d.bolt", &seq); err == nil && !strings.HasPrefix(de.Name(), ".") {
			cps = append(cps, cp{seq, filepath.Join(c.journalDir(), "checkpoints", de.Name())})
		}
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].seq < cps[j].seq })
	out := make([]string, len(cps))
	for i, c := range cps {
		out[i] = c.path
	}
	return out
}

// raftSnapshots lists job master i's snapshot directories, newest last.
func (c *cluster) raftSnapshots(i int) []string {
	c.t.Helper()
	dir := filepath.Join(c.JobMasterHome(i), "jobmaster", "snapshots")
	des, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if de.IsDir() && !strings.HasSuffix(de.Name(), ".tmp") {
			out = append(out, filepath.Join(dir, de.Name()))
		}
	}
	// Names are term-index-millis.
	key := func(p string) [3]int64 {
		var k [3]int64
		fmt.Sscanf(filepath.Base(p), "%d-%d-%d", &k[0], &k[1], &k[2])
		return k
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := key(out[i]), key(out[j])
		for n := range a {
			if a[n] != b[n] {
				return a[n] < b[n]
			}
		}
		return false
	})
	return out
}

// runLoads runs n small load jobs to completion (each caches one file).
func (c *cluster) runLoads(from, to int) {
	c.t.Helper()
	for i := from; i < to; i++ {
		c.UFSTree(fmt.Sprintf("s/j%03d", i), map[string]int{"f": 1000 + i})
		j := c.waitJob(c.submitLoad(map[string]any{"path": fmt.Sprintf("/s/j%03d", i)}), 30*time.Second)
		if j.GetStatus() != api.JobInfo_COMPLETED {
			c.t.Fatalf("load %d: %v", i, j)
		}
	}
}

// TestDamagedRaftSnapshot: a job master has written raft snapshots; while
// it is down the newest snapshot is damaged — bytes flipped in its state,
// then (next round) its state file torn short, then its metadata torn.
// Each time the restarted job master reports the bad snapshot in its log,
// restores the one before it, replays the raft log after that, and serves
// exactly the jobs it had (compared field by field over http), then runs
// new jobs.
func TestDamagedRaftSnapshot(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 1, Env: []string{
		"ALLUVIUM_JOBMASTER_RAFT_SNAPSHOT_THRESHOLD=16",
		"ALLUVIUM_JOBMASTER_RAFT_SNAPSHOT_INTERVAL=100ms",
	}})
	next := 0
	for _, damage := range []struct {
		name string
		do   func(t *testing.T, snap string)
		log  string
	}{
		{"flipped state bytes", func(t *testing.T, snap string) {
			p := filepath.Join(snap, "state.bin")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "CRC checksum failed"},
		{"torn state", func(t *testing.T, snap string) {
			p := filepath.Join(snap, "state.bin")
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/3); err != nil {
				t.Fatal(err)
			}
		}, "CRC checksum failed"},
		{"torn metadata", func(t *testing.T, snap string) {
			p := filepath.Join(snap, "meta.json")
			if err := os.Truncate(p, 10); err != nil {
				t.Fatal(err)
			}
		}, "failed to read metadata"},
	} {
		// Enough jobs for two snapshots since the last restart.
		old := map[string]bool{}
		for _, p := range c.raftSnapshots(0) {
			old[p] = true
		}
		testutil.Eventually(t, 60*time.Second, func() error {
			fresh := 0
			for _, p := range c.raftSnapshots(0) {
				if !old[p] {
					fresh++
				}
			}
			if fresh < 2 {
				c.runLoads(next, next+3)
				next += 3
				return fmt.Errorf("%d new snapshots", fresh)
			}
			return nil
		})
		c.runLoads(next, next+2) // entries after the newest snapshot too
		next += 2
		want := c.waitJobsAgree(1)
		snaps := c.raftSnapshots(0)
		c.JobMasters[0].Kill()
		newest := snaps[len(snaps)-1]
		damage.do(t, newest)
		c.StartJobMaster(0)
		c.JobMasters[0].WaitLog("job master is the leader", 30*time.Second)
		log := c.JobMasters[0].Log()
		if !strings.Contains(log, damage.log) || !strings.Contains(log, filepath.Base(newest)) {
			t.Fatalf("%s: the damage of %s was not reported (%q):\n%s", damage.name, newest, damage.log, log)
		}
		if !strings.Contains(log, "restored from snapshot") || !strings.Contains(log, filepath.Base(snaps[len(snaps)-2])) {
			t.Fatalf("%s: did not restore the older snapshot %s:\n%s", damage.name, snaps[len(snaps)-2], log)
		}
		got := c.waitJobsAgree(1)
		if d := diffJobs(want, got); d != "" || len(got) != next {
			t.Fatalf("%s: %d jobs after the restart (want %d): %s", damage.name, len(got), next, d)
		}
		t.Logf("%s: restored %s, %d jobs intact", damage.name, filepath.Base(snaps[len(snaps)-2]), len(got))
		c.WaitWorkers(1)
		c.runLoads(next, next+1)
		next++
	}
}
