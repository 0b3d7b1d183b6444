package paths

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	good := map[string]string{
		"/":             "/",
		"//":            "/",
		"/a":            "/a",
		"/a/":           "/a",
		"/a//b/./c":     "/a/b/c",
		"/a/b/../c":     "/a/c",
		"/../../x":      "/x",
		"/with space/é": "/with space/é",
	}
	for in, want := range good {
		got, err := Clean(in)
		if err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "a", "a/b", "./a", "/a\x00b", "/a\nb", "/" + strings.Repeat("x", 256), "/\xff", strings.Repeat("/a", MaxDepth+1), "/" + strings.Repeat("a", MaxPathLength)}
	for _, in := range bad {
		if got, err := Clean(in); err == nil {
			t.Errorf("Clean(%q) = %q, want an error", in, got)
		}
	}
}

func TestSplitJoinAncestor(t *testing.T) {
	cases := []struct{ p, parent, name string }{{"/", "", ""}, {"/a", "/", "a"}, {"/a/b", "/a", "b"}}
	for _, c := range cases {
		p, n := Split(c.p)
		if p != c.parent || n != c.name {
			t.Errorf("Split(%q) = %q, %q", c.p, p, n)
		}
		if c.p != "/" && Join(p, n) != c.p {
			t.Errorf("Join(Split(%q)) = %q", c.p, Join(p, n))
		}
	}
	if !IsAncestor("/", "/a") || !IsAncestor("/a", "/a/b") || !IsAncestor("/a", "/a") || IsAncestor("/a", "/ab") || IsAncestor("/a/b", "/a") {
		t.Error("IsAncestor wrong")
	}
	if Rel("/a", "/a/b/c") != "b/c" || Rel("/", "/x") != "x" || Rel("/a", "/a") != "" {
		t.Error("Rel wrong")
	}
	if got := Components("/a/b"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("Components = %q", got)
	}
}

// FuzzClean checks that a cleaned path is canonical: cleaning it again is a
// no-op, and it never holds an empty, "." or ".." component.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x//y/", "/../..", "/a/./b", "rel", "/\x00", "/é/ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := Clean(p)
		if slow, serr := (Limits{}).effective().slowClean(p); slow != c || (serr == nil) != (err == nil) {
			t.Fatalf("Clean(%q) = %q, %v; the full cleaning: %q, %v", p, c, err, slow, serr)
		}
		if err != nil {
			return
		}
		if c2, err := Clean(c); err != nil || c2 != c {
			t.Fatalf("Clean not idempotent: %q -> %q -> %q, %v", p, c, c2, err)
		}
		for _, comp := range Components(c) {
			if comp == "" || comp == "." || comp == ".." {
				t.Fatalf("Clean(%q) = %q has component %q", p, c, comp)
			}
		}
		if c != "/" {
			parent, name := Split(c)
			if Join(parent, name) != c || !IsAncestor(parent, c) {
				t.Fatalf("Split/Join/IsAncestor disagree on %q", c)
			}
		}
	})
}

func TestLimits(t *testing.T) {
	l := Limits{MaxLength: 10, MaxDepth: 2}
	if _, err := l.Clean("/a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Clean("/a/b/c"); err == nil || !strings.Contains(err.Error(), "deeper than 2") {
		t.Errorf("depth 3: %v", err)
	}
	if _, err := l.Clean("/abcdefghijk"); err == nil || !strings.Contains(err.Error(), "longer than 10") {
		t.Errorf("length 12: %v", err)
	}
	// Zero or more than the built-in limits means the built-in limits.
	for _, l := range []Limits{{}, {MaxLength: 1 << 20, MaxDepth: 1 << 20}} {
		if _, err := l.Clean("/" + strings.Repeat("a/", MaxDepth+1)); err == nil {
			t.Errorf("%+v: a path deeper than MaxDepth passed", l)
		}
	}
}

// TestCleanFastPathAgrees: every path the fast path accepts as it is, the
// full cleaning accepts unchanged too, under the built-in and tight limits.
func TestCleanFastPathAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"/", "a", "b", ".", "..", "x.y", "\x7f", "\x01", "é", " ", strings.Repeat("n", 255), strings.Repeat("n", 256)}
	for _, l := range []Limits{{}, {MaxLength: 20, MaxDepth: 3}} {
		for range 200000 {
			var b strings.Builder
			for range rng.IntN(8) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			p := b.String()
			slow, err := l.effective().slowClean(p)
			if alreadyClean(p, l.effective()) && (err != nil || slow != p) {
				t.Fatalf("fast path takes %q as clean; the full cleaning says %q, %v", p, slow, err)
			}
			fast, ferr := l.Clean(p)
			if fast != slow || (ferr == nil) != (err == nil) {
				t.Fatalf("Clean(%q) = %q, %v; full cleaning %q, %v", p, fast, ferr, slow, err)
			}
		}
	}
}

// AppendJoin writes the rule of Join again (to build many paths in one
// buffer): the two must agree, and what the buffer held stays.
func TestAppendJoinIsJoin(t *testing.T) {
	for _, c := range []struct{ dir, name string }{
		{"/", "a"}, {"/a", "b"}, {"/a/b", "c d"}, {"/", ""}, {"/a", ""},
	} {
		got := string(AppendJoin([]byte("x"), c.dir, c.name))
		if want := "x" + Join(c.dir, c.name); got != want {
			t.Errorf("AppendJoin(%q, %q) = %q, want %q", c.dir, c.name, got, want)
		}
	}
}
