package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// load reads a file (may be "") through a fresh loader, as a process does.
func load(t *testing.T, file string) error {
	t.Helper()
	l := NewLoader()
	if err := l.ReadFile(file); err != nil {
		return err
	}
	l.Set("home", t.TempDir())
	_, err := l.Load()
	return err
}

// TestUnknownFileKeysRefused: a key the configuration does not have stops
// the load, and the error names it and the key meant.
func TestUnknownFileKeysRefused(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		// The case: the proxy reads client.master.
		{"proxy:\n  master: host:19998\n", "unknown key proxy.master (did you mean client.master?)"},
		{"fsmaster:\n  journal:\n    dri: /j\n", "unknown key fsmaster.journal.dri (did you mean fsmaster.journal.dir?)"},
		{"fsmaster:\n  rpc_port: 1\n", "fsmaster.rpc_port (did you mean fsmaster.rpc-port?)"},
		{"worker:\n  threads: 4\n", "worker.threads (did you mean jobworker.threads?)"},
		{"proxy:\n  token: x\n", "proxy.token (did you mean security.token?)"},
		{"client:\n  masters: a:1,b:2\n", "client.masters (did you mean client.master?)"},
		{"client:\n  master:\n    host: a\n", "client.master.host (did you mean client.master?)"},
		{"master: a:1\n", "unknown key master (did you mean client.master, jobmaster.master or worker.master?)"},
		{"frobnicate: true\n", "unknown key frobnicate; every key"},
		{"Proxy:\n  Master: a:1\n", "proxy.master (did you mean client.master?)"},
		// Several at once: every one is named.
		{"proxy:\n  master: a\nfsmaster:\n  jornal:\n    dir: /j\n", "unknown keys fsmaster.jornal.dir (did you mean fsmaster.journal.dir?), proxy.master (did you mean client.master?)"},
		// Inside a list: the decoder's exact mode.
		{"worker:\n  tiers:\n    - alias: MEM\n      path: /dev/shm/x\n      qouta: 1GiB\n", "qouta"},
	} {
		err := load(t, writeConfig(t, c.yaml))
		if err == nil {
			t.Errorf("%q loaded without error", c.yaml)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q does not say %q", c.yaml, err, c.want)
		}
	}
}

// TestFreeFormKeysAccepted: the entries of map-valued keys (user names,
// mount options) and empty sections are not unknown keys.
func TestFreeFormKeysAccepted(t *testing.T) {
	yaml := `
security:
  users:
    alice: alice-token-0123456789
  groups:
    alice: staff,eng
fsmaster:
  ufs: s3://bucket/prefix
  ufs-options:
    s3.endpoint: http://127.0.0.1:9000
    s3.path-style: "true"
    s3.access-key: k
proxy:
  s3:
    users:
      AKIAEXAMPLE: secret
client:
jobworker: {}
worker:
  tiers:
    - alias: MEM
      path: /dev/shm/x
      quota: 1GiB
`
	if err := load(t, writeConfig(t, yaml)); err != nil {
		t.Fatal(err)
	}
	l := NewLoader()
	if err := l.ReadFile(writeConfig(t, yaml)); err != nil {
		t.Fatal(err)
	}
	l.Set("home", t.TempDir())
	c, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.FSMaster.UFSOptions["s3.endpoint"] != "http://127.0.0.1:9000" || c.Security.Users["alice"] == "" || c.Proxy.S3.Users["akiaexample"] != "secret" {
		t.Errorf("map entries lost: ufs-options %v users %v s3 users %v", c.FSMaster.UFSOptions, c.Security.Users, c.Proxy.S3.Users)
	}
}

// TestUnknownEnvRefused: an ALLUVIUM_* variable that sets no key stops the
// load, naming it and the variable meant; the client variables and the
// test switches pass.
func TestUnknownEnvRefused(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"ALLUVIUM_PROXY_MASTER", "ALLUVIUM_PROXY_MASTER (did you mean ALLUVIUM_CLIENT_MASTER (client.master)?)"},
		{"ALLUVIUM_FSMASTER_JOURNAL_DRI", "did you mean ALLUVIUM_FSMASTER_JOURNAL_DIR (fsmaster.journal.dir)?"},
		{"ALLUVIUM_MASTERS", "did you mean ALLUVIUM_MASTER?"},
		{"ALLUVIUM_SECURITY_USERS_ALICE", "did you mean ALLUVIUM_SECURITY_USERS (security.users)?"},
		{"ALLUVIUM_NOPE", "unknown environment variable ALLUVIUM_NOPE;"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.name, "x")
			err := load(t, "")
			if err == nil {
				t.Fatalf("%s set: loaded without error", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
	t.Run("allowed", func(t *testing.T) {
		for name := range OtherEnv {
			t.Setenv(name, "x")
		}
		t.Setenv("ALLUVIUM_TEST_ANYTHING", "1")
		t.Setenv("ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES", "10")
		t.Setenv("ALLUVIUM_JOBMASTER_RAFT_ELECTION_TIMEOUT", "2s")
		if err := load(t, ""); err != nil {
			t.Fatal(err)
		}
	})
}

// TestEveryKeyHasItsVariable: each key of Default() is known under its
// variable name, and the variable sets it.
func TestEveryKeyHasItsVariable(t *testing.T) {
	var env []string
	for k := range Default() {
		env = append(env, EnvName(k)+"=1")
	}
	if err := CheckEnv(env); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvName("jobmaster.task.max-attempts"), "7")
	l := NewLoader()
	l.Set("home", t.TempDir())
	c, err := l.Load()
	if err != nil || c.JobMaster.Task.MaxAttempts != 7 {
		t.Fatalf("ALLUVIUM_JOBMASTER_TASK_MAX_ATTEMPTS=7: %v, %+v", err, c)
	}
}

func TestSuggest(t *testing.T) {
	cands := knownKeys().sorted()
	for bad, want := range map[string]string{
		"proxy.master":             "client.master",
		"proxy.job-master":         "client.job-master",
		"jobworker.eviction":       "worker.eviction",
		"fsmaster.tls.enabled":     "security.tls.enabled",
		"jobmaster.raft.peer":      "jobmaster.raft.peers",
		"worker.tier":              "worker.tiers",
		"security.users":           "security.users",
		"log.levl":                 "log.level",
		"security.groups.x.y":      "security.groups",
		"zzzzzzzzzzzzzzzzzzzzzzzz": "",
	} {
		got := strings.Join(suggest(bad, cands, "."), ",")
		if got != want {
			t.Errorf("suggest(%q) = %q, want %q", bad, got, want)
		}
	}
}

// TestEveryAlluviumVariableIsKnown scans the repository for ALLUVIUM_* names:
// each one sets a key or is listed in OtherEnv/OtherEnvPrefixes, so a new
// variable some code reads cannot make every process refuse to start.
func TestEveryAlluviumVariableIsKnown(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a checkout)", err)
	}
	re := regexp.MustCompile(`\bALLUVIUM_[A-Z0-9_]*[A-Z0-9]\b`)
	seen := map[string][]string{}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// The tests of unknown keys hold deliberate typos.
		if strings.HasPrefix(f, "internal/config/") || strings.HasPrefix(f, "tests/config/") || strings.HasSuffix(f, ".pb.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			continue // deleted in the work tree
		}
		for _, m := range re.FindAllString(string(b), -1) {
			seen[m] = append(seen[m], f)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("found only %d ALLUVIUM_* names: the scan is broken", len(seen))
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := CheckEnv([]string{n + "=x"}); err != nil {
			t.Errorf("%s, used in %v, is not a key's variable: add it to OtherEnv (keys.go) and configs/README.md if it is meant: %v", n, seen[n], err)
		}
	}
}
