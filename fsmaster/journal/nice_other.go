//go:build !linux

package journal

import "errors"

// setThreadNice is Linux only (elsewhere a thread's nice value is the
// process's).
func setThreadNice(int) error {
	return errors.New("a thread's own priority is set on Linux only")
}
