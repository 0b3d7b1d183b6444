package journal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/alluvium/alluvium/api"
)

// The crash tests re-run this test binary as a child (JOURNAL_TEST_CHILD
// names its job), kill it with SIGKILL and check what survived.
const childEnv = "JOURNAL_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "append":
		childAppend(os.Getenv("JOURNAL_TEST_DIR"))
	case "checkpoint":
		childCheckpoint(os.Getenv("JOURNAL_TEST_DIR"))
	default:
		fmt.Fprintln(os.Stderr, "unknown child job", os.Getenv(childEnv))
		os.Exit(2)
	}
}

// childAppend appends from 32 goroutines forever, printing "ack <seq>
// <op_time_ms>" for each entry once Wait returned nil.
func childAppend(dir string) {
	j, err := Open(Options{Dir: dir, SegmentEntries: 300, MaxBatch: 64})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Printf("start %d\n", j.LastSequence())
	for g := int64(0); g < 32; g++ {
		go func() {
			for i := int64(0); ; i++ {
				e := entry(g)
				e.OpTimeMs = g<<32 | i // identifies the append
				if err := j.Append(e).Wait(context.Background()); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(1)
				}
				// One write(2) per line: lines from goroutines never interleave.
				os.Stdout.WriteString(fmt.Sprintf("ack %d %d\n", e.Sequence, e.OpTimeMs))
			}
		}()
	}
	select {}
}

// startChild runs this test binary as a child doing job on dir.
func startChild(t *testing.T, job, dir string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+job, "JOURNAL_TEST_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

func TestKill9LosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	acked := map[int64]int64{} // seq -> op_time_ms
	for round, target := range []int{1500, 700, 2500, 333, 1200} {
		cmd, sc := startChild(t, "append", dir)
		n := 0
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "ack" {
				seq, _ := strconv.ParseInt(f[1], 10, 64)
				op, _ := strconv.ParseInt(f[2], 10, 64)
				if old, dup := acked[seq]; dup && old != op {
					t.Fatalf("sequence %d acknowledged twice (%d, then %d)", seq, old, op)
				}
				acked[seq] = op
				if n++; n == target {
					cmd.Process.Kill() // SIGKILL mid-flight; keep reading what it printed
				}
			}
		}
		deadline.Stop()
		cmd.Wait()
		if n < target {
			t.Fatalf("round %d: child stopped after %d acks", round, n)
		}

		j := openJournal(t, Options{Dir: dir, SegmentEntries: 300})
		got := map[int64]int64{}
		if err := j.Replay(context.Background(), 0, func(e *api.JournalEntry) error {
			got[e.Sequence] = e.OpTimeMs
			return nil
		}); err != nil {
			t.Fatalf("round %d: replay after kill -9: %v", round, err)
		}
		for seq, op := range acked {
			if g, ok := got[seq]; !ok || g != op {
				t.Fatalf("round %d: acknowledged entry %d (op %d) lost after kill -9 (journal has %v, last %d)",
					round, seq, op, ok, j.LastSequence())
			}
		}
		t.Logf("round %d: %d acknowledged in total, journal ends at %d in %d segments", round, len(acked), j.LastSequence(), len(j.Segments()))
		j.Close()
	}
}

// childCheckpoint writes a good checkpoint at 10, prints "good", then
// starts one at 20 whose content takes long, printing "writing" halfway.
func childCheckpoint(dir string) {
	if _, err := WriteCheckpoint(dir, 10, fillCheckpoint(2000, nil)); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Println("good")
	_, err := WriteCheckpoint(dir, 20, fillCheckpoint(2000, func() {
		fmt.Println("writing")
		time.Sleep(time.Minute)
	}))
	fmt.Fprintln(os.Stderr, "child: the parent did not kill me:", err)
	os.Exit(1)
}

// fillCheckpoint returns a checkpoint writer putting n keys in bucket
// "inodes"; mid is called halfway (to crash there).
func fillCheckpoint(n int, mid func()) func(tx *bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("inodes"))
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if i == n/2 && mid != nil {
				mid()
			}
			if err := b.Put([]byte(fmt.Sprintf("inode-%08d", i)), []byte(fmt.Sprintf("value of inode %d", i))); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestCheckpointKilledMidWriteIsNeverLoaded(t *testing.T) {
	dir := t.TempDir()
	cmd, sc := startChild(t, "checkpoint", dir)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "writing" {
			cmd.Process.Kill()
		}
	}
	cmd.Wait()
	if strings.Join(lines, ",") != "good,writing" {
		t.Fatalf("child printed %q", lines)
	}
	_, temps, err := listCheckpoints(dir)
	if err != nil || len(temps) != 1 {
		t.Fatalf("want the dead writer's temp file, got %v, %v", temps, err)
	}
	log, logs := observed(0)
	path, seq, err := LatestCheckpoint(dir, log)
	if err != nil || seq != 10 || path != CheckpointPath(dir, 10) {
		t.Fatalf("LatestCheckpoint = %q, %d, %v; want the one at 10", path, seq, err)
	}
	if logs.FilterMessage("journal: skipping unfinished checkpoint (temp file)").Len() != 1 {
		t.Fatalf("no log line about the temp file: %v", logs.All())
	}
	// A fresh temp file might belong to a live writer: kept. An old one
	// nobody locks is removed.
	if err := RemoveOldCheckpoints(dir, 1); err != nil {
		t.Fatal(err)
	}
	if _, temps, _ := listCheckpoints(dir); len(temps) != 1 {
		t.Fatalf("a fresh temp file was removed")
	}
	old := time.Now().Add(-2 * staleTempAge)
	os.Chtimes(temps[0], old, old)
	if err := RemoveOldCheckpoints(dir, 1); err != nil {
		t.Fatal(err)
	}
	if _, temps, _ := listCheckpoints(dir); len(temps) != 0 {
		t.Fatalf("stale temp file kept: %v", temps)
	}
}
