package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// Errors the SDK returns, for errors.Is. Each is wrapped in an *Error that
// names the operation and the path or id at fault.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnauthenticated    = errors.New("unauthenticated")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrUnavailable        = errors.New("unavailable")
	ErrCanceled           = errors.New("canceled")
	ErrDeadlineExceeded   = errors.New("deadline exceeded")
	ErrInternal           = errors.New("internal error")
)

// Error is a failed call: the operation, the path or id it was about, the
// gRPC code, and the server's message.
type Error struct {
	Op      string
	Path    string
	Code    codes.Code
	Message string
	// Reason tells apart errors of one code when the server says
	// (api.Reason*; "" when it does not).
	Reason string
	kind   error
}

func (e *Error) Error() string {
	// Servers often name the op and path already; say it once.
	if e.Path != "" && strings.HasPrefix(e.Message, e.Op+" "+e.Path+":") {
		return e.Message
	}
	if e.Path != "" {
		return fmt.Sprintf("%s %s: %s", e.Op, e.Path, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Op, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *Error) Is(target error) bool { return e.kind == target }

// Unwrap returns the kind sentinel.
func (e *Error) Unwrap() error { return e.kind }

func kindOf(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		return ErrAlreadyExists
	case codes.InvalidArgument, codes.OutOfRange:
		return ErrInvalidArgument
	case codes.FailedPrecondition, codes.Aborted:
		return ErrFailedPrecondition
	case codes.PermissionDenied:
		return ErrPermissionDenied
	case codes.Unauthenticated:
		return ErrUnauthenticated
	case codes.ResourceExhausted:
		return ErrResourceExhausted
	case codes.Unavailable:
		return ErrUnavailable
	case codes.Canceled:
		return ErrCanceled
	case codes.DeadlineExceeded:
		return ErrDeadlineExceeded
	default:
		return ErrInternal
	}
}

// wrapErr turns a gRPC or context error into an *Error.
func wrapErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Op: op, Path: path, Code: codes.Canceled, Message: err.Error(), kind: ErrCanceled}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Op: op, Path: path, Code: codes.DeadlineExceeded, Message: err.Error(), kind: ErrDeadlineExceeded}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Op: op, Path: path, Code: codes.Unknown, Message: err.Error(), kind: ErrInternal}
	}
	reason, _ := api.ReasonOf(err)
	return &Error{Op: op, Path: path, Code: st.Code(), Message: st.Message(), Reason: reason, kind: kindOf(st.Code())}
}

func retryable(err error) bool {
	return status.Code(err) == codes.Unavailable
}
