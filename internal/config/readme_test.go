package config

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/alluvium/alluvium/internal/humanize"
)

// TestREADMEListsEveryKey keeps configs/README.md true to Default(): every
// key is documented, and nothing documented is gone from the code.
func TestREADMEListsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../configs/README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The key table is the first section; later sections (mount options)
	// have tables of their own.
	text := string(b)
	if i := strings.Index(text, "\n## "); i >= 0 {
		text = text[:i]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9.\\-\\[\\]]+)` \\|").FindAllStringSubmatch(text, -1) {
		documented[m[1]] = true
	}
	var missing, stale []string
	def := Default()
	for k := range def {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if _, ok := def[k]; !ok {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("keys in Default() but not in configs/README.md: %v", missing)
	}
	if len(stale) > 0 {
		t.Errorf("keys in configs/README.md but not in Default(): %v", stale)
	}
}

func TestLoadLayers(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/c.yaml"
	if err := os.WriteFile(file, []byte("fsmaster:\n  rpc-port: 23000\n  worker:\n    timeout: 5s\nworker:\n  tiers:\n    - alias: SSD\n      path: /tmp/x\n      quota: 64MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ALLUVIUM_FSMASTER_HTTP_PORT", "23999")
	l := NewLoader()
	if err := l.ReadFile(file); err != nil {
		t.Fatal(err)
	}
	l.Set("home", dir)
	c, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.FSMaster.RPCPort != 23000 || c.FSMaster.HTTPPort != 23999 || c.FSMaster.Worker.Timeout.Seconds() != 5 {
		t.Errorf("layers not applied: rpc %d http %d timeout %s", c.FSMaster.RPCPort, c.FSMaster.HTTPPort, c.FSMaster.Worker.Timeout)
	}
	if len(c.Worker.Tiers) != 1 || c.Worker.Tiers[0].Alias != "SSD" {
		t.Errorf("tiers = %+v", c.Worker.Tiers)
	}
	if c.FSMaster.Journal.Dir != dir+"/journal" || c.FSMaster.UFS != "file://"+dir+"/ufs" {
		t.Errorf("derived paths: journal %q ufs %q", c.FSMaster.Journal.Dir, c.FSMaster.UFS)
	}
	l.SetPortBase(30000)
	c, _ = l.Load()
	if c.JobMaster.RPCPort != 30003 || c.Proxy.S3Port != 30007 || c.Client.Master != "localhost:30000" {
		t.Errorf("port base: jm %d s3 %d client %s", c.JobMaster.RPCPort, c.Proxy.S3Port, c.Client.Master)
	}
}

func TestGCHeapFloor(t *testing.T) {
	for val, want := range map[string]int64{"": 128 << 20, "0": 0, "64MiB": 64 << 20} {
		l := NewLoader()
		l.Set("home", t.TempDir())
		if val != "" {
			l.Set("process.gc-heap-floor", val)
		}
		c, err := l.Load()
		if err != nil {
			t.Fatalf("gc-heap-floor %q: %v", val, err)
		}
		if got := c.Process.HeapFloor(); got != want {
			t.Errorf("gc-heap-floor %q: HeapFloor() = %d, want %d", val, got, want)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for key, val := range map[string]any{
		"log.format":            "xml",
		"worker.role":           "boss",
		"fsmaster.rpc-port":     70000,
		"process.gc-heap-floor": "lots",
	} {
		l := NewLoader()
		l.Set(key, val)
		if _, err := l.Load(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%v: error %v, want one naming the key", key, val, err)
		}
	}
	if _, err := humanize.ParseBytes("12 parsecs"); err == nil {
		t.Error("ParseBytes accepted nonsense")
	}
	if n, err := humanize.ParseBytes("64MiB"); err != nil || n != 64<<20 {
		t.Errorf("humanize.ParseBytes(64MiB) = %d, %v", n, err)
	}
}
