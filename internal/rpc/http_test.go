package rpc

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The masters' JSON APIs answer a relayed error with the status its code
// means: a permission error is 403, a limit 429, not 500.
func TestWriteError(t *testing.T) {
	for _, c := range []struct {
		code codes.Code
		want int
	}{
		{codes.NotFound, 404}, {codes.InvalidArgument, 400}, {codes.PermissionDenied, 403},
		{codes.Unauthenticated, 401}, {codes.ResourceExhausted, 429}, {codes.AlreadyExists, 409},
		{codes.FailedPrecondition, 409}, {codes.Unavailable, 503}, {codes.Internal, 500},
	} {
		rec := httptest.NewRecorder()
		WriteError(rec, status.Errorf(c.code, "job 7: %s", c.code))
		if rec.Code != c.want {
			t.Errorf("%s: status %d, want %d", c.code, rec.Code, c.want)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: content type %q", c.code, ct)
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body %q: %v", c.code, rec.Body.String(), err)
		}
		if body["statusCode"] != c.code.String() || body["message"] != "job 7: "+c.code.String() {
			t.Errorf("%s: body %v", c.code, body)
		}
	}
	if HTTPStatus(codes.Canceled) != 499 || HTTPStatus(codes.OK) != http.StatusOK {
		t.Errorf("Canceled → %d, OK → %d", HTTPStatus(codes.Canceled), HTTPStatus(codes.OK))
	}
}
