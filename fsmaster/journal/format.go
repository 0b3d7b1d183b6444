package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	formatFileName = "FORMAT"
	lockFileName   = "LOCK"
	formatContent  = "alluvium journal 1\n"
)

// Format initialises an empty journal in dir (creating it if needed): the
// FORMAT marker, logs/ and checkpoints/. A dir that is not empty is refused
// unless force is set; then its contents are wiped first (the dir itself is
// kept, it may be a mount point). A journal in use by a running master is
// never wiped.
func Format(dir string, force bool) error {
	if dir == "" {
		return errors.New("journal: format: no journal dir given")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("journal: format %s: %w", dir, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("journal: format %s: %w", dir, err)
	}
	if countContent(des) > 0 {
		if !force {
			names := make([]string, 0, 3)
			for i, de := range des {
				if i == 3 {
					names = append(names, "...")
					break
				}
				names = append(names, de.Name())
			}
			return fmt.Errorf("journal: format %s: directory is not empty (%d entries: %s); use --force to wipe it",
				dir, len(des), strings.Join(names, ", "))
		}
		lock, err := lockDir(dir)
		if err != nil {
			return fmt.Errorf("journal: format %s: %w", dir, err)
		}
		defer lock.Close()
		for _, de := range des {
			if de.Name() == lockFileName {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
				return fmt.Errorf("journal: format %s: %w", dir, err)
			}
		}
	}
	return initLayout(dir)
}

// initLayout creates the marker and subdirectories of an empty journal.
func initLayout(dir string) error {
	for _, sub := range []string{logsDirName, checkpointsDirName} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("journal: format %s: %w", dir, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, formatFileName), []byte(formatContent), 0o644); err != nil {
		return fmt.Errorf("journal: format %s: %w", dir, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("journal: format %s: %w", dir, err)
	}
	return nil
}

// checkLayout makes sure dir holds a journal, initialising a missing or
// empty dir, and refusing a non-empty dir that is not one.
func checkLayout(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, formatFileName))
	if err == nil {
		if string(b) == embeddedFormatContent {
			return wrongKind(dir, KindEmbedded, KindLocal)
		}
		if string(b) != formatContent {
			return fmt.Errorf("journal: %s: unknown journal format %q (this build reads %q)",
				dir, strings.TrimSpace(string(b)), strings.TrimSpace(formatContent))
		}
		for _, sub := range []string{logsDirName, checkpointsDirName} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				return fmt.Errorf("journal: %s: %w", dir, err)
			}
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %s: %w", dir, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %s: %w", dir, err)
	}
	if countContent(des) > 0 {
		return fmt.Errorf("journal: %s is not empty and holds no journal (no %s file); run `alluvium format` on it or pick another dir",
			dir, formatFileName)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("journal: %s: %w", dir, err)
	}
	return initLayout(dir)
}

// countContent counts the entries of a journal dir other than lock files
// (LOCK, and *.LOCK such as the secondary's), which a process may create
// before the journal is formatted and which hold no data.
func countContent(des []os.DirEntry) int {
	n := 0
	for _, de := range des {
		if name := de.Name(); name != lockFileName && !strings.HasSuffix(name, ".LOCK") {
			n++
		}
	}
	return n
}

// lockDir takes the journal dir's exclusive lock (flock on dir/LOCK), held
// until the returned file is closed. It fails at once if another process
// (or another Journal in this one) holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("journal dir %s is locked by another process (is another fsmaster running on it?)", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
