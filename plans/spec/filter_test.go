package spec

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"*.parquet", []string{"a.parquet", "x/y/a.parquet"}, []string{"a.parquet.tmp", "parquet", "x/a.csv"}},
		{"/*.parquet", []string{"a.parquet"}, []string{"x/a.parquet"}},
		{"/logs/**", []string{"logs/a", "logs/x/y/z"}, []string{"a/logs/b", "logs"}},
		{"**/*.gz", []string{"x/a.gz", "x/y/a.gz"}, []string{"a.tar"}},
		{"b/c", []string{"b/c", "a/b/c"}, []string{"a/bb/c", "b/cc"}},
		{"tmp/", []string{"tmp/a", "x/tmp/a/b"}, []string{"tmp", "tmpx/a"}},
		{"f?.txt", []string{"f1.txt", "d/fa.txt"}, []string{"f12.txt", "f/.txt"}},
		{"[a-c]*", []string{"apple", "x/cat"}, []string{"dog"}},
		{"[!a-c]*", []string{"dog"}, []string{"apple"}},
		{"*.{csv,json}", []string{"a.csv", "b/a.json"}, []string{"a.parquet"}},
		{`\*.txt`, []string{"*.txt"}, []string{"a.txt"}},
		{"[]]x", []string{"]x"}, []string{"ax"}},
	} {
		g, err := CompileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		for _, p := range tc.yes {
			if !g.Match(p) {
				t.Errorf("%q does not match %q", tc.pattern, p)
			}
		}
		for _, p := range tc.no {
			if g.Match(p) {
				t.Errorf("%q matches %q", tc.pattern, p)
			}
		}
	}
	for _, bad := range []string{"", "[", "[a", "{a,b", "a}", "]", `a\`, "{a,{b}}", "[z-a]", "/", strings.Repeat("a", MaxPatternLength+1)} {
		if _, err := CompileGlob(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestParseAge(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"90": 90 * time.Second, "90s": 90 * time.Second, "36h": 36 * time.Hour, "7d": 7 * 24 * time.Hour,
		"1w": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "2.5h": 150 * time.Minute, "1M": 30 * 24 * time.Hour,
		"1y": 365 * 24 * time.Hour, "500ms": 500 * time.Millisecond, "5m": 5 * time.Minute,
	} {
		if got, err := ParseAge(s); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "7x", "-1d", "1e9y", "300y", "1d-2h"} {
		if d, err := ParseAge(bad); err == nil {
			t.Errorf("ParseAge(%q) = %v, want an error", bad, d)
		}
	}
}

func TestFilterSelects(t *testing.T) {
	const now = int64(10_000_000_000)
	day := int64(86_400_000)
	f := Filter{Include: []string{"*.parquet"}, Exclude: []string{"tmp/"}, MinSize: 10, MaxSize: 100, MaxAge: "7d", MinAge: "1d"}
	if err := f.normalize("copy /x"); err != nil {
		t.Fatal(err)
	}
	s, err := f.Compile(now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rel        string
		size, ageD int64
		want       bool
	}{
		{"a.parquet", 50, 3, true},
		{"a.csv", 50, 3, false},
		{"tmp/a.parquet", 50, 3, false},
		{"a.parquet", 5, 3, false},
		{"a.parquet", 500, 3, false},
		{"a.parquet", 50, 10, false},
		{"a.parquet", 50, 0, false},
	} {
		if got := s.Selects(tc.rel, tc.size, now-tc.ageD*day-1); got != tc.want {
			t.Errorf("%+v: selected %v", tc, got)
		}
	}
	var none *Selector
	if !none.Selects("x", 0, 0) || none.Partial() {
		t.Error("a nil selector must select everything")
	}
	for _, bad := range []Filter{
		{MinSize: -1}, {MaxSize: -1}, {MinSize: 10, MaxSize: 5}, {MinAge: "2d", MaxAge: "1d"},
		{Include: []string{"["}}, {MaxAge: "soon"}, {Exclude: make([]string, MaxPatterns+1)},
	} {
		err := bad.normalize("copy /x")
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%+v: %v, want InvalidArgument", bad, err)
		}
	}
}
