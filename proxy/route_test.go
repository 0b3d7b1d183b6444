package proxy

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/internal/paths"
)

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want route
		code codes.Code // of the error; OK for none
	}{
		{"/api/v1/paths///list-status", route{kind: routePaths, path: "/", action: "list-status"}, codes.OK},
		{"/api/v1/paths//list-status", route{kind: routePaths, path: "/", action: "list-status"}, codes.OK},
		{"/api/v1/paths//foo/exists", route{kind: routePaths, path: "/foo", action: "exists"}, codes.OK},
		{"/api/v1/paths/foo/bar/get-status", route{kind: routePaths, path: "/foo/bar", action: "get-status"}, codes.OK},
		{"/api/v1/paths//a//b//create-file", route{kind: routePaths, path: "/a/b", action: "create-file"}, codes.OK},
		{"/api/v1/paths//with%20space/x%2Fy/delete", route{kind: routePaths, path: "/with space/x/y", action: "delete"}, codes.OK},
		{"/api/v1/paths//get-status/get-status", route{kind: routePaths, path: "/get-status", action: "get-status"}, codes.OK},
		{"/api/v1/paths/alluxio://host:19998/data/open-file", route{kind: routePaths, path: "/data", action: "open-file"}, codes.OK},
		{"/api/v1/paths//../../etc/download-file", route{kind: routePaths, path: "/etc", action: "download-file"}, codes.OK},
		{"/api/v1/streams/12/read", route{kind: routeStreams, id: 12, action: "read", hasID: true}, codes.OK},
		{"/api/v1/jobs", route{kind: routeJobs}, codes.OK},
		{"/api/v1/jobs/", route{kind: routeJobs}, codes.OK},
		{"/api/v1/jobs/7", route{kind: routeJobs, id: 7, hasID: true}, codes.OK},
		{"/api/v1/jobs/7/cancel", route{kind: routeJobs, id: 7, hasID: true, action: "cancel"}, codes.OK},
		{"/api/v1/s3/bucket/key", route{kind: routeS3}, codes.OK},
		{"/api/v1/paths/exists", route{}, codes.NotFound},
		{"/api/v1/paths//foo/explode", route{}, codes.NotFound},
		{"/api/v1/paths//foo/", route{}, codes.NotFound},
		{"/api/v1/paths//a%ZZ/exists", route{}, codes.InvalidArgument},
		{"/api/v1/paths//a%00b/exists", route{}, codes.InvalidArgument},
		{"/api/v1/streams/x/read", route{}, codes.InvalidArgument},
		{"/api/v1/streams/1/seek", route{}, codes.NotFound},
		{"/api/v1/jobs/1/pause", route{}, codes.NotFound},
		{"/api/v2/paths///list-status", route{}, codes.NotFound},
		{"/", route{}, codes.NotFound},
	} {
		got, err := parseRoute(tc.raw)
		switch {
		case tc.code == codes.OK && err != nil:
			t.Errorf("parseRoute(%q): %v", tc.raw, err)
		case tc.code != codes.OK && (err == nil || err.code != tc.code):
			t.Errorf("parseRoute(%q) = %+v, %v; want code %v", tc.raw, got, err, tc.code)
		case tc.code == codes.OK && got != tc.want:
			t.Errorf("parseRoute(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
	}
}

// FuzzParseRoute: any raw path parses or fails with a clear code; a parsed
// path is always clean and absolute, and the action is a known one.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/api/v1/paths///list-status", "/api/v1/paths//foo/exists", "/api/v1/paths//a%2F..%2F..%2Fb/get-status",
		"/api/v1/streams/1/write", "/api/v1/jobs/3/cancel", "/api/v1/paths/%E2%82%AC/delete", "/api/v1/paths//%/exists",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := parseRoute(raw)
		if err != nil {
			if err.code != codes.NotFound && err.code != codes.InvalidArgument {
				t.Fatalf("parseRoute(%q): unexpected code %v", raw, err.code)
			}
			if err.msg == "" {
				t.Fatalf("parseRoute(%q): error without a message", raw)
			}
			return
		}
		switch r.kind {
		case routePaths:
			clean, cerr := paths.Clean(r.path)
			if cerr != nil || clean != r.path {
				t.Fatalf("parseRoute(%q): path %q is not clean (%v)", raw, r.path, cerr)
			}
			if !pathActions[r.action] {
				t.Fatalf("parseRoute(%q): action %q", raw, r.action)
			}
		case routeStreams:
			if !streamActions[r.action] || !r.hasID {
				t.Fatalf("parseRoute(%q) = %+v", raw, r)
			}
		case routeJobs:
			if r.action != "" && r.action != "cancel" {
				t.Fatalf("parseRoute(%q) = %+v", raw, r)
			}
		case routeS3:
			if !strings.HasPrefix(raw, "/api/v1/s3") {
				t.Fatalf("parseRoute(%q) = s3", raw)
			}
		default:
			t.Fatalf("parseRoute(%q): kind %d", raw, r.kind)
		}
	})
}

func TestOptions(t *testing.T) {
	o, err := parseOptions([]byte(`{"Recursive": "true", "writeType": "cache-through", "mode": {"ownerBits": "READ_WRITE", "groupBits": "read", "otherBits": "NONE"},
		"commonOptions": {"ttl": 5000, "ttlAction": "free"}, "blockSizeBytes": "1048576", "readType": "No_Cache"}`))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := o.boolean("recursive"); err != nil || !b {
		t.Errorf("recursive = %v, %v", b, err)
	}
	if wt, err := o.writeType(); err != nil || wt.String() != "CACHE_THROUGH" {
		t.Errorf("writeType = %v, %v", wt, err)
	}
	if m, set, err := o.mode(); err != nil || !set || m != 0o640 {
		t.Errorf("mode = %o, %v, %v", m, set, err)
	}
	if ttl, set, err := o.ttl(); err != nil || !set || ttl != 5000 {
		t.Errorf("ttl = %d, %v, %v", ttl, set, err)
	}
	if a, err := o.ttlAction(); err != nil || a != "FREE" {
		t.Errorf("ttlAction = %q, %v", a, err)
	}
	if n, set, err := o.integer("blockSizeBytes"); err != nil || !set || n != 1<<20 {
		t.Errorf("blockSizeBytes = %d, %v, %v", n, set, err)
	}
	if rt, err := o.readType(); err != nil || rt.String() != "NO_CACHE" {
		t.Errorf("readType = %v, %v", rt, err)
	}
	for _, body := range []string{"", "  ", "null", "{}"} {
		if o, err := parseOptions([]byte(body)); err != nil || len(o) != 0 {
			t.Errorf("parseOptions(%q) = %v, %v", body, o, err)
		}
	}
	for _, body := range []string{"[1]", "true", "{", `"x"`} {
		if _, err := parseOptions([]byte(body)); err == nil || err.code != codes.InvalidArgument {
			t.Errorf("parseOptions(%q): err %v, want INVALID_ARGUMENT", body, err)
		}
	}
	for _, tc := range []struct{ body, what string }{
		{`{"mode": 420}`, "420"}, {`{"mode": "0755"}`, "755"}, {`{"mode": "rwx"}`, "bad"}, {`{"mode": 70000}`, "bad"},
		{`{"mode": {"ownerBits": "ALL"}}`, "bad"},
	} {
		o, _ := parseOptions([]byte(tc.body))
		m, _, err := o.mode()
		switch tc.what {
		case "bad":
			if err == nil {
				t.Errorf("mode %s accepted as %o", tc.body, m)
			}
		case "420":
			if err != nil || m != 420 {
				t.Errorf("mode %s = %d, %v", tc.body, m, err)
			}
		case "755":
			if err != nil || m != 0o755 {
				t.Errorf("mode %s = %o, %v", tc.body, m, err)
			}
		}
	}
	o, _ = parseOptions([]byte(`{"ttl": -1}`))
	if ttl, set, err := o.ttl(); err != nil || !set || ttl != 0 {
		t.Errorf("ttl -1 = %d, %v, %v; want 0 (none)", ttl, set, err)
	}
	o, _ = parseOptions([]byte(`{"writeType": "SOMETIMES", "recursive": "perhaps"}`))
	if _, err := o.writeType(); err == nil || !strings.Contains(err.msg, "writeType") {
		t.Errorf("bad writeType: %v", err)
	}
	if _, err := o.boolean("recursive"); err == nil {
		t.Error("bad boolean accepted")
	}
}

func TestStatusNames(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Canceled: "CANCELED", codes.Unauthenticated: "UNAUTHENTICATED",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.Internal: "INTERNAL", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	} {
		if got := statusName(c); got != want {
			t.Errorf("statusName(%v) = %q, want %q", c, got, want)
		}
	}
}
