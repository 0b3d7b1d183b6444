package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The demo itself runs in CI as `make demo` (.ci/run), against the built
// binary; these check its parts that need no cluster.

func TestGenerateSample(t *testing.T) {
	d := &demo{nFiles: 60, total: 4 << 20, start: time.Now(), out: io.Discard}
	d.dir = t.TempDir()
	d.ufs = filepath.Join(d.dir, "ufs")
	if err := d.generate(); err != nil {
		t.Fatal(err)
	}
	if len(d.sample) != 60 || len(d.hot) != 10 {
		t.Fatalf("%d files, %d hot; want 60 and 10", len(d.sample), len(d.hot))
	}
	var sum int64
	for p, n := range d.sample {
		st, err := os.Stat(filepath.Join(d.ufs, p))
		if err != nil || st.Size() != n {
			t.Fatalf("%s: %v, size %d want %d", p, err, st.Size(), n)
		}
		sum += n
	}
	if sum < 3<<20 || sum > 5<<20 {
		t.Fatalf("%d bytes, want about 4 MiB", sum)
	}
	// Deterministic: the same sample every time.
	e := &demo{nFiles: 60, total: 4 << 20, start: time.Now(), out: io.Discard, dir: t.TempDir()}
	e.ufs = filepath.Join(e.dir, "ufs")
	if err := e.generate(); err != nil {
		t.Fatal(err)
	}
	for p := range d.sample {
		a, _ := os.ReadFile(filepath.Join(d.ufs, p))
		b, _ := os.ReadFile(filepath.Join(e.ufs, p))
		if string(a) != string(b) {
			t.Fatalf("%s differs between two runs", p)
		}
	}
}

func TestReadEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	os.WriteFile(p, []byte("export ALLUVIUM_MASTER=localhost:1\nexport ALLUVIUM_JOB_MASTER='localhost:4'\nexport ALLUVIUM_TOKEN=\"s3cret\"\n"), 0o644)
	env, err := readEnv(p)
	if err != nil || env["ALLUVIUM_MASTER"] != "localhost:1" || env["ALLUVIUM_JOB_MASTER"] != "localhost:4" || env["ALLUVIUM_TOKEN"] != "s3cret" {
		t.Fatalf("%v %v", env, err)
	}
	os.WriteFile(p, []byte("export ALLUVIUM_PROXY=x\n"), 0o644)
	if _, err := readEnv(p); err == nil {
		t.Fatal("an env without masters was accepted")
	}
}
