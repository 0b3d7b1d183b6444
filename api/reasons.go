package api

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
