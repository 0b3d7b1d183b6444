package api

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestReasonRoundTrip(t *testing.T) {
	err := WithReason(status.Error(codes.OutOfRange, "cursor 3 is old"), ReasonCompletionsExpired, map[string]string{MetaCompletionsOldest: "7"})
	if status.Code(err) != codes.OutOfRange || status.Convert(err).Message() != "cursor 3 is old" {
		t.Fatalf("code or message lost: %v", err)
	}
	r, meta := ReasonOf(err)
	if r != ReasonCompletionsExpired || meta[MetaCompletionsOldest] != "7" {
		t.Fatalf("reason %q meta %v", r, meta)
	}
	// No reason, and errors that are not statuses, read as none and pass through.
	if r, meta := ReasonOf(status.Error(codes.OutOfRange, "x")); r != "" || meta != nil {
		t.Fatalf("a plain status has reason %q %v", r, meta)
	}
	plain := errors.New("plain")
	if WithReason(plain, ReasonStagedBytesExceeded, nil) != plain {
		t.Fatal("a non-status error must be returned as is")
	}
	if r, _ := ReasonOf(plain); r != "" {
		t.Fatalf("a non-status error has reason %q", r)
	}
}
