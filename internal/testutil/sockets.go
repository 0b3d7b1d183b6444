package testutil

import (
	"io/fs"
	"path/filepath"
	"testing"
)

// UnixSockets counts the Unix socket files under dir: what processes that
// listened there left behind once they are gone.
func UnixSockets(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSocket != 0 {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
