package ufs

import (
	"math"
	"testing"
)

// AppendJoinURI writes the rule of JoinURI again (to build many UFS paths
// in one buffer): the two must agree, and what the buffer held stays.
func TestAppendJoinURIIsJoinURI(t *testing.T) {
	for _, c := range []struct{ root, rel string }{
		{"file:///data", "a/b"}, {"file:///data/", "/a/b/"}, {"s3://bucket", ""},
		{"s3://bucket/prefix/", "/"}, {"file:///", "x"}, {"s3://b/p", "dir/"},
	} {
		got := string(AppendJoinURI([]byte("x"), c.root, c.rel))
		if want := "x" + JoinURI(c.root, c.rel); got != want {
			t.Errorf("AppendJoinURI(%q, %q) = %q, want %q", c.root, c.rel, got, want)
		}
	}
}

// The buffers sized by MaxLocalFingerprint hold the longest fingerprint.
func TestMaxLocalFingerprint(t *testing.T) {
	if n := len(LocalFingerprint(math.MinInt64, math.MinInt64)); n != MaxLocalFingerprint {
		t.Fatalf("the longest local fingerprint is %d bytes, MaxLocalFingerprint %d", n, MaxLocalFingerprint)
	}
}
