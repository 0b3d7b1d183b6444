//go:build !linux

package blockworker

import "errors"

// openAnon: unnamed files are Linux's (O_TMPFILE); elsewhere blocks are
// written under a temporary name and renamed.
func openAnon(string, int) (blockFile, string, bool) { return nil, "", false }

func openDirFD(string) int { return -1 }

func closeDirFD(int) {}

func linkAnon(blockFile, string, int, string, string) error { return errors.ErrUnsupported }

// writeInPlace: blocks are written in place (marked by the sticky bit)
// on Linux; elsewhere aside and named at commit.
func writeInPlace(int, string, string) (blockFile, bool) { return nil, false }

func sealInPlace(blockFile) error { return errors.ErrUnsupported }
