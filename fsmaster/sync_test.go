package fsmaster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

// ufsWrite writes a file of n bytes into the test UFS at rel.
func ufsWrite(t *testing.T, ufsDir, rel string, n int) {
	t.Helper()
	full := filepath.Join(ufsDir, rel)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(strings.Repeat("x", n)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, ns *namespace, p string, lt api.LoadMetadataType) string {
	t.Helper()
	resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: p, LoadMetadataType: lt}))
	var out []string
	for _, fi := range resp.Infos {
		out = append(out, fi.Name)
	}
	return strings.Join(out, ",")
}

// TestSyncReconcilesWithTheUFS: a re-sync adds what the UFS gained,
// replaces what it changed and drops what it lost, but keeps what lives
// only in Alluvium.
func TestSyncReconcilesWithTheUFS(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	ufsWrite(t, ufsDir, "d/a", 10)
	ufsWrite(t, ufsDir, "d/b", 10)
	ufsWrite(t, ufsDir, "d/sub/x", 10)
	ufsWrite(t, ufsDir, "d/keep/y", 10)
	if got := names(t, ns, "/d", api.LoadMetadataType_ONCE); got != "a,b,keep,sub" {
		t.Fatalf("first listing %q", got)
	}
	names(t, ns, "/d/sub", api.LoadMetadataType_ONCE)
	names(t, ns, "/d/keep", api.LoadMetadataType_ONCE)
	oldA := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/d/a"}))
	create(t, ns, "/d/mine", 5)      // only in Alluvium
	create(t, ns, "/d/keep/mine", 5) // makes /d/keep more than a UFS copy

	// Behind Alluvium's back: one new, one changed, three gone.
	ufsWrite(t, ufsDir, "d/new", 3)
	ufsWrite(t, ufsDir, "d/a", 20)
	for _, rel := range []string{"d/b", "d/sub", "d/keep"} {
		if err := os.RemoveAll(filepath.Join(ufsDir, rel)); err != nil {
			t.Fatal(err)
		}
	}
	// ONCE trusts the namespace.
	if got := names(t, ns, "/d", api.LoadMetadataType_ONCE); got != "a,b,keep,mine,sub" {
		t.Fatalf("ONCE after UFS changes %q", got)
	}
	// ALWAYS syncs.
	if got := names(t, ns, "/d", api.LoadMetadataType_ALWAYS); got != "a,keep,mine,new" {
		t.Fatalf("ALWAYS after UFS changes %q", got)
	}
	a := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/d/a"}))
	if a.Length != 20 || a.FileId == oldA.FileId || a.UfsFingerprint == oldA.UfsFingerprint {
		t.Fatalf("changed file: %v (was %v)", a, oldA)
	}
	if got := names(t, ns, "/d/keep", api.LoadMetadataType_NEVER); got != "mine,y" {
		t.Fatalf("/d/keep holds an Alluvium-only file and must stay whole: %q", got)
	}
	_, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/d/sub/x", LoadMetadataType: api.LoadMetadataType_NEVER})
	wantCode(t, err, codes.NotFound, "file under a dropped directory")
	check(t, ns)

	// A second sync with nothing changed changes nothing.
	before := ns.st.Dump()
	if got := names(t, ns, "/d", api.LoadMetadataType_ALWAYS); got != "a,keep,mine,new" {
		t.Fatalf("second sync %q", got)
	}
	if after := ns.st.Dump(); after != before {
		t.Fatalf("a sync without UFS changes changed the namespace:\n%s\nvs\n%s", before, after)
	}
}

// TestSyncRecursive: ls -R with ALWAYS syncs every directory it walks,
// once each, across pages.
func TestSyncRecursive(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	for _, d := range []string{"t/a", "t/b", "t/c"} {
		for i := range 3 {
			ufsWrite(t, ufsDir, filepath.Join(d, string(rune('p'+i))), 1)
		}
	}
	if n := len(listAll(t, ns, "/t", true, 2)); n != 12 {
		t.Fatalf("ls -R found %d entries, want 12", n)
	}
	ufsWrite(t, ufsDir, "t/b/new", 1)
	if err := os.Remove(filepath.Join(ufsDir, "t/c/p")); err != nil {
		t.Fatal(err)
	}
	var got []string
	token := ""
	// Pages of 2 split every directory, yet each is synced once: the pages
	// that resume inside a directory do not sync it again.
	syncs := 0
	ns.onOp = func(op string) {
		if op == "load-children" {
			syncs++
		}
	}
	for {
		resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/t", Recursive: true, PageSize: 2, PageToken: token, LoadMetadataType: api.LoadMetadataType_ALWAYS}))
		for _, fi := range resp.Infos {
			got = append(got, fi.Path)
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	want := "/t/a,/t/a/p,/t/a/q,/t/a/r,/t/b,/t/b/new,/t/b/p,/t/b/q,/t/b/r,/t/c,/t/c/q,/t/c/r"
	if strings.Join(got, ",") != want {
		t.Fatalf("ls -R --sync\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	ns.onOp = nil
	if syncs != 4 {
		t.Fatalf("a paged ls -R --sync synced %d directories, want 4 (/t and its three)", syncs)
	}
	// Once synced, a plain recursive listing journals nothing more.
	n := len(j.entries)
	listAll(t, ns, "/t", true, 2)
	if len(j.entries) != n {
		t.Fatalf("a listing after the sync journaled %d entries", len(j.entries)-n)
	}
	check(t, ns)
}

// TestSyncInterval: with fsmaster.ufs-sync-interval set, a plain listing
// syncs a directory whose last sync is older than the interval.
func TestSyncInterval(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	now := time.Unix(1_000_000, 0)
	ns.now = func() time.Time { return now }
	ns.cfg.syncInterval = time.Minute
	ufsWrite(t, ufsDir, "i/a", 1)
	if got := names(t, ns, "/i", api.LoadMetadataType_ONCE); got != "a" {
		t.Fatalf("first %q", got)
	}
	ufsWrite(t, ufsDir, "i/b", 1)
	now = now.Add(30 * time.Second)
	if got := names(t, ns, "/i", api.LoadMetadataType_ONCE); got != "a" {
		t.Fatalf("within the interval %q", got)
	}
	now = now.Add(31 * time.Second)
	if got := names(t, ns, "/i", api.LoadMetadataType_ONCE); got != "a,b" {
		t.Fatalf("after the interval %q", got)
	}
	// NEVER never syncs.
	ufsWrite(t, ufsDir, "i/c", 1)
	now = now.Add(time.Hour)
	if got := names(t, ns, "/i", api.LoadMetadataType_NEVER); got != "a,b" {
		t.Fatalf("NEVER %q", got)
	}
}

// TestReconcileLooksAgain: a listing that looked stale is checked again
// before anything is dropped, so an entry the UFS has (again) stays.
func TestReconcileLooksAgain(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	ufsWrite(t, ufsDir, "r/a", 4)
	names(t, ns, "/r", api.LoadMetadataType_ONCE)
	before := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/r/a"}))
	ns.mu.RLock()
	id := ns.st.lookup("/r").id
	m, _ := ns.st.mountOf("/r")
	m = cloneMount(m)
	ns.mu.RUnlock()
	fs, err := ns.fsFor(bg, m)
	if err != nil {
		t.Fatal(err)
	}
	changed, removed, err := ns.reconcile(bg, id, "/r", m, fs, []string{"a"})
	if err != nil || changed != 0 || removed != 0 {
		t.Fatalf("reconcile of an unchanged file: changed %d removed %d err %v", changed, removed, err)
	}
	after := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/r/a"}))
	if after.FileId != before.FileId {
		t.Fatalf("an unchanged file was replaced: %v -> %v", before, after)
	}
}

// TestStatAlwaysSyncsOnePath: GetStatus with ALWAYS sees a file the UFS
// rewrote or deleted; ONCE keeps what the namespace knows.
func TestStatAlwaysSyncsOnePath(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	ufsWrite(t, ufsDir, "g/a", 10)
	ufsWrite(t, ufsDir, "g/b", 10)
	names(t, ns, "/g", api.LoadMetadataType_ONCE)
	ufsWrite(t, ufsDir, "g/a", 25)
	if err := os.Remove(filepath.Join(ufsDir, "g/b")); err != nil {
		t.Fatal(err)
	}
	if a := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/g/a"})); a.Length != 10 {
		t.Fatalf("ONCE: length %d, want the known 10", a.Length)
	}
	if a := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/g/a", LoadMetadataType: api.LoadMetadataType_ALWAYS})); a.Length != 25 {
		t.Fatalf("ALWAYS: length %d, want the UFS's 25", a.Length)
	}
	must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/g/b"}))
	_, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/g/b", LoadMetadataType: api.LoadMetadataType_ALWAYS})
	wantCode(t, err, codes.NotFound, "ALWAYS on a file the UFS lost")
	// An Alluvium-only file is left alone.
	create(t, ns, "/g/mine", 3)
	must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/g/mine", LoadMetadataType: api.LoadMetadataType_ALWAYS}))
	check(t, ns)
}
