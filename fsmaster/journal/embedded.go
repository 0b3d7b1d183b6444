package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/bbolt"
)

// An embedded journal dir (fsmaster.journal.type: embedded) holds the
// FORMAT marker naming it embedded, raft/ (raft's log, stable store and
// snapshots) and checkpoints/ (checkpoints in the format of local ones,
// the bases of raft snapshots). It never holds logs/: the raft log is the
// journal. The two kinds refuse each other's dirs, so a master started
// with the wrong fsmaster.journal.type stops with a message instead of
// starting an empty namespace.
const (
	embeddedFormatContent = "alluvium embedded journal 1\n"
	raftDirName           = "raft"
)

// Journal kinds, as fsmaster.journal.type names them.
const (
	KindLocal    = "local"
	KindEmbedded = "embedded"
)

// RaftDir is where an embedded journal in dir keeps raft's data.
func RaftDir(dir string) string { return filepath.Join(dir, raftDirName) }

// CheckpointsDir is where a journal in dir keeps its checkpoints.
func CheckpointsDir(dir string) string { return checkpointsDir(dir) }

// KindOf says what the journal dir holds: KindLocal, KindEmbedded, or ""
// when it is missing or empty (not formatted yet).
func KindOf(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, formatFileName))
	switch {
	case err == nil && string(b) == formatContent:
		return KindLocal, nil
	case err == nil && string(b) == embeddedFormatContent:
		return KindEmbedded, nil
	case err == nil:
		return "", fmt.Errorf("journal: %s: unknown journal format %q", dir, strings.TrimSpace(string(b)))
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("journal: %s: %w", dir, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("journal: %s: %w", dir, err)
	}
	if countContent(des) > 0 {
		return "", fmt.Errorf("journal: %s is not empty and holds no journal (no %s file); run `alluvium format` on it or pick another dir", dir, formatFileName)
	}
	return "", nil
}

// wrongKind explains a journal dir of the other kind.
func wrongKind(dir, have, want string) error {
	return fmt.Errorf("journal %s is %s but fsmaster.journal.type is %s: set fsmaster.journal.type: %s, or convert the journal with 'alluvium fsadmin journal convert --to %s' (masters stopped)", dir, have, want, have, want)
}

// FormatEmbedded initialises an empty embedded journal in dir, refusing a
// dir that is not empty unless force (which wipes it; a dir in use by a
// running master is never wiped).
func FormatEmbedded(dir string, force bool) error {
	if err := Format(dir, force); err != nil {
		return err
	}
	return initEmbedded(dir)
}

func initEmbedded(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, logsDirName)); err != nil {
		return fmt.Errorf("journal: format %s: %w", dir, err)
	}
	for _, sub := range []string{raftDirName, checkpointsDirName} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("journal: format %s: %w", dir, err)
		}
	}
	if err := writeFileSynced(filepath.Join(dir, formatFileName), []byte(embeddedFormatContent)); err != nil {
		return fmt.Errorf("journal: format %s: %w", dir, err)
	}
	return syncDir(dir)
}

// OpenEmbedded makes sure dir holds an embedded journal (initialising a
// missing or empty one), takes its lock and returns it; the caller closes
// it when the master stops.
func OpenEmbedded(dir string) (*os.File, error) {
	kind, err := KindOf(dir)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindLocal:
		return nil, wrongKind(dir, KindLocal, KindEmbedded)
	case "":
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("journal: %s: %w", dir, err)
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if kind == "" {
		err = initEmbedded(dir)
	} else {
		for _, sub := range []string{raftDirName, checkpointsDirName} {
			if err == nil {
				err = os.MkdirAll(filepath.Join(dir, sub), 0o755)
			}
		}
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("journal: %s: %w", dir, err)
	}
	return lock, nil
}

func writeFileSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ConvertDir rewrites the journal dir's marker to kind and sets aside
// what belongs to the other kind (its log and its checkpoints) under
// <dir>/<aside>, so nothing is lost and the master of the new kind starts
// clean. The caller holds the dir's lock (LockDir) and has written what the
// new kind needs.
func ConvertDir(dir, kind, aside string) error {
	asideDir := filepath.Join(dir, aside)
	if err := os.MkdirAll(asideDir, 0o755); err != nil {
		return fmt.Errorf("journal: convert %s: %w", dir, err)
	}
	var move []string
	switch kind {
	case KindEmbedded:
		move = []string{logsDirName}
	case KindLocal:
		move = []string{raftDirName}
	default:
		return fmt.Errorf("journal: convert %s: unknown kind %q", dir, kind)
	}
	for _, sub := range move {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			if err := os.Rename(filepath.Join(dir, sub), filepath.Join(asideDir, sub)); err != nil {
				return fmt.Errorf("journal: convert %s: %w", dir, err)
			}
		}
	}
	content := formatContent
	if kind == KindEmbedded {
		content = embeddedFormatContent
	}
	for _, sub := range []string{raftDirName, checkpointsDirName, logsDirName} {
		if kind == KindEmbedded && sub == logsDirName || kind == KindLocal && sub == raftDirName {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("journal: convert %s: %w", dir, err)
		}
	}
	if err := writeFileSynced(filepath.Join(dir, formatFileName), []byte(content)); err != nil {
		return fmt.Errorf("journal: convert %s: %w", dir, err)
	}
	return syncDir(dir)
}

// SetAsideCheckpoints moves every checkpoint file of dir but keep into
// <dir>/<aside>/checkpoints.
func SetAsideCheckpoints(dir, aside, keep string) error {
	cps, temps, err := listCheckpoints(dir)
	if err != nil {
		return err
	}
	to := filepath.Join(dir, aside, checkpointsDirName)
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, c := range cps {
		if c.path != keep {
			if err := os.Rename(c.path, filepath.Join(to, filepath.Base(c.path))); err != nil {
				return err
			}
		}
	}
	for _, t := range temps {
		_ = os.Remove(t)
	}
	return syncDir(checkpointsDir(dir))
}

// StartLogAt makes an empty log in the local journal dir whose first entry
// will be next (the entries before it are in a checkpoint at next-1).
func StartLogAt(dir string, next int64) error {
	logs := filepath.Join(dir, logsDirName)
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	path := filepath.Join(logs, openSegmentName(next))
	db, err := bbolt.Open(path, 0o644, segmentOptions())
	if err != nil {
		return fmt.Errorf("journal: create segment %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(entriesBucket)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: create segment %s: %w", path, err)
	}
	return syncDir(logs)
}

// LockDir takes the journal dir's lock, as a running master holds it; the
// caller closes the file to release it.
func LockDir(dir string) (*os.File, error) { return lockDir(dir) }

// CheckRaftLog checks an embedded journal's raft log file (raft.db, a
// bbolt file) before raft maps it: a file cut short would crash the
// process (SIGBUS) instead of failing with a message. A missing file is
// fine (a new member).
func CheckRaftLog(raftDir string) error {
	path := filepath.Join(raftDir, "raft.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := checkBoltFile(path); err != nil {
		return fmt.Errorf("the raft log of this member is damaged (%w): the group still holds every committed entry, so replace the member — 'alluvium fsadmin journal quorum remove ID' on the group, 'alluvium format --journal-type embedded --force' here, start it with --join and 'alluvium fsadmin journal quorum add ID RAFT RPC'", err)
	}
	return nil
}
