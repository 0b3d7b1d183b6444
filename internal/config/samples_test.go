package config

import (
	"path/filepath"
	"testing"
)

// TestSampleConfigsLoad keeps the files in configs/ loadable: a sample that
// no longer parses or validates is a broken promise to the reader.
func TestSampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample configs found: %v", err)
	}
	more, err := filepath.Glob("../../configs/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	for _, f := range files {
		if filepath.Base(filepath.Dir(f)) == "pipelines" {
			continue // pipeline definitions, not configs (internal/pipespec reads them)
		}
		l := NewLoader()
		if err := l.ReadFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := l.Load(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
