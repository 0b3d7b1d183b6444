package fsmaster

import (
	"fmt"
	"testing"

	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/internal/strslab"
	"github.com/alluvium/alluvium/ufs"
)

// TestStrSlabJoins checks that a page's strings built in a strSlab are
// those paths.Join and ufs.JoinURI make, and that none changes as later
// ones fill its chunk and the chunks after it.
func TestStrSlabJoins(t *testing.T) {
	var s strSlab
	type built struct{ got, want string }
	var all []built
	dirs := []string{"/", "/a", "/a/b c", "/é/ü"}
	roots := []string{"file:///ufs", "file:///ufs/", "s3://bucket", "s3://bucket/pre/"}
	rels := []string{"", "/", "x", "/x/y", "x/y/", "dir/é"}
	for i := range 5000 { // several chunks
		name := fmt.Sprintf("f%06d", i)
		d := dirs[i%len(dirs)]
		all = append(all, built{s.join(d, name), paths.Join(d, name)})
		r, rel := roots[i%len(roots)], rels[i%len(rels)]
		all = append(all, built{s.joinURI(r, rel), ufs.JoinURI(r, rel)})
	}
	long := string(make([]byte, 2*strslab.DefaultChunk)) // more than a chunk
	all = append(all, built{s.join("/d", long), paths.Join("/d", long)})
	for i, b := range all {
		if b.got != b.want {
			t.Fatalf("string %d: %q, want %q", i, b.got, b.want)
		}
	}
	var nilSlab *strSlab // nil: plain strings
	if got := nilSlab.join("/", "x"); got != "/x" {
		t.Fatalf("nil slab join: %q", got)
	}
	if got := nilSlab.joinURI("file:///u/", "/x"); got != "file:///u/x" {
		t.Fatalf("nil slab joinURI: %q", got)
	}
}

// TestCompactFingerprint checks which fingerprints an inode keeps as an
// mtime (a local UFS's canonical "<length>:<mtime ns>" of its own length)
// and that telling costs no allocation (one per file learned, before).
func TestCompactFingerprint(t *testing.T) {
	for _, c := range []struct {
		fp     string
		length int64
		ns     int64
		ok     bool
	}{
		{"0:1700000000123456789", 0, 1700000000123456789, true},
		{"4096:5", 4096, 5, true},
		{"12:-3", 12, -3, true}, // before 1970
		{ufs.LocalFingerprint(7, 42), 7, 42, true},
		{"1:5", 0, 0, false},  // another length
		{"0:05", 0, 0, false}, // not canonical: would not come back the same
		{"0:+5", 0, 0, false},
		{"00:5", 0, 0, false},
		{"0:", 0, 0, false},
		{":5", 0, 0, false},
		{"5", 5, 0, false},
		{"etag-abc", 0, 0, false},
		{"", 0, 0, false},
	} {
		ns, ok := compactFingerprint(c.fp, c.length)
		if ok != c.ok || (ok && ns != c.ns) {
			t.Errorf("compactFingerprint(%q, %d) = %d, %v; want %d, %v", c.fp, c.length, ns, ok, c.ns, c.ok)
		}
	}
	fp := ufs.LocalFingerprint(123456, 1700000000123456789)
	if a := testing.AllocsPerRun(100, func() { compactFingerprint(fp, 123456) }); a != 0 {
		t.Errorf("compactFingerprint allocates %v times", a)
	}
}
