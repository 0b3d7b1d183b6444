package api

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Reasons a server attaches to an error (a google.rpc.ErrorInfo in the
// status details, domain ReasonDomain) when a client must tell it apart
// from other errors of the same gRPC code.
const (
	ReasonDomain = "alluvium"
	// ReasonStagedBytesExceeded: a user's parts of unfinished multipart
	// uploads would pass fsmaster.multipart.max-staged-bytes (the code is
	// ResourceExhausted, as for a full block worker).
	ReasonStagedBytesExceeded = "STAGED_BYTES_EXCEEDED"
	// ReasonCompletionsExpired: a WatchCompletions cursor is older than
	// the completions the FS master keeps (OutOfRange); the consumer must
	// rescan and resume from the oldest kept.
	ReasonCompletionsExpired = "COMPLETIONS_EXPIRED"
	// MetaCompletionsOldest is the ErrorInfo metadata key of a
	// COMPLETIONS_EXPIRED error holding the oldest cursor still served.
	MetaCompletionsOldest = "oldest"
)

// WithReason attaches reason (one of the Reason* above) and its metadata
// to err's gRPC status; an error that is not a status is returned as is.
// Servers build reasoned errors with it and clients read them with
// ReasonOf, so the two sides agree on the domain and the detail's shape.
func WithReason(err error, reason string, meta map[string]string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ReasonDomain, Metadata: meta})
	if derr != nil {
		return err
	}
	return d.Err()
}

// ReasonOf is the reason an alluvium server attached to err's status, and
// its metadata ("" and nil when none).
func ReasonOf(err error) (string, map[string]string) {
	st, ok := status.FromError(err)
	if !ok {
		return "", nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ReasonDomain {
			return info.GetReason(), info.GetMetadata()
		}
	}
	return "", nil
}
