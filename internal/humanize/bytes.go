// Package humanize prints and reads what people see of sizes, rates and a
// job's progress, the same in the CLI, the SDK's reports and the demo:
// "1.5 GiB", "12.5 MiB/s", "3/10 tasks done, 0 failed, 1.5 GiB of 4.0 GiB".
package humanize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

// ParseBytes reads a byte count such as 4096, 64MiB, 10GB or 512k.
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	// NaN, infinities and sizes past int64 would convert to a negative
	// count.
	if err != nil || !(f >= 0) || f*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a byte size (try 4096, 64MiB or 10GB)", s)
	}
	return int64(f * float64(mult)), nil
}

// Bytes prints n with a binary unit, e.g. "1.5 GiB" ("512 B" below a
// KiB). ParseBytes reads it back.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate prints n bytes over d as a rate, e.g. "12.5 MiB/s"; "" when there
// is nothing to say (no bytes, no time).
func Rate(n int64, d time.Duration) string {
	if n <= 0 || d <= 0 {
		return ""
	}
	return Bytes(int64(float64(n)/d.Seconds())) + "/s"
}
