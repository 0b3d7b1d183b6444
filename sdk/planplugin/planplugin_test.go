package planplugin

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// A failed task's answer carries its result, whatever error the plugin
// returned: a plain one, a status, a status wrapped with %w (which once
// panicked the plugin process), a context's.
func TestFailedRunCarriesTheResult(t *testing.T) {
	resp := &api.PluginRunResponse{Bytes: 7, Failed: []*api.FailedPath{{Path: "/a", Error: "bad"}}, Output: []byte(`{"x":1}`)}
	for _, c := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{errors.New("plain"), codes.Unknown, "plain"},
		{status.Error(codes.NotFound, "/a: gone"), codes.NotFound, "/a: gone"},
		{fmt.Errorf("checksum /a: %w", status.Error(codes.PermissionDenied, "denied")), codes.PermissionDenied, "checksum /a: rpc error: code = PermissionDenied desc = denied"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "read: context deadline exceeded"},
	} {
		out := taskOut(3, resp, c.err)
		if codes.Code(out.GetCode()) != c.code || out.GetError() != c.msg || out.GetSeq() != 3 {
			t.Errorf("%v: got %v %q, want %v %q", c.err, codes.Code(out.GetCode()), out.GetError(), c.code, c.msg)
		}
		if got := out.GetResult(); got.GetBytes() != 7 || len(got.GetFailed()) != 1 || string(got.GetOutput()) != `{"x":1}` {
			t.Errorf("%v: result %v, want the task's", c.err, got)
		}
	}
}
