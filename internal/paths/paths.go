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
func Clean(p string) (string, error) {
	switch {
	case p == "":
		return "", &Error{p, "empty"}
	case len(p) > MaxPathLength:
		return "", &Error{p[:64] + "...", fmt.Sprintf("longer than %d bytes", MaxPathLength)}
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
	if depth > MaxDepth {
		return "", &Error{p, fmt.Sprintf("deeper than %d levels", MaxDepth)}
	}
	return c, nil
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
