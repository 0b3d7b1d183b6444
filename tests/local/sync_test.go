package local

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestLoadSeesUFSChanges: files added, rewritten (with a new size or the
// same one) and deleted in the UFS behind Alluvium's back are loaded,
// reloaded and forgotten by the next
// load job (which syncs each directory it lists); `fs ls` trusts the
// namespace until asked with --sync; the stale cached copies are dropped
// from the worker.
func TestLoadSeesUFSChanges(t *testing.T) {
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	home, ufsDir := filepath.Join(root, "home"), filepath.Join(root, "ufs")
	dir := filepath.Join(ufsDir, "s")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(name string, n int) []byte {
		t.Helper()
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return b
	}
	put("a.bin", 1000)
	put("b.bin", 2000)
	c := put("c.bin", 3000)
	p := testutil.Start(t, "local", bin, nil, "local", "--home", home, "--ufs", ufsDir, "--workers", "1", "--port-base", fmt.Sprint(base))
	p.WaitLog("ready", 90*time.Second)
	cli, _ := newLocalCLI(t, bin, home)
	run, must := cli.run, cli.must
	load := func(args ...string) {
		t.Helper()
		var job jobJSON
		out := must(append([]string{"job", "submit", "load", "/s", "--wait", "--output", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &job); err != nil || job.Status != "COMPLETED" {
			t.Fatalf("load %v: %q (%v)", args, out, err)
		}
	}
	stat := func(p string) fileJSON {
		t.Helper()
		var st fileJSON
		if err := json.Unmarshal([]byte(must("fs", "stat", p, "--output", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	lsNames := func(args ...string) string {
		t.Helper()
		var fs []fileJSON
		if err := json.Unmarshal([]byte(must(append([]string{"fs", "ls", "--output", "json"}, args...)...)), &fs); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range fs {
			names = append(names, filepath.Base(f.Path))
		}
		return strings.Join(names, ",")
	}

	load()
	for _, f := range []string{"a.bin", "b.bin", "c.bin"} {
		if st := stat("/s/" + f); st.CachedPercent != 100 {
			t.Fatalf("%s after the first load: %+v", f, st)
		}
	}

	// Behind Alluvium's back: one new, one rewritten, one rewritten with
	// the same size (only its mtime tells: the fingerprint is size +
	// mtime), one deleted.
	d := put("d.bin", 4000)
	a := put("a.bin", 1500)
	oldC := stat("/s/c.bin")
	before, err := os.Stat(filepath.Join(dir, "c.bin"))
	if err != nil {
		t.Fatal(err)
	}
	c = put("c.bin", len(c))
	// A rewrite within the file system's mtime granularity would keep the
	// mtime: move it on, as any later rewrite would.
	if err := os.Chtimes(filepath.Join(dir, "c.bin"), before.ModTime().Add(time.Second), before.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "b.bin")); err != nil {
		t.Fatal(err)
	}
	if got := lsNames("/s"); got != "a.bin,b.bin,c.bin" {
		t.Fatalf("fs ls without --sync should trust the namespace: %s", got)
	}
	load("--sync=false")
	if got := lsNames("/s"); got != "a.bin,b.bin,c.bin" {
		t.Fatalf("load --sync=false should not sync: %s", got)
	}

	load()
	if got := lsNames("/s"); got != "a.bin,c.bin,d.bin" {
		t.Fatalf("after a syncing load: %s", got)
	}
	for name, want := range map[string][]byte{"a.bin": a, "c.bin": c, "d.bin": d} {
		st := stat("/s/" + name)
		if st.CachedPercent != 100 || st.Length != int64(len(want)) {
			t.Fatalf("%s after the syncing load: %+v, want length %d cached", name, st, len(want))
		}
		if got := must("fs", "cat", "/s/"+name); got != string(want) {
			t.Fatalf("fs cat %s: %d bytes that differ from the UFS file", name, len(got))
		}
	}
	if st := stat("/s/c.bin"); st.FileID == oldC.FileID {
		t.Errorf("c.bin rewritten with the same size kept inode %d: its old blocks would be served", st.FileID)
	}
	if _, errOut, code := run("fs", "stat", "/s/b.bin"); code != 1 || !strings.Contains(errOut, "/s/b.bin") {
		t.Fatalf("stat of the deleted file: exit %d %q", code, errOut)
	}
	// The worker holds the three current files' blocks, not the old a.bin
	// nor b.bin.
	testutil.Eventually(t, 20*time.Second, func() error {
		var r struct {
			Workers []struct {
				Blocks int64 `json:"blocks"`
				Tiers  []struct {
					UsedBytes int64 `json:"usedBytes"`
				} `json:"tiers"`
			} `json:"workers"`
		}
		if err := json.Unmarshal([]byte(must("fsadmin", "report", "--output", "json")), &r); err != nil {
			return err
		}
		var blocks, used int64
		for _, w := range r.Workers {
			blocks += w.Blocks
			for _, tr := range w.Tiers {
				used += tr.UsedBytes
			}
		}
		if want := int64(len(a) + len(c) + len(d)); blocks != 3 || used != want {
			return fmt.Errorf("worker holds %d blocks, %d bytes; want 3 blocks, %d bytes", blocks, used, want)
		}
		return nil
	})

	// fs ls --sync shows a deletion at once.
	if err := os.Remove(filepath.Join(dir, "c.bin")); err != nil {
		t.Fatal(err)
	}
	if got := lsNames("--sync", "/s"); got != "a.bin,d.bin" {
		t.Fatalf("fs ls --sync after deleting c.bin in the UFS: %s", got)
	}
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("alluvium local exited with %v", err)
	}
}
