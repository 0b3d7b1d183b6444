package main

import (
	"strings"
	"testing"
	"time"
)

// A row shows the reference its benchmark named for its metric, or the
// benchmark's default, and a row with none is marked and remembered.
func TestRowsNameTheirReference(t *testing.T) {
	refs, missingRefs = map[string]string{}, nil
	out := `goos: linux
BenchmarkA/x=1-2   	       1	 5 ns/op	  10.0 ops/s	  2.00 ratio-a/ref	  5.00 ref-ops/s
--- BENCH: BenchmarkA/x=1-2
    a_test.go:10: REF: A/x=1: *: the reference, same work
    a_test.go:11: REF: A/x=1: ref-ops/s: the reference itself
    a_test.go:12: NOTE: A: both sides fsync
BenchmarkB-2   	       1	 5 ns/op	  3.00 things/s
`
	results, notes := parse(strings.NewReader(out))
	if len(results) != 2 || len(notes) != 1 {
		t.Fatalf("parsed %d results, %d notes", len(results), len(notes))
	}
	md := render(results, notes, 1, time.Unix(0, 0))
	for _, want := range []string{
		"| A/x=1 | ops/s | **10.00** | 10.00 | the reference, same work |",
		"| A/x=1 | ref-ops/s | **5.00** | 5.00 | the reference itself |",
		"| B | things/s | **3.00** | 3.00 | **none named** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if len(missingRefs) != 1 || missingRefs[0] != "B things/s" {
		t.Errorf("missing references %q, want B things/s", missingRefs)
	}
}
