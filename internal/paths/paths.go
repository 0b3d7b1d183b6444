// Package paths parses and manipulates Alluvium paths: absolute,
// "/"-separated and cleaned. Every role validates paths with Clean before
// using them, so ".." can never climb above the root.
package paths

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// Limits on what Clean accepts.
const (
	MaxPathLength      = 4096
	MaxComponentLength = 255
	MaxDepth           = 512
)

// Error is an invalid path with the reason.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("invalid path %q: %s", e.Path, e.Reason) }

// Clean validates p and returns its canonical form: absolute, no empty, "."
// or ".." components, no trailing slash (except the root "/").
func Clean(p string) (string, error) { return Limits{}.Clean(p) }

// Limits are tighter bounds than the built-in ones (a server's configured
// fsmaster.path.*). Zero, or more than the built-in limit, means the
// built-in limit.
type Limits struct {
	MaxLength int // bytes
	MaxDepth  int // components
}

func (l Limits) effective() Limits {
	if l.MaxLength <= 0 || l.MaxLength > MaxPathLength {
		l.MaxLength = MaxPathLength
	}
	if l.MaxDepth <= 0 || l.MaxDepth > MaxDepth {
		l.MaxDepth = MaxDepth
	}
	return l
}

// Clean is the package's Clean within l.
func (l Limits) Clean(p string) (string, error) {
	l = l.effective()
	if alreadyClean(p, l) {
		return p, nil
	}
	return l.slowClean(p)
}

// alreadyClean reports whether p is printable ASCII, clean and within l, as
// nearly every path a client sends is: Clean then returns it as it is,
// without building a new one (servers clean every path of every call).
func alreadyClean(p string, l Limits) bool {
	if len(p) == 0 || p[0] != '/' || len(p) > l.MaxLength {
		return false
	}
	if p == "/" {
		return true
	}
	depth, start := 0, 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c < 0x20 || c >= 0x7f {
				return false
			}
			if c != '/' {
				continue
			}
		}
		// p[start:i] is a component: not empty, ".", ".." or too long.
		n := i - start
		if n == 0 || n > MaxComponentLength || n == 1 && p[start] == '.' || n == 2 && p[start] == '.' && p[start+1] == '.' {
			return false
		}
		depth++
		start = i + 1
	}
	return depth <= l.MaxDepth
}

func (l Limits) slowClean(p string) (string, error) {
	switch {
	case p == "":
		return "", &Error{p, "empty"}
	case len(p) > l.MaxLength:
		return "", &Error{p[:min(64, len(p))] + "...", fmt.Sprintf("longer than %d bytes", l.MaxLength)}
	case p[0] != '/':
		return "", &Error{p, "not absolute (must start with /)"}
	case !utf8.ValidString(p):
		return "", &Error{p, "not valid UTF-8"}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "", &Error{p, "contains a control character"}
		}
	}
	c := path.Clean(p)
	depth := 0
	for _, comp := range strings.Split(c[1:], "/") {
		if len(comp) > MaxComponentLength {
			return "", &Error{p, fmt.Sprintf("component longer than %d bytes", MaxComponentLength)}
		}
		depth++
	}
	if depth > l.MaxDepth {
		return "", &Error{shorten(p), fmt.Sprintf("deeper than %d levels", l.MaxDepth)}
	}
	return c, nil
}

// shorten keeps an error about a long path readable.
func shorten(p string) string {
	if len(p) > 200 {
		return p[:100] + "..." + p[len(p)-60:]
	}
	return p
}

// Components splits a clean path into its names; the root has none.
func Components(clean string) []string {
	if clean == "/" {
		return nil
	}
	return strings.Split(clean[1:], "/")
}

// Split returns the parent and the last name of a clean path. The root's
// parent is "" and its name is "".
func Split(clean string) (parent, name string) {
	if clean == "/" {
		return "", ""
	}
	i := strings.LastIndexByte(clean, '/')
	if i == 0 {
		return "/", clean[1:]
	}
	return clean[:i], clean[i+1:]
}

// Join appends name to a clean directory path.
func Join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// AppendJoin appends Join(dir, name) to b: for callers that build many
// paths in one buffer (a listing's page).
func AppendJoin(b []byte, dir, name string) []byte {
	if dir != "/" {
		b = append(b, dir...)
	}
	b = append(b, '/')
	return append(b, name...)
}

// IsAncestor reports whether a is b or one of b's ancestors (both clean).
func IsAncestor(a, b string) bool {
	if a == "/" || a == b {
		return true
	}
	return strings.HasPrefix(b, a) && b[len(a)] == '/'
}

// Rel returns b relative to its ancestor a ("" when equal), both clean.
func Rel(a, b string) string {
	if a == b {
		return ""
	}
	if a == "/" {
		return b[1:]
	}
	return b[len(a)+1:]
}
