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

// A failed Run's error carries its result, whatever error the plugin
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
		st := status.Convert(failedRun(c.err, resp))
		if st.Code() != c.code || st.Message() != c.msg {
			t.Errorf("%v: got %v %q, want %v %q", c.err, st.Code(), st.Message(), c.code, c.msg)
		}
		var got *api.PluginRunResponse
		for _, d := range st.Details() {
			if r, ok := d.(*api.PluginRunResponse); ok {
				got = r
			}
		}
		if got == nil || got.GetBytes() != 7 || len(got.GetFailed()) != 1 || string(got.GetOutput()) != `{"x":1}` {
			t.Errorf("%v: details %v, want the result", c.err, st.Details())
		}
	}
}
