package ufs

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// A file cut short under a mapping being hashed faults past its end: the
// hash fails with an error, the process goes on.
func TestHashMappedShortFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Mapped as if it still were 3 MiB long.
	if err := hashMapped(int(f.Fd()), 0, 3<<20, 0, sha256.New()); err == nil {
		t.Fatal("hashing past the end of the file succeeded")
	}
	if err := hashFD(int(f.Fd()), 0, 1<<20, sha256.New()); err != nil {
		t.Fatalf("hashing the whole file: %v", err)
	}
}
