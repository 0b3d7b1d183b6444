package fsmaster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestSetTtlCLI: `fs setTtl` on the real master deletes a file (and its UFS
// copy) once its TTL runs out; `fs unsetTtl` saves another whose TTL runs
// out before a sentinel's is seen to; bad TTLs and actions are usage
// errors that change nothing.
func TestSetTtlCLI(t *testing.T) {
	n := newNode(t)
	n.master("ALLUVIUM_FSMASTER_TTL_CHECK_INTERVAL=100ms")
	ufs := filepath.Join(n.home, "ufs")
	for _, f := range []string{"scratch/a", "scratch/b"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ufs, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ufs, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.mustCLI("fs", "ls", "/scratch") // load the UFS files into the namespace

	for _, bad := range [][]string{
		{"fs", "setTtl", "/scratch/a", "soon"},
		{"fs", "setTtl", "/scratch/a", "-5"},
		{"fs", "setTtl", "--action", "shred", "/scratch/a", "1s"},
		{"fs", "setTtl", "/scratch/a"},
	} {
		_, errOut, code := n.cli(bad...)
		if code != 2 || !strings.Contains(errOut, "setTtl") && !strings.Contains(errOut, "TTL") {
			t.Errorf("alluvium %s: exit %d, %q; want a usage error (2)", strings.Join(bad, " "), code, errOut)
		}
	}
	// The files are old enough (created at the ls): a TTL in the past
	// expires at the next check.
	n.mustCLI("fs", "setTtl", "/scratch/a", "1ms")
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(ufs, "scratch/a")); !os.IsNotExist(err) {
			return fmt.Errorf("UFS copy: %v", err)
		}
		if out, errOut, code := n.cli("fs", "stat", "/scratch/a"); code != 1 || !strings.Contains(errOut, "/scratch/a") {
			return fmt.Errorf("stat of the expired file: exit %d %q %q", code, out, errOut)
		}
		return nil
	})

	// unsetTtl: b gets a TTL that runs out shortly and loses it at once;
	// the sentinel's runs out just after b's would have. The check that
	// deletes the sentinel looks at every TTL due by then, b's included
	// had the unset not held — so b must still be there, without a sleep.
	// On a machine so slow that the unset came after b's deadline, b may
	// be gone for a good reason: start again with a new file and a longer
	// margin.
	var keep string
	var deadline time.Time
	for margin, try := 2*time.Second, 0; ; margin, try = 2*margin, try+1 {
		if try == 3 {
			t.Fatalf("setTtl + unsetTtl took longer than %s three times", margin/2)
		}
		keep = fmt.Sprintf("/scratch/keep%d", try)
		testutil.WriteFile(t, filepath.Join(ufs, keep), []byte("k"))
		n.mustCLI("fs", "ls", "--sync", "/scratch") // the UFS changed behind the master's back
		created := n.ctime(keep)
		deadline = time.Now().Add(margin)
		n.mustCLI("fs", "setTtl", keep, fmt.Sprintf("%dms", deadline.UnixMilli()-created))
		n.mustCLI("fs", "unsetTtl", keep)
		if time.Now().Before(deadline) {
			break
		}
	}
	n.mustCLI("fs", "setTtl", "/scratch/b", fmt.Sprintf("%dms", deadline.UnixMilli()+1-n.ctime("/scratch/b")))
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(ufs, "scratch/b")); !os.IsNotExist(err) {
			return fmt.Errorf("the sentinel's UFS copy: %v", err)
		}
		return nil
	})
	if _, errOut, code := n.cli("fs", "stat", keep); code != 0 {
		t.Errorf("unsetTtl did not keep %s: %s", keep, errOut)
	}
	if _, err := os.Stat(filepath.Join(ufs, keep)); err != nil {
		t.Errorf("%s's UFS copy: %v", keep, err)
	}
}

// ctime is a path's creation time (ms) as the master reports it (loading
// it from the UFS if need be).
func (n *node) ctime(p string) int64 {
	n.t.Helper()
	var f struct {
		CreationTimeMs int64 `json:"creationTimeMs"`
	}
	out := n.mustCLI("fs", "stat", "--output", "json", p)
	if err := json.Unmarshal([]byte(out), &f); err != nil || f.CreationTimeMs == 0 {
		n.t.Fatalf("fs stat --output json %s: %v\n%s", p, err, out)
	}
	return f.CreationTimeMs
}
