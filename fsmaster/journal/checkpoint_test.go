package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"go.uber.org/zap/zapcore"
)

func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if p, s, err := LatestCheckpoint(dir, nil); p != "" || s != 0 || err != nil {
		t.Fatalf("LatestCheckpoint with none = %q, %d, %v", p, s, err)
	}
	path, err := WriteCheckpoint(dir, 1234, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("inodes"))
		if err != nil {
			return err
		}
		sub, err := b.CreateBucket([]byte("children"))
		if err != nil {
			return err
		}
		if err := sub.Put([]byte("a"), []byte("1")); err != nil {
			return err
		}
		return b.Put([]byte("root"), []byte("dir"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "checkpoints", "1234.bolt") {
		t.Fatalf("checkpoint written to %s", path)
	}
	got, seq, err := LatestCheckpoint(dir, nil)
	if err != nil || got != path || seq != 1234 {
		t.Fatalf("LatestCheckpoint = %q, %d, %v", got, seq, err)
	}
	db, err := OpenCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("inodes"))
		if b == nil || string(b.Get([]byte("root"))) != "dir" || string(b.Bucket([]byte("children")).Get([]byte("a"))) != "1" {
			return errors.New("content differs")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(*bbolt.Tx) error { return nil }); err == nil {
		t.Fatal("OpenCheckpoint gave a writable db")
	}

	// The caller's error aborts the checkpoint and leaves nothing behind.
	boom := errors.New("boom")
	if _, err := WriteCheckpoint(dir, 2000, func(*bbolt.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("WriteCheckpoint with failing writer: %v", err)
	}
	if _, err := WriteCheckpoint(dir, 2001, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(checkpointBucket)
		return err
	}); err == nil {
		t.Fatal("content using the reserved marker bucket was accepted")
	}
	if cps, temps, _ := listCheckpoints(dir); len(cps) != 1 || len(temps) != 0 {
		t.Fatalf("failed writes left files: %v %v", cps, temps)
	}
}

// TestCheckpointPartialFilesAreNeverLoaded builds every kind of file a
// crash or damage could leave and checks LatestCheckpoint passes over each
// with a log line and returns the newest good one.
func TestCheckpointPartialFilesAreNeverLoaded(t *testing.T) {
	dir := t.TempDir()
	cdir := filepath.Join(dir, "checkpoints")
	good, err := WriteCheckpoint(dir, 100, fillCheckpoint(500, nil))
	if err != nil {
		t.Fatal(err)
	}
	goodBytes, _ := os.ReadFile(good)

	// 500: a complete-looking name, content but no marker (as if the
	// writer's transaction had been cut before the marker).
	noMarker := filepath.Join(cdir, "500.bolt")
	db, err := bbolt.Open(noMarker, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fillCheckpoint(500, nil)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// 400: a good checkpoint truncated (its meta pages point past EOF).
	os.WriteFile(filepath.Join(cdir, "400.bolt"), goodBytes[:len(goodBytes)/2], 0o644)
	// 300: a good checkpoint with one value flipped (checksum mismatch).
	p300, err := WriteCheckpoint(dir, 300, fillCheckpoint(500, nil))
	if err != nil {
		t.Fatal(err)
	}
	flipped, _ := os.ReadFile(p300)
	if flipAll(flipped, []byte("value of inode 250")) != 1 {
		t.Fatal("value not found in the checkpoint file")
	}
	os.WriteFile(p300, flipped, 0o644)
	// 250: the good checkpoint under another name (marker says 100).
	os.WriteFile(filepath.Join(cdir, "250.bolt"), goodBytes, 0o644)
	// 600: not bbolt at all; 700: empty; and a temp file of a writer.
	os.WriteFile(filepath.Join(cdir, "600.bolt"), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(cdir, "700.bolt"), nil, 0o644)
	os.WriteFile(filepath.Join(cdir, ".tmp-800-123.bolt"), goodBytes, 0o644)

	log, logs := observed(zapcore.InfoLevel)
	path, seq, err := LatestCheckpoint(dir, log)
	if err != nil || path != good || seq != 100 {
		t.Fatalf("LatestCheckpoint = %q, %d, %v; want %s", path, seq, err, good)
	}
	skipped := map[string]string{}
	for _, e := range logs.All() {
		f := e.ContextMap()
		file, _ := f["file"].(string)
		errText, _ := f["error"].(string)
		skipped[filepath.Base(file)] = errText
	}
	for name, why := range map[string]string{
		"500.bolt": "marker", "400.bolt": "truncated", "300.bolt": "checksum", "250.bolt": "sequence",
		"600.bolt": "meta", "700.bolt": "meta", ".tmp-800-123.bolt": "",
	} {
		got, ok := skipped[name]
		if !ok || !strings.Contains(got, why) {
			t.Errorf("%s: skip log %q (logged %v), want one mentioning %q", name, got, ok, why)
		}
	}

	// RemoveOldCheckpoints removes the damaged ones and keeps the good one.
	if err := RemoveOldCheckpoints(dir, 2); err != nil {
		t.Fatal(err)
	}
	cps, _, _ := listCheckpoints(dir)
	if len(cps) != 1 || cps[0].seq != 100 {
		t.Fatalf("after RemoveOldCheckpoints: %v", cps)
	}
}

func TestRemoveOldCheckpointsKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	for _, seq := range []int64{10, 20, 30, 40} {
		if _, err := WriteCheckpoint(dir, seq, fillCheckpoint(10, nil)); err != nil {
			t.Fatal(err)
		}
	}
	// The newest is damaged: it does not count towards keep.
	os.WriteFile(CheckpointPath(dir, 40), []byte("torn"), 0o644)
	if err := RemoveOldCheckpoints(dir, 2); err != nil {
		t.Fatal(err)
	}
	cps, _, _ := listCheckpoints(dir)
	if fmt.Sprint(cps) != fmt.Sprint([]cpFile{{CheckpointPath(dir, 30), 30}, {CheckpointPath(dir, 20), 20}}) {
		t.Fatalf("kept %v", cps)
	}
	if err := RemoveOldCheckpoints(dir, 0); err != nil { // at least one is kept
		t.Fatal(err)
	}
	if _, seq, _ := LatestCheckpoint(dir, nil); seq != 30 {
		t.Fatalf("latest after keep=0 is %d", seq)
	}
}
