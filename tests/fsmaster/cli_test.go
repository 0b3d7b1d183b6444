package fsmaster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fileJSON is what `--output json` promises for files (DESIGN.md).
type fileJSON struct {
	Path          string `json:"path"`
	IsDir         bool   `json:"isDir"`
	Length        int64  `json:"length"`
	Persisted     bool   `json:"persisted"`
	CachedPercent int32  `json:"cachedPercent"`
	Blocks        []struct {
		ID        int64             `json:"id"`
		Locations []json.RawMessage `json:"locations"`
	} `json:"blocks"`
	Mode   string `json:"mode"`
	Owner  string `json:"owner"`
	Group  string `json:"group"`
	Pinned bool   `json:"pinned"`
}

func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	return v
}

// TestFSCLIRoundTrip drives the fs commands as a user does and checks their
// output, including --output json.
func TestFSCLIRoundTrip(t *testing.T) {
	n := newNode(t)
	m := n.master()
	// Files the UFS has before Alluvium looks.
	ufs := filepath.Join(n.home, "ufs")
	if err := os.MkdirAll(filepath.Join(ufs, "pre/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ufs, "pre/sub/data.bin"), make([]byte, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	st := decode[fileJSON](t, n.mustCLI("fs", "stat", "--output", "json", "/pre/sub/data.bin"))
	if st.Path != "/pre/sub/data.bin" || st.IsDir || st.Length != 3000 || !st.Persisted || st.CachedPercent != 0 || len(st.Blocks) != 1 || st.Blocks[0].Locations == nil {
		t.Fatalf("stat of a UFS file: %+v", st)
	}

	n.mustCLI("fs", "mkdir", "-p", "/a/b/c", "/x")
	n.mustCLI("fs", "mkdir", "-p", "/a/b") // exists: fine with -p
	if _, err := os.Stat(filepath.Join(ufs, "a/b/c")); err != nil {
		t.Fatalf("mkdir with the default CACHE_THROUGH did not create the UFS dir: %v", err)
	}
	out := n.mustCLI("fs", "ls", "/")
	for _, want := range []string{"/a", "/pre", "/x", "drwxr-xr-x", "PERSISTED"} {
		if !strings.Contains(out, want) {
			t.Fatalf("ls / lacks %q:\n%s", want, out)
		}
	}
	ls := decode[[]fileJSON](t, n.mustCLI("fs", "ls", "-R", "--output", "json", "/a"))
	if len(ls) != 2 || ls[0].Path != "/a/b" || ls[1].Path != "/a/b/c" || !ls[0].IsDir {
		t.Fatalf("ls -R --output json /a: %+v", ls)
	}
	if empty := decode[[]fileJSON](t, n.mustCLI("fs", "ls", "--output", "json", "/x")); len(empty) != 0 {
		t.Fatalf("empty dir listing %+v", empty)
	}
	n.mustCLI("fs", "mv", "/a/b", "/x") // into an existing directory
	if _, err := os.Stat(filepath.Join(ufs, "x/b/c")); err != nil {
		t.Fatalf("mv did not rename in the UFS: %v", err)
	}
	n.mustCLI("fs", "mv", "/x/b", "/x/renamed")
	n.mustCLI("fs", "chmod", "-R", "700", "/x")
	n.mustCLI("fs", "chown", "alice:staff", "/x/renamed")
	n.mustCLI("fs", "pin", "/x")
	got := decode[fileJSON](t, n.mustCLI("fs", "stat", "--output", "json", "/x/renamed"))
	if got.Mode != "0700" || got.Owner != "alice" || got.Group != "staff" || !got.Pinned {
		t.Fatalf("after chmod/chown/pin: %+v", got)
	}
	n.mustCLI("fs", "unpin", "/x")
	// A second UFS, mounted read-only.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "ro.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustCLI("fs", "mount", "--readonly", "--option", "k=v", "/mnt", "file://"+other)
	if out := n.mustCLI("fs", "mount"); !strings.Contains(out, "on /mnt") || !strings.Contains(out, "(ro") {
		t.Fatalf("mount table:\n%s", out)
	}
	if st := decode[fileJSON](t, n.mustCLI("fs", "stat", "--output", "json", "/mnt/ro.txt")); st.Length != 5 {
		t.Fatalf("mounted file %+v", st)
	}
	_, errOut, code := n.cli("fs", "mkdir", "/mnt/new")
	if code != 1 || !strings.Contains(errOut, "read-only") {
		t.Fatalf("mkdir in a read-only mount: exit %d %s", code, errOut)
	}
	n.mustCLI("fs", "unmount", "/mnt")
	if _, err := os.Stat(filepath.Join(other, "ro.txt")); err != nil {
		t.Fatal("unmount touched the UFS")
	}
	n.mustCLI("fs", "rm", "-r", "/x")
	if _, err := os.Stat(filepath.Join(ufs, "x")); !os.IsNotExist(err) {
		t.Fatalf("rm -r did not reach the UFS: %v", err)
	}
	n.mustCLI("fs", "rm", "-r", "--alluvium-only", "/pre")
	if _, err := os.Stat(filepath.Join(ufs, "pre/sub/data.bin")); err != nil {
		t.Fatal("rm --alluvium-only removed the UFS file")
	}
	rep := decode[struct {
		JournalSequence int64  `json:"journalSequence"`
		Inodes          int64  `json:"inodes"`
		UfsRoot         string `json:"ufsRoot"`
	}](t, n.mustCLI("fsadmin", "report", "--output", "json"))
	if rep.JournalSequence < 10 || rep.Inodes != 2 || rep.UfsRoot != "file://"+ufs {
		t.Fatalf("report %+v", rep)
	}
	if out := n.mustCLI("fsadmin", "report"); !strings.Contains(out, "Journal") || !strings.Contains(out, "Last checkpoint") {
		t.Fatalf("report:\n%s", out)
	}
	if out := n.mustCLI("fsadmin", "checkpoint"); !strings.Contains(out, "checkpoint at sequence") {
		t.Fatalf("checkpoint: %s", out)
	}
	if err := m.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// TestFSCLIBadInput: bad input gets one clear line naming the path, exit 1,
// and changes nothing; bad usage exits 2.
func TestFSCLIBadInput(t *testing.T) {
	n := newNode(t)
	n.master()
	n.mustCLI("fs", "mkdir", "-p", "/d/sub")
	n.mustCLI("fs", "mkdir", "/d/sub2")
	tree := func() string { return n.mustCLI("fs", "ls", "-R", "--output", "json", "/") }
	before := tree()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fs", "mkdir", "relative/path"}, `"relative/path"`},
		{[]string{"fs", "stat", "/bad\x01name"}, "control character"},
		{[]string{"fs", "mv", "/d", "/d/sub/inside"}, "/d/sub/inside: the destination is inside the source"},
		{[]string{"fs", "rm", "/d"}, "delete /d: directory not empty"},
		{[]string{"fs", "mkdir", "/d"}, "mkdir /d: already exists"},
		{[]string{"fs", "unmount", "/d/sub"}, "unmount /d/sub: not a mount point"},
		{[]string{"fs", "mkdir", "/nope/x"}, "parent /nope does not exist"},
		{[]string{"fs", "stat", "/missing"}, "stat /missing: no such file or directory"},
		{[]string{"fs", "mount", "/m", "ftp://host/x"}, "/m"},
		{[]string{"fs", "mount", "/d", "file://" + t.TempDir()}, "mount /d: path exists"},
		{[]string{"fs", "rm", "/"}, "root"},
	} {
		out, errOut, code := n.cli(c.args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("alluvium %q: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q", c.args, code, out, errOut, c.want)
		}
	}
	if after := tree(); after != before {
		t.Fatalf("bad input changed the tree:\nbefore %s\nafter %s", before, after)
	}
	for _, args := range [][]string{
		{"fs", "mv", "/only-one"},
		{"fs", "chmod", "rwx", "/d"},
		{"fs", "ls", "--bogus-flag", "/"},
		{"fs", "stat", "--output", "yaml", "/d"},
		{"fs", "mount", "/only-path"},
		{"fs", "mount", "--option", "novalue", "/m", "file:///tmp"},
	} {
		if _, errOut, code := n.cli(args...); code != 2 {
			t.Errorf("alluvium %q: exit %d (%s), want 2", args, code, errOut)
		}
	}
	if after := tree(); after != before {
		t.Fatalf("bad usage changed the tree")
	}
}

// TestFormat: format initialises a journal with the root mount, refuses a
// non-empty one without --force, never wipes one a master is using, and a
// bad UFS URI leaves nothing behind.
func TestFormat(t *testing.T) {
	n := newNode(t)
	ufs := filepath.Join(n.home, "elsewhere")
	n.mustCLI(n.args("format", "--ufs", "file://"+ufs)...)
	_, errOut, code := n.cli(n.args("format")...)
	if code != 1 || !strings.Contains(errOut, "--force") {
		t.Fatalf("format of a non-empty journal: exit %d %s", code, errOut)
	}
	m := n.master()
	if rep := decode[struct {
		UfsRoot string `json:"ufsRoot"`
	}](t, n.mustCLI("fsadmin", "report", "--output", "json")); rep.UfsRoot != "file://"+ufs {
		t.Fatalf("root mount %q, formatted with %q", rep.UfsRoot, ufs)
	}
	n.mustCLI("fs", "mkdir", "/keep")
	if _, errOut, code := n.cli(n.args("format", "--force")...); code != 1 || !strings.Contains(errOut, "locked") {
		t.Fatalf("format --force under a running master: exit %d %s", code, errOut)
	}
	n.mustCLI("fs", "stat", "/keep")
	if err := m.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	n.mustCLI(n.args("format", "--force")...)
	n.master()
	if _, _, code := n.cli("fs", "stat", "/keep"); code != 1 {
		t.Fatalf("/keep survived format --force (exit %d)", code)
	}
	other := newNode(t)
	if _, errOut, code := other.cli(other.args("format", "--ufs", "ftp://nowhere/x")...); code != 1 || !strings.Contains(errOut, "ftp") {
		t.Fatalf("format with a bad UFS: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(other.journalDir()); !os.IsNotExist(err) {
		t.Fatalf("a failed format left %s: %v", other.journalDir(), err)
	}
}
