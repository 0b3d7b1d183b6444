//go:build !linux

package ufs

import (
	"io/fs"
	"os"
)

// beneath is Linux's openat2 fast path; elsewhere os.Root does the work.
type beneath struct{}

func openBeneath(string) *beneath { return nil }

func (*beneath) open(string, int, fs.FileMode) (*os.File, error) { panic("unreachable") }

func (*beneath) close() {}
