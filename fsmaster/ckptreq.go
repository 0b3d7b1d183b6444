package fsmaster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The master and the secondary share the journal dir and talk through two
// files in it:
//
//	SECONDARY.LOCK      flock'ed by a running secondary: the master knows
//	                    one is alive when it cannot take the lock itself
//	checkpoint-request  the sequence a checkpoint must cover (decimal),
//	                    written atomically by the master, removed by the
//	                    secondary once such a checkpoint exists
const (
	secondaryLockName = "SECONDARY.LOCK"
	requestName       = "checkpoint-request"
	checkpointsSubdir = "checkpoints"
)

// lockSecondary takes the secondary's lock; it fails if another secondary
// holds it. Close the file to release it.
func lockSecondary(dir string) (*os.File, error) {
	path := filepath.Join(dir, secondaryLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("secondary lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another secondary is running on journal %s (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("secondary lock %s: %w", path, err)
	}
	return f, nil
}

// secondaryAlive reports whether a secondary holds its lock on dir.
func secondaryAlive(dir string) bool {
	f, err := os.Open(filepath.Join(dir, secondaryLockName))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func writeCheckpointRequest(dir string, seq int64) error {
	tmp := filepath.Join(dir, "."+requestName+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(seq, 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("checkpoint request: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, requestName)); err != nil {
		return fmt.Errorf("checkpoint request: %w", err)
	}
	return nil
}

// readCheckpointRequest returns the requested sequence, 0 without a
// request.
func readCheckpointRequest(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, requestName))
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

func removeCheckpointRequest(dir string, upTo int64) {
	if v := readCheckpointRequest(dir); v > 0 && v <= upTo {
		_ = os.Remove(filepath.Join(dir, requestName))
	}
}

// newestCheckpointName returns the highest sequence among the names
// <seq>.bolt in the checkpoints dir, without opening them (a cheap poll;
// journal.LatestCheckpoint then verifies the file).
func newestCheckpointName(dir string) int64 {
	des, err := os.ReadDir(filepath.Join(dir, checkpointsSubdir))
	if err != nil {
		return 0
	}
	var best int64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".bolt")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(name, 10, 64)
		if err == nil && v > best {
			best = v
		}
	}
	return best
}
