package spec

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Glob patterns of --include and --exclude, in rclone's filter syntax
// where it fits. A pattern is matched against a file's path relative to
// the job's root (SRC, or the load/persist path), "/"-separated:
//
//	*         any run of characters except "/"
//	**        any run of characters, "/" included (any depth)
//	?         one character except "/"
//	[a-z]     a character class; [!a-z] or [^a-z] negated
//	{a,b,c}   one of the comma-separated alternatives (each a pattern)
//	\x        the character x itself
//
// A pattern that starts with "/" is anchored at the root ("/logs/*.gz"
// matches logs/a.gz, not x/logs/a.gz); any other is matched against the
// path's last elements, whole ones ("*.parquet" matches a.parquet and
// x/y/a.parquet; "b/c" matches a/b/c, not a/bb/c). A pattern that ends
// with "/" names directories: it matches every file under a directory it
// matches ("tmp/" is "tmp/**").

// Bounds on patterns, so a config cannot make a matcher of any size.
const (
	MaxPatterns      = 256  // per list (include, exclude)
	MaxPatternLength = 1024 // bytes
)

// Glob is a compiled pattern.
type Glob struct {
	pattern string
	re      *regexp.Regexp
}

// CompileGlob parses a pattern; the error says what is wrong with it.
func CompileGlob(pattern string) (*Glob, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	if len(pattern) > MaxPatternLength {
		return nil, fmt.Errorf("pattern longer than %d bytes", MaxPatternLength)
	}
	p := pattern
	var b strings.Builder
	if strings.HasPrefix(p, "/") {
		b.WriteString(`^`)
		p = p[1:]
		if p == "" {
			return nil, fmt.Errorf("%q matches nothing (use /** for everything)", pattern)
		}
	} else {
		b.WriteString(`(?:^|/)`)
	}
	if strings.HasSuffix(p, "/") && !strings.HasSuffix(p, `\/`) {
		p += "**"
	}
	if err := globRegexp(&b, p, false); err != nil {
		return nil, err
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("%v", err)
	}
	return &Glob{pattern: pattern, re: re}, nil
}

// String is the pattern as written.
func (g *Glob) String() string { return g.pattern }

// Match reports whether the relative path rel (no leading "/") matches.
func (g *Glob) Match(rel string) bool { return g.re.MatchString(rel) }

// globRegexp writes the regexp of glob p to b; inBrace: p is one
// alternative of a {…} (where "," and "}" end it, handled by the caller).
func globRegexp(b *strings.Builder, p string, inBrace bool) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '*':
			if i+1 < len(p) && p[i+1] == '*' {
				b.WriteString(`.*`)
				i++
				for i+1 < len(p) && p[i+1] == '*' {
					i++ // *** is **
				}
			} else {
				b.WriteString(`[^/]*`)
			}
		case '?':
			b.WriteString(`[^/]`)
		case '\\':
			if i+1 >= len(p) {
				return fmt.Errorf("a trailing \\ escapes nothing")
			}
			i++
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		case '[':
			j, class, err := globClass(p, i)
			if err != nil {
				return err
			}
			b.WriteString(class)
			i = j
		case '{':
			if inBrace {
				return fmt.Errorf("nested {} are not supported")
			}
			end := strings.IndexByte(p[i:], '}')
			if end < 0 {
				return fmt.Errorf("unclosed {")
			}
			alts, err := splitAlternatives(p[i+1 : i+end])
			if err != nil {
				return err
			}
			b.WriteString(`(?:`)
			for k, a := range alts {
				if k > 0 {
					b.WriteString(`|`)
				}
				if err := globRegexp(b, a, true); err != nil {
					return err
				}
			}
			b.WriteString(`)`)
			i += end
		case '}':
			return fmt.Errorf("unopened }")
		case ']':
			return fmt.Errorf("unopened ]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	return nil
}

// splitAlternatives splits the inside of {…} at its commas, keeping
// escaped ones and those inside [...].
func splitAlternatives(s string) ([]string, error) {
	var out []string
	start, inClass := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '[':
			inClass = true
		case ']':
			inClass = false
		case '{':
			if !inClass {
				return nil, fmt.Errorf("nested {} are not supported")
			}
		case ',':
			if !inClass {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:]), nil
}

// globClass translates the character class starting at p[i] ('[') and
// returns the index of its closing ']'. A ']' right after the '[' (or
// after its negation) is a member, as in POSIX.
func globClass(p string, i int) (int, string, error) {
	var b strings.Builder
	b.WriteString(`[`)
	j := i + 1
	if j < len(p) && (p[j] == '!' || p[j] == '^') {
		b.WriteString(`^/`) // a negated class never matches the separator
		j++
	}
	first := j
	var prev rune = -1 // the last member written, for a range
	for j < len(p) {
		c, n := utf8.DecodeRuneInString(p[j:])
		if c == utf8.RuneError && n <= 1 {
			return 0, "", fmt.Errorf("invalid UTF-8")
		}
		switch {
		case c == ']' && j > first:
			b.WriteString(`]`)
			return j, b.String(), nil
		case c == '-' && prev >= 0 && j+1 < len(p) && p[j+1] != ']':
			hi, m := utf8.DecodeRuneInString(p[j+1:])
			if hi == '\\' && j+1+m < len(p) {
				j += m
				hi, m = utf8.DecodeRuneInString(p[j+1:])
			}
			if hi < prev {
				return 0, "", fmt.Errorf("character range %c-%c is backwards", prev, hi)
			}
			b.WriteString(`-`)
			b.WriteString(regexp.QuoteMeta(string(hi)))
			prev = -1 // a-c-e is not a range from c
			j += 1 + m
			continue
		case c == '\\':
			if j+1 >= len(p) {
				return 0, "", fmt.Errorf("a trailing \\ escapes nothing")
			}
			j++
			c, n = utf8.DecodeRuneInString(p[j:])
		}
		b.WriteString(classChar(c))
		prev = c
		j += n
	}
	return 0, "", fmt.Errorf("unclosed [")
}

// classChar is c as a member of a regexp character class.
func classChar(c rune) string {
	switch c {
	case '[', ']', '^', '-', '\\':
		return `\` + string(c)
	}
	return string(c)
}
