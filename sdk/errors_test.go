package sdk

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// A reason the server attached travels in the Error, so a caller tells a
// user's staged-bytes bound from a full worker (both ResourceExhausted).
func TestErrorCarriesTheServersReason(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "too much staged").WithDetails(&errdetails.ErrorInfo{Reason: api.ReasonStagedBytesExceeded, Domain: api.ReasonDomain})
	if err != nil {
		t.Fatal(err)
	}
	var se *Error
	if !errors.As(wrapErr("write part", "/b/k", st.Err()), &se) || se.Reason != api.ReasonStagedBytesExceeded || !errors.Is(se, ErrResourceExhausted) {
		t.Fatalf("with a reason: %#v", se)
	}
	if !errors.As(wrapErr("write part", "/b/k", status.Error(codes.ResourceExhausted, "tier MEM is full")), &se) || se.Reason != "" {
		t.Fatalf("without one: %#v", se)
	}
	other, _ := status.New(codes.ResourceExhausted, "x").WithDetails(&errdetails.ErrorInfo{Reason: api.ReasonStagedBytesExceeded, Domain: "example.com"})
	if !errors.As(wrapErr("write part", "/b/k", other.Err()), &se) || se.Reason != "" {
		t.Fatalf("another domain's reason taken: %#v", se)
	}
}
