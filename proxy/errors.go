package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/sdk"
)

// restError is a failed REST call: Alluxio's error body
// {"statusCode": "NOT_FOUND", "message": "..."} with an HTTP status that
// fits the code (Alluxio itself always answers 500; clients only check for
// "not 200").
type restError struct {
	code codes.Code
	msg  string
}

func (e *restError) Error() string { return e.msg }

func restErrorf(c codes.Code, format string, a ...any) *restError {
	return &restError{code: c, msg: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) *restError { return restErrorf(codes.NotFound, format, a...) }

// toRESTError turns any error into a restError, keeping the gRPC code of an
// *sdk.Error.
func toRESTError(err error) *restError {
	var re *restError
	if errors.As(err, &re) {
		return re
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return &restError{code: se.Code, msg: se.Error()}
	}
	var je *sdk.JobError
	if errors.As(err, &je) {
		return &restError{code: codes.FailedPrecondition, msg: je.Error()}
	}
	if errors.Is(err, errBodyTooSlow) {
		return &restError{code: codes.DeadlineExceeded, msg: err.Error()}
	}
	return &restError{code: codes.Internal, msg: err.Error()}
}

// statusName is the Alluxio (and gRPC) name of a code: NOT_FOUND,
// ALREADY_EXISTS, ...
func statusName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELED"
	}
	s := c.String() // "NotFound"
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// contentJSON is the exact content type Alluxio's clients compare against.
const contentJSON = "application/json"

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"statusCode":"INTERNAL","message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeVoid answers a call that returns nothing, as Alluxio does: 200
// with an empty body.
func writeVoid(w http.ResponseWriter) {
	w.Header().Set("Content-Type", contentJSON)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// retryAfter is the Retry-After (seconds) of a 429: limits free up as
// other calls end, so a short wait; clients back off further on repeats.
const retryAfter = "1"

func writeError(w http.ResponseWriter, err error) *restError {
	re := toRESTError(err)
	st := rpc.HTTPStatus(re.code)
	switch {
	case errors.Is(err, errBodyTooSlow):
		st = http.StatusRequestTimeout
	case re.code == codes.ResourceExhausted && strings.Contains(re.msg, "larger than max"):
		// gRPC's own ResourceExhausted for an oversize message: retrying
		// the same request cannot help.
		st = http.StatusRequestEntityTooLarge
	case st == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, st, map[string]string{"statusCode": statusName(re.code), "message": re.msg})
	return re
}
