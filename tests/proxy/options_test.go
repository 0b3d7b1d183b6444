package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestRESTOptionsRoundTrip sends every create-file and set-attribute option
// an Alluxio client can set and reads each one back with get-status: an
// option the proxy accepts but drops (as ttlAction once was, turning a TTL
// meant to free the cache into one that deletes the file and its UFS copy)
// fails here.
func TestRESTOptionsRoundTrip(t *testing.T) {
	c := startLocal(t)
	ok(t, "create-directory", c.call(t, "/opts", "create-directory", map[string]any{"recursive": true}, ""), nil)

	status := func(path string) map[string]any {
		t.Helper()
		var st map[string]any
		ok(t, "get-status "+path, c.call(t, path, "get-status", nil, ""), &st)
		return st
	}
	want := func(path string, st map[string]any, field string, v any) {
		t.Helper()
		if n, isInt := v.(int); isInt {
			v = float64(n) // JSON numbers decode as float64
		}
		if st[field] != v {
			t.Errorf("%s: %s = %v, want %v", path, field, st[field], v)
		}
	}
	write := func(path string, opts map[string]any) {
		t.Helper()
		var id int64
		ok(t, "create-file "+path, c.call(t, path, "create-file", opts, ""), &id)
		ok(t, "write "+path, do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, id), strings.NewReader("twelve bytes"), "application/octet-stream"), nil)
		ok(t, "close "+path, do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/close", c.rest, id), nil, ""), nil)
	}

	// Every create-file option, top level.
	write("/opts/a", map[string]any{
		"recursive": false, "overwrite": false, "writeType": "MUST_CACHE", "blockSizeBytes": 4096,
		"pinned": true, "mode": map[string]string{"ownerBits": "READ_WRITE", "groupBits": "READ", "otherBits": "NONE"},
		"ttl": 3600000, "ttlAction": "FREE", "replicationMin": 1, "replicationMax": 2,
	})
	st := status("/opts/a")
	for f, v := range map[string]any{
		"blockSizeBytes": 4096, "pinned": true, "mode": 0o640, "ttl": 3600000, "ttlAction": "FREE",
		"replicationMin": 1, "replicationMax": 2, "persisted": false, "length": 12,
	} {
		want("/opts/a", st, f, v)
	}

	// ttl and ttlAction nested under commonOptions, as Alluxio 2.x's own
	// clients send them; recursive creates the parents.
	write("/opts/deep/b", map[string]any{
		"recursive": true, "writeType": "CACHE_THROUGH",
		"commonOptions": map[string]any{"ttl": 60000, "ttlAction": "FREE"},
	})
	st = status("/opts/deep/b")
	want("/opts/deep/b", st, "ttl", 60000)
	want("/opts/deep/b", st, "ttlAction", "FREE")
	want("/opts/deep/b", st, "persisted", true)

	// overwrite replaces the file and takes the new options.
	write("/opts/a", map[string]any{"overwrite": true, "writeType": "MUST_CACHE", "ttl": 7200000, "ttlAction": "DELETE"})
	st = status("/opts/a")
	want("/opts/a", st, "ttl", 7200000)
	want("/opts/a", st, "ttlAction", "DELETE")
	want("/opts/a", st, "pinned", false)

	// Every set-attribute option.
	ok(t, "set-attribute", c.call(t, "/opts/deep/b", "set-attribute", map[string]any{
		"pinned": true, "owner": "alice", "group": "staff", "mode": "0600",
		"ttl": 120000, "ttlAction": "DELETE", "replicationMin": 2, "replicationMax": 3,
	}, ""), nil)
	st = status("/opts/deep/b")
	for f, v := range map[string]any{
		"pinned": true, "owner": "alice", "group": "staff", "mode": 0o600, "ttl": 120000, "ttlAction": "DELETE",
		"replicationMin": 2, "replicationMax": 3,
	} {
		want("/opts/deep/b", st, f, v)
	}
	// ttlAction alone (under commonOptions) changes only the action.
	ok(t, "set-attribute ttlAction", c.call(t, "/opts/deep/b", "set-attribute", map[string]any{"commonOptions": map[string]any{"ttlAction": "FREE"}}, ""), nil)
	st = status("/opts/deep/b")
	want("/opts/deep/b", st, "ttlAction", "FREE")
	want("/opts/deep/b", st, "ttl", 120000)
	// recursive set-attribute reaches the children.
	ok(t, "set-attribute recursive", c.call(t, "/opts", "set-attribute", map[string]any{"recursive": true, "pinned": false}, ""), nil)
	want("/opts/deep/b", status("/opts/deep/b"), "pinned", false)

	// A bad action is refused and changes nothing.
	fails(t, "create-file bad ttlAction", c.call(t, "/opts/c", "create-file", map[string]any{"ttlAction": "EVAPORATE"}, ""), 400, "INVALID_ARGUMENT")
	fails(t, "set-attribute bad ttlAction", c.call(t, "/opts/deep/b", "set-attribute", map[string]any{"ttlAction": "EVAPORATE"}, ""), 400, "INVALID_ARGUMENT")
	want("/opts/deep/b", status("/opts/deep/b"), "ttlAction", "FREE")
	var exists bool
	ok(t, "exists /opts/c", c.call(t, "/opts/c", "exists", nil, ""), &exists)
	if exists {
		t.Error("a create-file refused for its ttlAction left /opts/c behind")
	}
}
