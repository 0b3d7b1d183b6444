package main

import "testing"

// Sections marked as measured elsewhere survive a rewrite; the others are
// benchreport's own and are written anew.
func TestKeptSections(t *testing.T) {
	old := "# Benchmarks\n\n## Goals\n\n| a |\n\n## Web console (browser test)\n" + keepMarker + "\n\nfigures\n\n## All figures\n\n| b |\n\n## Other\n" + keepMarker + "\nmore\n"
	want := "\n## Web console (browser test)\n" + keepMarker + "\n\nfigures\n\n## Other\n" + keepMarker + "\nmore\n"
	if got := kept(old); got != want {
		t.Fatalf("kept:\n%q\nwant\n%q", got, want)
	}
	if got := kept("# Benchmarks\n\n## Goals\n| a |\n"); got != "" {
		t.Fatalf("kept from a report without marked sections: %q", got)
	}
}
