package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// TestFullTierKeepsWhatCannotBeReRead: a full tier never evicts a pinned
// block, nor the only copy of bytes not yet in the UFS. Into a 32 MiB MEM
// tier go 12 MiB MUST_CACHE and 12 MiB ASYNC_THROUGH (its persist far
// off) files and three 12 MiB pinned MUST_CACHE files — the put that does
// not fit fails with ResourceExhausted naming the tier (with an HDD tier,
// the first that does not fit lands there, and the next fails naming
// both) and every file put stays readable. A file pinned after it was
// written (`fs pin`) keeps its cached copy while newer unpinned ones are
// evicted; a file once persisted gives its room up (the UFS has it).
func TestFullTierKeepsWhatCannotBeReRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdd  bool
	}{{"MEM only", false}, {"MEM and HDD", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tiers := fmt.Sprintf("    - alias: MEM\n      path: %s/mem\n      quota: 32MiB\n", dir)
			if tc.hdd {
				tiers += fmt.Sprintf("    - alias: HDD\n      path: %s/hdd\n      quota: 16MiB\n", dir)
			}
			c := startLocal(t, usersYAML+"worker:\n  tiers:\n"+tiers, "ALLUVIUM_FSMASTER_PERSIST_DELAY=1h")
			ctx := context.Background()
			c.must(t, c.token, "fs", "mkdir", "-p", "/users/alice")
			c.must(t, c.token, "fs", "chown", "alice:alice", "/users/alice")
			alice := c.client(t, aliceToken)
			data := map[string][]byte{}
			put := func(name string, size int, args ...string) (string, int) {
				b := testutil.RandBytes(size)
				local := filepath.Join(t.TempDir(), name)
				if err := os.WriteFile(local, b, 0o644); err != nil {
					t.Fatal(err)
				}
				p := "/users/alice/" + name
				_, errOut, code := c.cli(t, aliceToken, append(append([]string{"fs", "put"}, args...), local, p)...)
				if code == 0 {
					data[p] = b
				} else if _, err := alice.Stat(ctx, p); !isCode(err, codes.NotFound) {
					t.Errorf("the refused put of %s left it: %v", p, err)
				}
				return errOut, code
			}
			mustPut := func(name string, size int, args ...string) {
				t.Helper()
				if errOut, code := put(name, size, args...); code != 0 {
					t.Fatalf("put %s: exit %d: %s", name, code, errOut)
				}
			}
			refused := func(name string, size int, tiers []string, args ...string) {
				t.Helper()
				errOut, code := put(name, size, args...)
				if code != 1 || !strings.Contains(strings.ToLower(errOut), "no room") {
					t.Fatalf("put %s into full tiers: exit %d %q; want a refusal (no room)", name, code, errOut)
				}
				for _, tier := range tiers {
					if !strings.Contains(errOut, tier) {
						t.Fatalf("put %s: %q does not name tier %s", name, errOut, tier)
					}
				}
			}
			readable := func(when string) {
				t.Helper()
				for p, b := range data {
					if out := c.must(t, aliceToken, "fs", "cat", p); !bytes.Equal([]byte(out), b) {
						t.Fatalf("%s: %s reads %d bytes, not the %d put", when, p, len(out), len(b))
					}
				}
			}
			// A worker's copy of block 0 of p is pinned on disk ("<id>.pin";
			// `alluvium local` puts worker i's tiers under worker-<i>).
			pinnedOnDisk := func(p string) (bool, error) {
				fi, err := alice.Stat(ctx, p)
				if err != nil {
					return false, err
				}
				blk := fmt.Sprint(api.BlockID(fi.GetFileId(), 0))
				for _, tier := range []string{"mem", "hdd"} {
					if _, err := os.Stat(filepath.Join(dir, tier, "worker-0", blk+".pin")); err == nil {
						return true, nil
					}
					if _, err := os.Stat(filepath.Join(dir, tier, "worker-0", blk)); err == nil {
						return false, nil
					}
				}
				return false, errors.New("no cached copy")
			}

			// Only in the cache: a MUST_CACHE file, an ASYNC_THROUGH file
			// not persisted yet, and pinned files.
			mustPut("cached-only", 12<<20, "--write-type", "MUST_CACHE")
			mustPut("async", 12<<20, "--write-type", "ASYNC_THROUGH")
			full := []string{"MEM"}
			if tc.hdd {
				mustPut("pinned", 12<<20, "--write-type", "MUST_CACHE", "--pin") // room in HDD
				full = []string{"MEM", "HDD"}
			}
			refused("pinned-too-many", 12<<20, full, "--write-type", "MUST_CACHE", "--pin")
			refused("cached-too-many", 12<<20, full, "--write-type", "MUST_CACHE")
			readable("after the refused puts")

			// Pinned after it was written: its copy is kept, the newer
			// unpinned one goes when room is needed.
			mustPut("old-pinned-later", 4<<20, "--write-type", "CACHE_THROUGH")
			c.must(t, aliceToken, "fs", "pin", "/users/alice/old-pinned-later")
			testutil.Eventually(t, 30*time.Second, func() error {
				if ok, err := pinnedOnDisk("/users/alice/old-pinned-later"); !ok {
					return fmt.Errorf("the worker has not pinned it (%v)", err)
				}
				return nil
			})
			for _, name := range []string{"newer", "newest"} {
				mustPut(name, 4<<20, "--write-type", "CACHE_THROUGH")
			}
			if fi, err := alice.Stat(ctx, "/users/alice/old-pinned-later"); err != nil || fi.GetCachedPercent() != 100 {
				t.Errorf("the file pinned after it was written was evicted: %v %v", fi, err)
			}
			readable("after the unpinned copies were evicted")

			// Persisted (and not pinned), a file gives its room up.
			c.must(t, aliceToken, "job", "submit", "persist", "/users/alice/cached-only", "--wait")
			testutil.Eventually(t, 30*time.Second, func() error {
				if ok, err := pinnedOnDisk("/users/alice/cached-only"); ok || err != nil {
					return fmt.Errorf("still pinned (%v)", err)
				}
				return nil
			})
			mustPut("after-persist", 12<<20, "--write-type", "MUST_CACHE")
			readable("after a persisted file gave its room up")
		})
	}
}
