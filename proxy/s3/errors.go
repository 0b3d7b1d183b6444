package s3

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

// apiError is an S3 error: its code, HTTP status and message.
type apiError struct {
	Code    string
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(code string, status int, format string, a ...any) *apiError {
	return &apiError{Code: code, Status: status, Message: fmt.Sprintf(format, a...)}
}

// The S3 errors the gateway returns.
func errNoSuchBucket(b string) *apiError {
	return errorf("NoSuchBucket", http.StatusNotFound, "the bucket %q does not exist (a bucket is a top-level directory)", b)
}
func errNoSuchKey(k string) *apiError {
	return errorf("NoSuchKey", http.StatusNotFound, "the key %q does not exist", k)
}
func errNoSuchUpload(id string) *apiError {
	return errorf("NoSuchUpload", http.StatusNotFound, "the multipart upload %q does not exist (completed, aborted or expired)", id)
}

// errNoSuchBucketOrKey is the error of a write whose directory went away:
// NoSuchBucket (the usual cause: the bucket was deleted meanwhile).
func errNoSuchBucketOrKey(bucket string, err error) *apiError {
	return errorf("NoSuchBucket", http.StatusNotFound, "the bucket %q (or the directory the object was written in) was deleted while the object was written: %v", bucket, err)
}

func errNoSuchVersion(v string) *apiError {
	return errorf("NoSuchVersion", http.StatusNotFound, "the version %q does not exist: buckets are not versioned, every object's only version is \"null\"", v)
}
func errInvalidArgument(format string, a ...any) *apiError {
	return errorf("InvalidArgument", http.StatusBadRequest, format, a...)
}
func errNotImplemented(what string) *apiError {
	return errorf("NotImplemented", http.StatusNotImplemented, "%s is not implemented by the Alluvium S3 gateway", what)
}
func errMalformedXML(err error) *apiError {
	return errorf("MalformedXML", http.StatusBadRequest, "the XML you provided was not well-formed or did not validate: %v", err)
}

// toAPIError maps an error to an S3 error; notFound is the error to use for
// a NotFound from the file system (NoSuchKey or NoSuchBucket).
func toAPIError(err error, notFound *apiError) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var se *sigv4.Error
	if errors.As(err, &se) {
		return &apiError{Code: se.Code, Status: se.Status, Message: se.Message}
	}
	var e *sdk.Error
	if errors.As(err, &e) {
		switch e.Code {
		case codes.NotFound:
			if notFound != nil {
				return notFound
			}
			return errorf("NoSuchKey", http.StatusNotFound, "%s", e.Error())
		case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
			return errorf("OperationAborted", http.StatusConflict, "%s", e.Error())
		case codes.InvalidArgument, codes.OutOfRange:
			return errorf("InvalidArgument", http.StatusBadRequest, "%s", e.Error())
		case codes.PermissionDenied, codes.Unauthenticated:
			return errorf("AccessDenied", http.StatusForbidden, "%s", e.Error())
		case codes.ResourceExhausted:
			return errorf("SlowDown", http.StatusServiceUnavailable, "%s", e.Error())
		case codes.Unavailable, codes.DeadlineExceeded:
			return errorf("ServiceUnavailable", http.StatusServiceUnavailable, "%s", e.Error())
		case codes.Canceled:
			return errorf("RequestTimeout", http.StatusBadRequest, "%s", e.Error())
		}
		return errorf("InternalError", http.StatusInternalServerError, "%s", e.Error())
	}
	return errorf("InternalError", http.StatusInternalServerError, "%v", err)
}

// errorBody is S3's <Error> document.
type errorBody struct {
	XMLName    xml.Name `xml:"Error"`
	Code       string   `xml:"Code"`
	Message    string   `xml:"Message"`
	BucketName string   `xml:"BucketName,omitempty"`
	Key        string   `xml:"Key,omitempty"`
	Resource   string   `xml:"Resource,omitempty"`
	RequestID  string   `xml:"RequestId"`
	HostID     string   `xml:"HostId"`
}

const xmlNS = "http://s3.amazonaws.com/doc/2006-03-01/"

// writeXML writes v as an S3 XML document.
func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte("<Error><Code>InternalError</Code><Message>encoding the response failed</Message></Error>")
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}
