package humanize

import (
	"math"
	"strconv"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"4096": 4096, "64MiB": 64 << 20, "10GB": 10e9, "512k": 512 << 10, " 1.5 GiB ": 3 << 29, "0": 0, "7b": 7,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "abc", "1XB", "NaN", "inf", "+Inf", "1e30", "9223372036854775808", "9e18GB", "-0x1p-2"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}

// FuzzParseBytes: byte sizes come from config files, env and flags. A
// size is accepted only as a count in [0, MaxInt64], and the count printed
// back in bytes parses to itself.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"4096", "64MiB", "10GB", "512k", "1.5GiB", "inf", "NaN", "1e30", "0x10", "-0", "8EiB", "9e18"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		if n < 0 || n > math.MaxInt64 {
			t.Fatalf("ParseBytes(%q) = %d", s, n)
		}
		if m, err := ParseBytes(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("ParseBytes(%q) = %d, but %d does not parse back (%d, %v)", s, n, n, m, err)
		}
	})
}
