package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Filter selects the files a job works on (load, persist, copy, move,
// sync): --include / --exclude glob patterns (glob.go) on the path
// relative to the job's root, --min-size / --max-size on the length and
// --min-age / --max-age on the modification time, measured from the job's
// creation (so a nightly policy's "--max-age 1d" means the day before each
// run, and a job planned again after a failover selects the same files).
// A file is selected when it matches some include pattern (or there are
// none), no exclude pattern, and every bound. The planners apply it as
// they list, so a job plans only what it selects; sync neither copies nor
// deletes a file the filter leaves out. Its fields sit at the top level of
// a config's JSON.
type Filter struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	MinSize int64    `json:"minSize,omitempty"` // bytes; 0: no bound
	MaxSize int64    `json:"maxSize,omitempty"` // bytes; 0: no bound
	// Ages as a number and unit: ms, s, m, h, d (24h), w (7d), M (30d),
	// y (365d), combined ("1d12h"); a bare number is seconds. MinAge
	// selects files modified at least that long ago, MaxAge at most.
	MinAge string `json:"minAge,omitempty"`
	MaxAge string `json:"maxAge,omitempty"`
}

// normalize checks the filter; what names the job in errors.
func (f *Filter) normalize(what string) error {
	for _, l := range []struct {
		flag string
		ps   []string
	}{{"--include", f.Include}, {"--exclude", f.Exclude}} {
		if len(l.ps) > MaxPatterns {
			return Invalidf("%s: %s: %d patterns, at most %d", what, l.flag, len(l.ps), MaxPatterns)
		}
		for _, p := range l.ps {
			if _, err := CompileGlob(p); err != nil {
				return Invalidf("%s: %s %q: %v", what, l.flag, p, err)
			}
		}
	}
	switch {
	case f.MinSize < 0:
		return Invalidf("%s: --min-size %d: want >= 0 bytes", what, f.MinSize)
	case f.MaxSize < 0:
		return Invalidf("%s: --max-size %d: want >= 0 bytes", what, f.MaxSize)
	case f.MaxSize > 0 && f.MinSize > f.MaxSize:
		return Invalidf("%s: --min-size %d is more than --max-size %d: nothing would be selected", what, f.MinSize, f.MaxSize)
	}
	var minAge, maxAge time.Duration
	for _, a := range []struct {
		flag string
		s    *string
		d    *time.Duration
	}{{"--min-age", &f.MinAge, &minAge}, {"--max-age", &f.MaxAge, &maxAge}} {
		if *a.s == "" {
			continue
		}
		d, err := ParseAge(*a.s)
		if err != nil {
			return Invalidf("%s: %s %q: %v", what, a.flag, *a.s, err)
		}
		*a.s, *a.d = strings.TrimSpace(*a.s), d
	}
	if f.MinAge != "" && f.MaxAge != "" && minAge > maxAge {
		return Invalidf("%s: --min-age %s is more than --max-age %s: nothing would be selected", what, f.MinAge, f.MaxAge)
	}
	return nil
}

// Empty reports whether the filter selects everything.
func (f Filter) Empty() bool {
	return len(f.Include) == 0 && len(f.Exclude) == 0 && f.MinSize == 0 && f.MaxSize == 0 && f.MinAge == "" && f.MaxAge == ""
}

// Selector is a compiled Filter for one job.
type Selector struct {
	include, exclude []*Glob
	minSize, maxSize int64
	// Modification times (unix ms) a file must be at most (minAge) and at
	// least (maxAge); 0: no bound.
	notAfter, notBefore int64
	names               bool // patterns are set: paths are matched
}

// Compile makes the selector of a normalized filter for a job created at
// createdMs (ages are measured from it). A nil Selector selects everything.
func (f Filter) Compile(createdMs int64) (*Selector, error) {
	if f.Empty() {
		return nil, nil
	}
	s := &Selector{minSize: f.MinSize, maxSize: f.MaxSize}
	for _, l := range []struct {
		ps  []string
		out *[]*Glob
	}{{f.Include, &s.include}, {f.Exclude, &s.exclude}} {
		for _, p := range l.ps {
			g, err := CompileGlob(p)
			if err != nil {
				return nil, Invalidf("pattern %q: %v", p, err)
			}
			*l.out = append(*l.out, g)
		}
	}
	s.names = len(s.include)+len(s.exclude) > 0
	if f.MinAge != "" {
		d, err := ParseAge(f.MinAge)
		if err != nil {
			return nil, Invalidf("--min-age %q: %v", f.MinAge, err)
		}
		s.notAfter = createdMs - d.Milliseconds()
	}
	if f.MaxAge != "" {
		d, err := ParseAge(f.MaxAge)
		if err != nil {
			return nil, Invalidf("--max-age %q: %v", f.MaxAge, err)
		}
		s.notBefore = max(createdMs-d.Milliseconds(), 1)
	}
	return s, nil
}

// Selects reports whether the file at rel (relative to the job's root, no
// leading "/"), of size bytes and modified at mtimeMs, is selected.
func (s *Selector) Selects(rel string, size, mtimeMs int64) bool {
	if s == nil {
		return true
	}
	switch {
	case size < s.minSize, s.maxSize > 0 && size > s.maxSize:
		return false
	case s.notAfter != 0 && mtimeMs > s.notAfter, s.notBefore != 0 && mtimeMs < s.notBefore:
		return false
	}
	if !s.names {
		return true
	}
	for _, g := range s.exclude {
		if g.Match(rel) {
			return false
		}
	}
	if len(s.include) == 0 {
		return true
	}
	for _, g := range s.include {
		if g.Match(rel) {
			return true
		}
	}
	return false
}

// Partial reports whether the selector may leave out some files of a
// tree: then a directory is never removed whole on its account (sync).
func (s *Selector) Partial() bool { return s != nil }

// ageUnits are the units of ParseAge, longest first where one is a prefix
// of another ("ms" before "m").
var ageUnits = []struct {
	name string
	d    time.Duration
}{
	{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour},
	{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"M", 30 * 24 * time.Hour}, {"y", 365 * 24 * time.Hour},
}

// maxAge bounds an age so that it fits a duration with room to spare.
const maxAge = 200 * 365 * 24 * time.Hour

// ParseAge reads an age as --min-age and --max-age take it: "90s", "36h",
// "7d", "1w", "1d12h", "2.5h" or a bare number of seconds.
func ParseAge(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty age")
	}
	if n, err := strconv.ParseFloat(t, 64); err == nil {
		if !(n >= 0) || n > maxAge.Seconds() {
			return 0, fmt.Errorf("want an age from 0 to 200y")
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	var total time.Duration
	for t != "" {
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("want a number and a unit (ms, s, m, h, d, w, M, y), e.g. 7d or 36h")
		}
		n, err := strconv.ParseFloat(t[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", t[:i])
		}
		t = t[i:]
		var unit time.Duration
		for _, u := range ageUnits {
			if strings.HasPrefix(t, u.name) {
				unit, t = u.d, t[len(u.name):]
				break
			}
		}
		if unit == 0 {
			return 0, fmt.Errorf("unknown unit in %q (want ms, s, m, h, d, w, M or y)", s)
		}
		if n*float64(unit) > float64(maxAge) {
			return 0, fmt.Errorf("want an age from 0 to 200y")
		}
		total += time.Duration(n * float64(unit))
		if total > maxAge {
			return 0, fmt.Errorf("want an age from 0 to 200y")
		}
	}
	return total, nil
}
