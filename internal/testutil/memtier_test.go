package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/alluvium/alluvium/internal/config"
)

// The MEM tiers of the worker dirs under a home go with it; another
// home's stay.
func TestRemoveMemTiers(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm here")
	}
	home, other := t.TempDir(), t.TempDir()
	worker := filepath.Join(home, "workers", "0")
	if err := os.MkdirAll(worker, 0o755); err != nil {
		t.Fatal(err)
	}
	mine := config.DefaultMemTierPrefix(worker) + "40001"
	theirs := config.DefaultMemTierPrefix(other) + "40001"
	for _, d := range []string{mine, theirs} {
		if err := os.MkdirAll(filepath.Join(d, ".tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	if got := homeArg([]string{"local", "--home", home, "--workers", "1"}); got != home {
		t.Fatalf("homeArg = %q, want %q", got, home)
	}
	if got := homeArg([]string{"worker", "--home=" + home}); got != home {
		t.Fatalf("homeArg(--home=) = %q, want %q", got, home)
	}
	RemoveMemTiers(home)
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("%s (a worker dir under the home's MEM tier) still there: %v", mine, err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("%s (another home's MEM tier) removed: %v", theirs, err)
	}
}
