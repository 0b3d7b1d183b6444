// Command alluvium is the one binary of Alluvium: every server role, the
// all-in-one `local` cluster, and the client commands.
package main

import (
	"errors"
	"fmt"
	"os"

	// Policies may name any zone (CRON_TZ=Europe/Paris); the binary carries
	// the zone database so a host without one (a slim container) runs them.
	_ "time/tzdata"
)

func main() {
	root := newRootCmd()
	err := root.Execute()
	os.Exit(exitCode(err))
}

// Exit codes, as DESIGN.md fixes them.
const (
	exitOK    = 0
	exitFail  = 1 // job FAILED/CANCELED or an operation error
	exitUsage = 2 // bad usage
)

// usageError marks an error as the caller's misuse (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an exit code without a message (already printed).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "alluvium: "+oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

// oneLine keeps an error on one line, as scripts expect.
func oneLine(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
