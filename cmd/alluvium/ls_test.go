package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/alluvium/alluvium/api"
)

// tabwriterLs is how fs ls printed before lsPrinter: each row through
// fmt into a tabwriter, flushed at the same points.
func tabwriterLs(rows []*api.FileInfo, flushAt func(i int) bool) string {
	var out bytes.Buffer
	w := tabwriter.NewWriter(&out, 0, 4, 2, ' ', 0)
	for i, fi := range rows {
		cached := "-"
		if !fi.GetFolder() {
			cached = fmt.Sprintf("%d%%", fi.GetCachedPercent())
		}
		mtime := lsTime(fi.GetLastModificationTimeMs())
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", modeString(fi.GetFolder(), fi.GetMode()), fi.GetOwner(), fi.GetGroup(),
			fi.GetLength(), persistText(fi), mtime, cached, fi.GetPath())
		if flushAt(i) {
			w.Flush()
		}
	}
	w.Flush()
	return out.String()
}

func lsTime(ms int64) string {
	var p lsPrinter
	p.line(&api.FileInfo{LastModificationTimeMs: ms})
	return p.rows[0].mtime
}

// TestLsPrinterIsTabwriter checks that fs ls prints what the tabwriter
// it replaced printed, byte for byte: random rows of varied widths,
// multi-byte names, and names holding the bytes tabwriter treats apart
// (tab, newline, vertical tab, form feed, 0xff, invalid UTF-8), flushed
// in blocks as a listing flushes.
func TestLsPrinterIsTabwriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "data", "Ünïcödé", "日本語のファイル", "x y", "bad\xc3", "r\rcr"}
	specials := []string{"t\tab", "n\newline", "v\vt", "f\ff", "esc\xffape"}
	owners := []string{"", "root", "alluvium", "ünï", "a-very-long-owner-name"}
	for round := range 60 {
		n := 1 + rng.IntN(2500)
		var rows []*api.FileInfo
		for i := range n {
			name := names[rng.IntN(len(names))]
			if round%3 == 0 && rng.IntN(400) == 0 {
				name = specials[rng.IntN(len(specials))]
			}
			fi := &api.FileInfo{
				Path:                   fmt.Sprintf("/d%d/%s%d", i%7, name, i),
				Folder:                 rng.IntN(5) == 0,
				Mode:                   uint32(rng.IntN(0o1000)),
				Owner:                  owners[rng.IntN(len(owners))],
				Group:                  owners[rng.IntN(len(owners))],
				Length:                 int64(rng.IntN(10)) << (rng.IntN(40)),
				PersistenceState:       api.PersistenceState(rng.IntN(4)),
				LastModificationTimeMs: 1700000000000 + int64(rng.IntN(5))*1000*int64(rng.IntN(1<<30)),
				CachedPercent:          int32(rng.IntN(101)),
			}
			if round%5 == 0 && rng.IntN(100) == 0 {
				fi.Owner = specials[rng.IntN(len(specials))]
			}
			rows = append(rows, fi)
		}
		every := []int{1, 7, 1000, 100000}[round%4]
		flushAt := func(i int) bool { return (i+1)%every == 0 }
		want := tabwriterLs(rows, flushAt)
		var out bytes.Buffer
		p := &lsPrinter{w: &out}
		for i, fi := range rows {
			p.line(fi)
			if flushAt(i) {
				if err := p.flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != want {
			gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Fatalf("round %d (%d rows, flush every %d): line %d:\n got %q\nwant %q", round, n, every, i, gl[i], wl[i])
				}
			}
			t.Fatalf("round %d: %d lines, want %d", round, len(gl), len(wl))
		}
	}
}
