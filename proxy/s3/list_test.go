package s3

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// pred(x) sorts before x, is valid UTF-8, and no name (at most 255
// bytes, valid UTF-8) lies strictly between.
func TestPred(t *testing.T) {
	for _, x := range []string{"b", "a0", "aÀ", "é", "a\u0080", "x\ue000", "\U0010FFFF", "dir", "a/b"} {
		p := pred(x)
		if !(p < x) || !utf8.ValidString(p) {
			t.Errorf("pred(%q) = %q: not below x or not UTF-8", x, p)
		}
		for _, name := range []string{x[:len(x)-1], x + "a", p[:min(len(p), 255)]} {
			if utf8.ValidString(name) && name > p && name < x && len(name) <= 255 {
				t.Errorf("name %q lies between pred(%q) and %q", name, x, x)
			}
		}
	}
	if pred("") != "" {
		t.Error("pred of empty")
	}
	if got := validPrefix("ab\xffcd"); got != "ab" {
		t.Errorf("validPrefix = %q", got)
	}
	if got := seekFrom("a-b"); got != "a" {
		t.Errorf("seekFrom(a-b) = %q", got)
	}
	if got := seekFrom("abc"); got != "abc" {
		t.Errorf("seekFrom(abc) = %q", got)
	}
	if !strings.HasPrefix(pred("ab"), "aa") {
		t.Errorf("pred(ab) = %q", pred("ab"))
	}
}

func TestObjectPath(t *testing.T) {
	for _, tc := range []struct {
		bucket, key, path string
		dir, ok           bool
	}{
		{"b", "k", "/b/k", false, true},
		{"b", "a/b/c", "/b/a/b/c", false, true},
		{"b", "dir/", "/b/dir", true, true},
		{"b", "a//b", "", false, false},
		{"b", "../x", "", false, false},
		{"b", "/abs", "", false, false},
		{"b", "", "", false, false},
		{"b", "a\x01b", "", false, false},
		{"..", "k", "", false, false},
		{"b", strings.Repeat("x", 1025), "", false, false},
	} {
		p, dir, err := objectPath(tc.bucket, tc.key)
		if (err == nil) != tc.ok || p != tc.path || dir != tc.dir {
			t.Errorf("objectPath(%q, %q) = %q, %v, %v", tc.bucket, tc.key, p, dir, err)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		h             string
		start, length int64
		ok, invalid   bool
	}{
		{"bytes=0-9", 0, 10, true, false},
		{"bytes=5-", 5, 95, true, false},
		{"bytes=-10", 90, 10, true, false},
		{"bytes=-1000", 0, 100, true, false},
		{"bytes=90-200", 90, 10, true, false},
		{"bytes=100-", 0, 0, false, true},
		{"bytes=-0", 0, 0, false, true},
		{"bytes=9-5", 0, 0, false, false},
		{"bytes=0-1,5-6", 0, 0, false, false},
		{"items=0-1", 0, 0, false, false},
		{"", 0, 0, false, false},
	} {
		s, n, ok, err := parseRange(tc.h, 100)
		if ok != tc.ok || (err != nil) != tc.invalid || ok && (s != tc.start || n != tc.length) {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v", tc.h, s, n, ok, err)
		}
	}
}
