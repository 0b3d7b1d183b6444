package fsmaster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestSetTtlCLI: `fs setTtl` on the real master deletes a file (and its UFS
// copy) once its TTL runs out; `fs unsetTtl` saves another; bad TTLs and
// actions are usage errors that change nothing.
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
	n.mustCLI("fs", "setTtl", "/scratch/b", "60000")
	n.mustCLI("fs", "unsetTtl", "/scratch/b")
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
	time.Sleep(300 * time.Millisecond)
	if out := n.mustCLI("fs", "ls", "/scratch"); !strings.Contains(out, "/scratch/b") {
		t.Errorf("unsetTtl did not keep /scratch/b:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(ufs, "scratch/b")); err != nil {
		t.Errorf("/scratch/b's UFS copy: %v", err)
	}
}
