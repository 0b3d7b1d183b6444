package plans

import (
	"encoding/json"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestEventPath(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"/l/a/f"}, "/l/a/f"},
		{[]string{"/l/a/f", "/l/a/f"}, "/l/a/f"},
		{[]string{"/l/a/f", "/l/a/g"}, "/l/a"},
		{[]string{"/l/a/f", "/l/b/g", "/l/a/x/y"}, "/l"},
		{[]string{"/l/ab", "/l/a/b"}, "/l"},
		{[]string{"/x", "/y/z"}, "/"},
	} {
		if got := EventPath(c.in); got != c.want {
			t.Errorf("EventPath(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEventConfig(t *testing.T) {
	files := []EventFile{{Path: "/l/a/f", ID: 7}, {Path: "/l/a/g", ID: 8}}
	b, err := EventConfig("persist", []byte(`{"path":"/l","batchFiles":10}`), files)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if _, has := got["path"]; has || len(got["files"].([]any)) != 2 || got["batchFiles"] != float64(10) {
		t.Fatalf("persist config %s", b)
	}
	b, err = EventConfig("load", []byte(`{"path":"/l","replication":2}`), files)
	if err != nil || string(b) != `{"path":"/l/a","replication":2}` {
		t.Fatalf("load config %s %v", b, err)
	}
	for _, plan := range []string{"copy", "move", "sync", "nosuch"} {
		if err := CheckEventPlan(plan); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", plan, err)
		}
	}
	if _, err := EventConfig("persist", []byte(`{"path":"/l"}`), nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no files: %v", err)
	}
}
