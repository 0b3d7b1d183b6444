package fsmaster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// newPermNS is a namespace with permission checks on: root is the
// superuser, dan is in the supergroup admins, alice and bob share staff.
//
//	/              root root  0755
//	/home          root root  0755
//	/home/bob      bob  bob   0700
//	/home/bob/f    bob  bob   0600
//	/proj          bob  staff 0750
//	/proj/f        bob  staff 0640
//	/proj/w        bob  staff 0660
//	/pub           bob  bob   0755
//	/pub/f         bob  bob   0644
//	/tmpw          root root  0777
//	/tmpw/x        root root  0777
//	/tmpw/x/priv   bob  bob   0700
func newPermNS(t *testing.T, enabled bool) *namespace {
	t.Helper()
	ufsDir := filepath.Join(t.TempDir(), "ufs")
	if err := os.MkdirAll(ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(NewState(), &memJournal{}, nsConfig{
		blockSize: 1024, owner: "root", group: "root",
		writeType: api.WriteType_MUST_CACHE,
		perm: permConfig{enabled: enabled, superuser: "root", supergroup: "admins", groups: map[string][]string{
			"alice": {"alice", "staff"}, "bob": {"bob", "staff"}, "carol": {"carol"}, "dan": {"dan", "admins"},
		}},
	}, nil, nil)
	if err := ns.bootstrap(context.Background(), "file://"+ufsDir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.closeUFS)
	root := context.Background()
	dir := func(p, owner, group string, mode uint32) {
		must(ns.CreateDirectory(root, &api.CreateDirectoryRequest{Path: p, Mode: mode}))
		must(ns.SetAttribute(root, &api.SetAttributeRequest{Path: p, Owner: &owner, Group: &group}))
	}
	file := func(p, owner, group string, mode uint32) {
		must(ns.CreateFile(root, &api.CreateFileRequest{Path: p, Mode: mode}))
		must(ns.CompleteFile(root, &api.CompleteFileRequest{Path: p, Length: 10}))
		must(ns.SetAttribute(root, &api.SetAttributeRequest{Path: p, Owner: &owner, Group: &group}))
	}
	dir("/home", "root", "root", 0o755)
	dir("/home/bob", "bob", "bob", 0o700)
	file("/home/bob/f", "bob", "bob", 0o600)
	dir("/proj", "bob", "staff", 0o750)
	file("/proj/f", "bob", "staff", 0o640)
	file("/proj/w", "bob", "staff", 0o660)
	dir("/pub", "bob", "bob", 0o755)
	file("/pub/f", "bob", "bob", 0o644)
	dir("/tmpw", "root", "root", 0o777)
	dir("/tmpw/x", "root", "root", 0o777)
	dir("/tmpw/x/priv", "bob", "bob", 0o700)
	// Merge the root's UFS children once, so later reads journal nothing.
	must(ns.ListStatus(root, &api.ListStatusRequest{Path: "/", Recursive: true}))
	return ns
}

// as is a call context of user (authenticated as itself).
func as(user string) context.Context {
	if user == "" {
		return context.Background() // in-process: the system
	}
	return rpc.WithIdentity(context.Background(), rpc.Identity{User: user})
}

func ptr[T any](v T) *T { return &v }

// TestPermissionTable runs every namespace operation as several users
// against modes that allow or refuse it: a refusal is PermissionDenied
// naming the user and the path at fault, and changes nothing.
func TestPermissionTable(t *testing.T) {
	mountDir := t.TempDir()
	type opFn func(ns *namespace, ctx context.Context) error
	stat := func(p string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.GetStatus(ctx, &api.GetStatusRequest{Path: p})
			return err
		}
	}
	ls := func(p string, recursive bool) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.ListStatus(ctx, &api.ListStatusRequest{Path: p, Recursive: recursive})
			return err
		}
	}
	create := func(p string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.CreateFile(ctx, &api.CreateFileRequest{Path: p, Recursive: true})
			return err
		}
	}
	overwrite := func(p string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.CreateFile(ctx, &api.CreateFileRequest{Path: p, Overwrite: true})
			return err
		}
	}
	mkdir := func(p string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: p, Recursive: true})
			return err
		}
	}
	del := func(p string, recursive bool) opFn {
		return func(ns *namespace, ctx context.Context) error {
			return ns.Delete(ctx, &api.DeleteRequest{Path: p, Recursive: recursive})
		}
	}
	mv := func(src, dst string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.Rename(ctx, &api.RenameRequest{Src: src, Dst: dst})
			return err
		}
	}
	setattr := func(r *api.SetAttributeRequest) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.SetAttribute(ctx, proto.Clone(r).(*api.SetAttributeRequest))
			return err
		}
	}
	free := func(p string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.Free(ctx, &api.FreeRequest{Path: p, Force: true, Recursive: true})
			return err
		}
	}
	access := func(p string, bits uint32, recursive bool) opFn {
		return func(ns *namespace, ctx context.Context) error {
			return ns.CheckAccess(ctx, &api.CheckAccessRequest{Path: p, Bits: bits, Recursive: recursive})
		}
	}
	mount := func(p string) opFn {
		return func(ns *namespace, ctx context.Context) error {
			_, err := ns.Mount(ctx, &api.MountRequest{AlluviumPath: p, UfsUri: "file://" + mountDir})
			return err
		}
	}
	const denied, ok = codes.PermissionDenied, codes.OK
	for _, tc := range []struct {
		name  string
		user  string
		op    opFn
		want  codes.Code
		names string // the path a refusal names
	}{
		// traverse: execute on every ancestor
		{"stat in a 0700 dir of another", "alice", stat("/home/bob/f"), denied, "/home/bob"},
		{"stat in own 0700 dir", "bob", stat("/home/bob/f"), ok, ""},
		{"stat as the superuser", "root", stat("/home/bob/f"), ok, ""},
		{"stat as the supergroup", "dan", stat("/home/bob/f"), ok, ""},
		{"stat as the system (no identity)", "", stat("/home/bob/f"), ok, ""},
		{"stat of a missing path under a 0700 dir", "alice", stat("/home/bob/nope"), denied, "/home/bob"},
		{"stat through a group r-x dir", "alice", stat("/proj/f"), ok, ""},
		{"stat through a dir others may not enter", "carol", stat("/proj/f"), denied, "/proj"},
		// listing: read+execute on the directory (and every one below, -R)
		{"ls a 0700 dir of another", "alice", ls("/home/bob", false), denied, "/home/bob"},
		{"ls own 0700 dir", "bob", ls("/home/bob", false), ok, ""},
		{"ls a group r-x dir", "alice", ls("/proj", false), ok, ""},
		{"ls a dir with no bits for others", "carol", ls("/proj", false), denied, "/proj"},
		{"ls -R over a private subtree", "alice", ls("/", true), denied, "/home/bob"},
		{"ls -R as the supergroup", "dan", ls("/", true), ok, ""},
		{"ls a file: traverse only", "alice", ls("/pub/f", false), ok, ""},
		// create / mkdir: write+execute on the deepest existing directory
		{"create in a group r-x dir", "alice", create("/proj/new"), denied, "/proj"},
		{"create in own dir", "bob", create("/proj/new"), ok, ""},
		{"create in a 0777 dir", "alice", create("/tmpw/new"), ok, ""},
		{"create with parents in a 0777 dir", "alice", create("/tmpw/a/b/c"), ok, ""},
		{"create with parents under a 0755 dir of another", "alice", create("/pub/a/b"), denied, "/pub"},
		{"overwrite needs the parent's write", "alice", overwrite("/pub/f"), denied, "/pub"},
		{"mkdir -p in a 0777 dir", "alice", mkdir("/tmpw/m/n"), ok, ""},
		{"mkdir in a 0755 dir of another", "alice", mkdir("/pub/m"), denied, "/pub"},
		{"mkdir in / as a user", "alice", mkdir("/top"), denied, "/"},
		{"mkdir in / as the superuser", "root", mkdir("/top"), ok, ""},
		// delete: write+execute on the parent; rm -r: r+w+x on every dir below
		{"rm in a 0755 dir of another", "alice", del("/pub/f", false), denied, "/pub"},
		{"rm in own dir", "bob", del("/pub/f", false), ok, ""},
		{"rm -r over a private subdirectory", "alice", del("/tmpw/x", true), denied, "/tmpw/x/priv"},
		{"rm -r as the superuser", "root", del("/tmpw/x", true), ok, ""},
		{"rm -r of another's 0700 dir from a root 0755 dir", "alice", del("/home/bob", true), denied, "/home"},
		// rename: write+execute on both parents
		{"mv out of a dir of another", "alice", mv("/pub/f", "/tmpw/f"), denied, "/pub"},
		{"mv into a dir of another", "alice", mv("/tmpw/x", "/pub/x"), denied, "/pub"},
		{"mv own file to a 0777 dir", "bob", mv("/pub/f", "/tmpw/f"), ok, ""},
		// chmod/chown/chgrp and other attributes
		{"chmod another's file", "alice", setattr(&api.SetAttributeRequest{Path: "/pub/f", Mode: ptr(uint32(0o777))}), denied, "/pub/f"},
		{"chmod own file", "bob", setattr(&api.SetAttributeRequest{Path: "/pub/f", Mode: ptr(uint32(0o600))}), ok, ""},
		{"chmod -R with another's file below", "alice", setattr(&api.SetAttributeRequest{Path: "/tmpw", Mode: ptr(uint32(0o700)), Recursive: true}), denied, "/tmpw"},
		{"chown by the owner", "bob", setattr(&api.SetAttributeRequest{Path: "/pub/f", Owner: ptr("alice")}), denied, ""},
		{"chown by the superuser", "root", setattr(&api.SetAttributeRequest{Path: "/pub/f", Owner: ptr("alice")}), ok, ""},
		{"chgrp to a group of the owner", "bob", setattr(&api.SetAttributeRequest{Path: "/pub/f", Group: ptr("staff")}), ok, ""},
		{"chgrp to a group the owner is not in", "bob", setattr(&api.SetAttributeRequest{Path: "/pub/f", Group: ptr("admins")}), denied, ""},
		{"pin a group-writable file", "alice", setattr(&api.SetAttributeRequest{Path: "/proj/w", Pinned: ptr(true)}), ok, ""},
		{"pin a group-read-only file", "alice", setattr(&api.SetAttributeRequest{Path: "/proj/f", Pinned: ptr(true)}), denied, "/proj/f"},
		{"ttl on a file others may only read", "carol", setattr(&api.SetAttributeRequest{Path: "/pub/f", Ttl: ptr(int64(1000))}), denied, "/pub/f"},
		// free: write
		{"free a read-only file", "alice", free("/proj/f"), denied, "/proj/f"},
		{"free a group-writable file", "alice", free("/proj/w"), ok, ""},
		// mount: superuser only
		{"mount as a user", "alice", mount("/tmpw/mnt"), denied, ""},
		{"mount as the superuser", "root", mount("/tmpw/mnt"), ok, ""},
		// Nothing about a path under a directory the caller may not
		// search is told, present or absent: the refusal comes first.
		{"create over a file in a 0700 dir", "alice", create("/home/bob/f"), denied, "/home/bob"},
		{"create over a missing file in a 0700 dir", "alice", create("/home/bob/nope"), denied, "/home/bob"},
		{"create -p below a missing dir in a 0700 dir", "alice", func(ns *namespace, ctx context.Context) error {
			_, err := ns.CreateFile(ctx, &api.CreateFileRequest{Path: "/home/bob/nope/x"})
			return err
		}, denied, "/home/bob"},
		{"overwrite a file in a 0700 dir", "alice", overwrite("/home/bob/f"), denied, "/home/bob"},
		{"rm a missing file in a 0700 dir", "alice", del("/home/bob/nope", false), denied, "/home/bob"},
		{"mv a missing file out of a 0700 dir", "alice", mv("/home/bob/nope", "/tmpw/y"), denied, "/home/bob"},
		{"mv into a missing dir in a 0700 dir", "alice", mv("/tmpw/x", "/home/bob/nope/x"), denied, "/home/bob"},
		{"chmod a missing file in a 0700 dir", "alice", setattr(&api.SetAttributeRequest{Path: "/home/bob/nope", Mode: ptr(uint32(0o777))}), denied, "/home/bob"},
		{"free a missing file in a 0700 dir", "alice", free("/home/bob/nope"), denied, "/home/bob"},
		{"ls a missing dir in a 0700 dir", "alice", ls("/home/bob/nope", false), denied, "/home/bob"},
		{"stat below a file of a 0700 dir", "alice", stat("/home/bob/f/x"), denied, "/home/bob"},
		// CheckAccess
		{"access r -R of a readable tree", "alice", access("/proj", permR, true), ok, ""},
		{"access w -R of a read-only tree", "alice", access("/proj", permW, true), denied, "/proj"},
		{"access r of a file in a 0700 dir", "alice", access("/home/bob/f", permR, false), denied, "/home/bob"},
		{"access r -R of / over a private dir", "alice", access("/", permR, true), denied, "/home/bob"},
		{"access w of a group-writable file", "alice", access("/proj/w", permW, false), ok, ""},
		{"access r -R of / as the superuser", "root", access("/", permR, true), ok, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newPermNS(t, true)
			before := dump(ns)
			err := tc.op(ns, as(tc.user))
			if codeOf(err) != tc.want {
				t.Fatalf("%s as %q: %v, want %v", tc.name, tc.user, err, tc.want)
			}
			check(t, ns)
			if tc.want == ok {
				return
			}
			if !strings.Contains(err.Error(), "user "+tc.user) {
				t.Errorf("refusal %q does not name user %s", err, tc.user)
			}
			if msg := err.Error(); tc.names != "" && !strings.Contains(msg, " "+tc.names+" ") && !strings.Contains(msg, " "+tc.names+";") {
				t.Errorf("refusal %q does not name %s", err, tc.names)
			}
			if after := dump(ns); after != before {
				t.Errorf("a refused %s changed the namespace:\n%s", tc.name, diff(before, after))
			}
		})
	}
}

// What a user creates is theirs: owner the user, group its first group.
func TestCreateOwnership(t *testing.T) {
	ns := newPermNS(t, true)
	f := must(ns.CreateFile(as("alice"), &api.CreateFileRequest{Path: "/tmpw/a/f", Recursive: true}))
	if f.GetOwner() != "alice" || f.GetGroup() != "alice" || f.GetMode() != 0o644 {
		t.Errorf("file: owner %s group %s mode %o, want alice alice 644", f.GetOwner(), f.GetGroup(), f.GetMode())
	}
	d := must(ns.GetStatus(as("alice"), &api.GetStatusRequest{Path: "/tmpw/a"}))
	if d.GetOwner() != "alice" || d.GetMode() != 0o755 {
		t.Errorf("parent made on the way: owner %s mode %o", d.GetOwner(), d.GetMode())
	}
	// The creator completes its file whatever its mode; others may not.
	must(ns.CreateFile(as("alice"), &api.CreateFileRequest{Path: "/tmpw/ro", Mode: 0o444}))
	wantCode(t, func() error {
		_, err := ns.CompleteFile(as("carol"), &api.CompleteFileRequest{Path: "/tmpw/ro", Length: 1})
		return err
	}(), codes.PermissionDenied, "carol completes alice's file")
	must(ns.CompleteFile(as("alice"), &api.CompleteFileRequest{Path: "/tmpw/ro", Length: 1}))
	// A user not in the group map gets a group of its own name.
	g := must(ns.CreateFile(as("erin"), &api.CreateFileRequest{Path: "/tmpw/e"}))
	if g.GetOwner() != "erin" || g.GetGroup() != "erin" {
		t.Errorf("unmapped user: %s/%s", g.GetOwner(), g.GetGroup())
	}
	// The system identity (and the superuser by name) creates as root.
	r := must(ns.CreateFile(context.Background(), &api.CreateFileRequest{Path: "/tmpw/r"}))
	if r.GetOwner() != "root" || r.GetGroup() != "root" {
		t.Errorf("system: %s/%s", r.GetOwner(), r.GetGroup())
	}
	// After chmod the other user gets in.
	wantCode(t, func() error {
		_, err := ns.GetStatus(as("alice"), &api.GetStatusRequest{Path: "/home/bob/f"})
		return err
	}(),
		codes.PermissionDenied, "alice stat before chmod")
	must(ns.SetAttribute(as("bob"), &api.SetAttributeRequest{Path: "/home/bob", Mode: ptr(uint32(0o755))}))
	must(ns.GetStatus(as("alice"), &api.GetStatusRequest{Path: "/home/bob/f"}))
}

// A user acting through the system identity (a job worker, the proxy) is
// checked as that user.
func TestImpersonatedUserIsChecked(t *testing.T) {
	ns := newPermNS(t, true)
	ctx := rpc.WithIdentity(context.Background(), rpc.Identity{User: "alice", Via: "root"})
	_, err := ns.GetStatus(ctx, &api.GetStatusRequest{Path: "/home/bob/f"})
	wantCode(t, err, codes.PermissionDenied, "system acting for alice")
	ctx = rpc.WithIdentity(context.Background(), rpc.Identity{User: "bob", Via: "root"})
	must(ns.GetStatus(ctx, &api.GetStatusRequest{Path: "/home/bob/f"}))
}

// security.permissions off: every user passes (ownership is still kept).
func TestPermissionsOff(t *testing.T) {
	ns := newPermNS(t, false)
	must(ns.GetStatus(as("alice"), &api.GetStatusRequest{Path: "/home/bob/f"}))
	f := must(ns.CreateFile(as("alice"), &api.CreateFileRequest{Path: "/pub/g"}))
	if f.GetOwner() != "alice" {
		t.Errorf("owner %s, want alice", f.GetOwner())
	}
}

func TestConfiguredPathLimits(t *testing.T) {
	ns := newPermNS(t, true)
	ns.cfg.pathLimits.MaxDepth = 4
	ns.cfg.pathLimits.MaxLength = 40
	before := dump(ns)
	_, err := ns.CreateDirectory(context.Background(), &api.CreateDirectoryRequest{Path: "/a/b/c/d/e", Recursive: true})
	wantCode(t, err, codes.InvalidArgument, "mkdir 5 deep with max-depth 4")
	if !strings.Contains(err.Error(), "deeper than 4") {
		t.Errorf("error %q does not name the limit", err)
	}
	_, err = ns.CreateFile(context.Background(), &api.CreateFileRequest{Path: "/" + strings.Repeat("x", 40)})
	wantCode(t, err, codes.InvalidArgument, "create a 41-byte path with max-length 40")
	if dump(ns) != before {
		t.Error("a refused path changed the namespace")
	}
	must(ns.CreateDirectory(context.Background(), &api.CreateDirectoryRequest{Path: "/a/b/c/d", Recursive: true}))
}

// The gate lets max-expensive-calls in at once; one more waits its wait
// and is refused with ResourceExhausted, and gets in once a slot is free.
func TestExpensiveCallGate(t *testing.T) {
	g := newGate(2, 20*time.Millisecond)
	a, err := g.enter(context.Background(), "ls", "/a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.enter(context.Background(), "ls", "/b")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = g.enter(context.Background(), "ls", "/c")
	wantCode(t, err, codes.ResourceExhausted, "third call on a gate of two")
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("refused after %s, want after the 20ms wait", d)
	}
	if !strings.Contains(err.Error(), "fsmaster.max-expensive-calls") {
		t.Errorf("error %q does not name the key", err)
	}
	// A slot freed while a call waits lets it in. (Its wait is long here, so
	// however late the release comes, the call is still waiting.)
	g.wait = time.Hour
	go a()
	c, err := g.enter(context.Background(), "ls", "/c")
	if err != nil {
		t.Fatalf("a slot freed while waiting: %v", err)
	}
	b()
	c()
	var none *gate
	done, err := none.enter(context.Background(), "ls", "/")
	if err != nil {
		t.Fatal(err)
	}
	done()
}
