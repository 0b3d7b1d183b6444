package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyDeadline: a body trickled a byte at a time is cut once less than
// 64 KiB arrived within the timeout, though bytes keep coming; a body that
// arrives in time is read whole; and once a body is read, the deadline is
// gone: a handler that then works past it keeps its request alive.
func TestBodyDeadline(t *testing.T) {
	// The trickle is cut at a short timeout; the bodies that must pass get
	// a long one, so a busy machine's pauses cannot cut them.
	const timeout, generous = 300 * time.Millisecond, 2 * time.Second
	type result struct {
		n      int
		err    error
		ctxErr error
	}
	got := make(chan result, 1)
	serve := func(timeout time.Duration) *httptest.Server {
		return httptest.NewServer(bodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestTimeout)
			}
			if err == nil {
				// Past the deadline the body read would have had.
				time.Sleep(2 * timeout)
			}
			got <- result{len(b), err, r.Context().Err()}
			if err == nil {
				fmt.Fprintf(w, "%d", len(b))
			}
		}), timeout))
	}
	srv := serve(timeout)
	defer srv.Close()

	// A trickle: one byte every 50 ms of a 10,000-byte body.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	r := <-got
	if !errors.Is(r.err, errBodyTooSlow) || r.n >= 10000 {
		t.Fatalf("trickled body: read %d bytes, error %v; want it cut with errBodyTooSlow", r.n, r.err)
	}
	// The server does not wait for the rest of the body after the handler
	// (to discard it): it answers or closes while the trickle goes on.
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("after the cut the connection %v; want an answer or a close", err)
	}
	close(stop)

	// In time: 1 MiB at once, then a response after the timeout.
	srv = serve(generous)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/octet-stream", bytes.NewReader(make([]byte, 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r = <-got
	if r.err != nil || r.n != 1<<20 || r.ctxErr != nil || strings.TrimSpace(string(body)) != "1048576" {
		t.Fatalf("body in time: read %d, error %v, request context %v, response %q", r.n, r.err, r.ctxErr, body)
	}

	// A chunked body that keeps coming in 64 KiB pieces, each within the
	// timeout, is read whole however long it takes in all.
	pr, pw := io.Pipe()
	go func() {
		for range 6 {
			pw.Write(make([]byte, 64<<10))
			time.Sleep(generous / 4)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, srv.URL, pr)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r = <-got; r.err != nil || r.n != 6*64<<10 {
		t.Fatalf("a slow but steady body: read %d, error %v", r.n, r.err)
	}
}
