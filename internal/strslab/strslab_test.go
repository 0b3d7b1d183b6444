package strslab

import (
	"fmt"
	"strings"
	"testing"
)

// Strings built in a Slab are what was appended, and none changes as later
// ones fill its chunk and the chunks after it, whether a string fits the
// room asked for or outgrows it.
func TestSlabStringsStay(t *testing.T) {
	s := Slab{Chunk: 64}
	var got, want []string
	for i := range 1000 {
		w := fmt.Sprintf("/dir/file-%d", i)
		if i%97 == 0 {
			w = strings.Repeat("x", 200) // more than a chunk
		}
		hint := len(w)
		if i%5 == 0 {
			hint = 1 // outgrows the room made
		}
		got = append(got, s.End(append(s.Start(hint), w...)))
		want = append(want, w)
	}
	got = append(got, s.End(s.Start(8)))
	want = append(want, "")
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("string %d: %q, want %q", i, got[i], want[i])
		}
	}
}
