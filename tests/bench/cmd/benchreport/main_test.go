package main

import (
	"strings"
	"testing"
	"time"
)

// A row shows the reference its benchmark named for its metric, or that
// of the longest pattern "prefix*" it matches, or the benchmark's default,
// and a row with none is marked and remembered.
func TestRowsNameTheirReference(t *testing.T) {
	refs, missingRefs = map[string]string{}, nil
	out := `goos: linux
BenchmarkA/x=1-2   	       1	 5 ns/op	  10.0 ops/s	  2.00 ratio-a/ref	  5.00 ref-ops/s	  1.00 ref-cpu-s	  2.00 ref-cpu-disk-s
--- BENCH: BenchmarkA/x=1-2
    a_test.go:10: REF: A/x=1: *: the reference, same work
    a_test.go:11: REF: A/x=1: ref-ops/s: the reference itself
    a_test.go:11: REF: A/x=1: ref-*: any ref metric
    a_test.go:11: REF: A/x=1: ref-cpu-*: the reference's CPU
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
		"| A/x=1 | ref-cpu-s | **1.00** | 1.00 | the reference's CPU |",
		"| A/x=1 | ref-cpu-disk-s | **2.00** | 2.00 | the reference's CPU |",
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

// A partial run goes in a section of its own, beside the full run's table:
// the next partial run of that name replaces it in place, and a full run
// carries it over.
func TestPartialRunSection(t *testing.T) {
	refs, missingRefs = map[string]string{}, nil
	out := `BenchmarkFSMasterCreate/sdk/clients=64-2   	       1	 5 ns/op	  30000 creates/s
--- BENCH: BenchmarkFSMasterCreate/sdk/clients=64-2
    a_test.go:10: REF: FSMasterCreate/sdk/clients=64: *: bbolt alone
`
	results, notes := parse(strings.NewReader(out))
	full := render(results, notes, 3, time.Unix(0, 0))
	o := &output{section: "issue-20", note: "Preliminary: a shared machine.", pkg: "./tests/bench/", bench: "FSMasterCreate"}
	sec := o.renderSection(results, notes, 3, time.Unix(0, 0))
	for _, want := range []string{"## Partial run: issue-20\n" + keepMarker, "Preliminary: a shared machine.",
		"-bench 'FSMasterCreate'", "| journaled creates (create + complete) at 64 clients, through one shared SDK client | FSMasterCreate/sdk/clients=64 creates/s | ≥ 25000 | 30000 | met |"} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	doc := replaceSection(full, sec)
	if !strings.HasPrefix(doc, full) || !strings.Contains(doc, sec) {
		t.Fatalf("the section did not go after the full table:\n%s", doc)
	}
	o.note = "Second run."
	doc2 := replaceSection(doc, o.renderSection(results, notes, 3, time.Unix(0, 0)))
	if strings.Contains(doc2, "Preliminary: a shared machine.") || strings.Count(doc2, "## Partial run: issue-20") != 1 {
		t.Fatalf("a second partial run did not replace the first:\n%s", doc2)
	}
	if again := render(results, notes, 3, time.Unix(0, 0)) + kept(doc2); !strings.Contains(again, "Second run.") {
		t.Fatalf("a full run dropped the partial run's section:\n%s", again)
	}
}

// A partial run of a tests/scale benchmark shows its goals too.
func TestPartialScaleRunShowsItsGoals(t *testing.T) {
	refs, missingRefs = map[string]string{}, nil
	out := "BenchmarkScaleInodes-2   	       1	 5 ns/op	  11.99 restart-s\n"
	results, notes := parse(strings.NewReader(out))
	o := &output{section: "scale-inodes", pkg: "./tests/scale/", bench: "ScaleInodes$"}
	sec := o.renderSection(results, notes, 1, time.Unix(0, 0))
	if want := "| FS master restart (checkpoint + tail), kill -9 to serving | ScaleInodes restart-s | ≤ 15.00 | 11.99 | met |"; !strings.Contains(sec, want) {
		t.Errorf("section lacks %q:\n%s", want, sec)
	}
}
