package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// bodyChunk is how much of a request body must arrive within each
// proxy.body-read-timeout.
const bodyChunk = 64 << 10

// bodyDeadline bounds how slowly a request body may arrive: every next
// bodyChunk bytes (or the rest of the body) must come within timeout, else
// the read fails and the connection is cut. A read deadline that only
// moved on every byte would let a client trickling one byte every few
// seconds hold the connection for ever; one for the whole body would cut
// a large upload on a slow but honest link.
func bodyDeadline(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		b := &deadlineBody{rc: rc, body: r.Body, timeout: timeout}
		if b.extend() != nil {
			// The connection cannot take deadlines (an http.Handler test
			// double): serve without.
			next.ServeHTTP(w, r)
			return
		}
		// The deadline stays when the handler returns without reading the
		// body to its end: the server then reads the rest to discard it,
		// and that must be cut as well.
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

// deadlineBody moves the connection's read deadline on as the body
// arrives, and clears it once the body is read to its end: the server's
// background read after the body must not hit a stale deadline (it would
// cancel the request's context while a long response is written).
type deadlineBody struct {
	rc      *http.ResponseController
	body    io.ReadCloser
	timeout time.Duration
	since   int64 // bytes since the deadline was last moved
	done    bool
}

func (b *deadlineBody) extend() error { return b.rc.SetReadDeadline(time.Now().Add(b.timeout)) }

func (b *deadlineBody) clear() {
	if !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// errBodyTooSlow is what a handler reading a body that stalled sees.
var errBodyTooSlow = errors.New("request body too slow")

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.since += int64(n)
	if b.since >= bodyChunk && err == nil {
		b.since = 0
		_ = b.extend()
	}
	switch {
	case err == io.EOF:
		b.clear()
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: less than %d KiB arrived within proxy.body-read-timeout (%s): %v", errBodyTooSlow, bodyChunk>>10, b.timeout, err)
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.body.Close() }
