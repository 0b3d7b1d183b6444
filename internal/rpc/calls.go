package rpc

import (
	"errors"
	"io"
)

// CallStream is the server side of a stream of calls: one request in, one
// answer out, in order (a gRPC bidi stream's Recv and Send).
type CallStream[Req, Resp any] interface {
	Recv() (*Req, error)
	Send(*Resp) error
}

// ServeCalls answers each request of stream with answer, in order, on the
// calling (handler) goroutine, until the peer closes its side (nil) or
// answer or the stream fails (that error ends the stream). It is the
// server half of client.StreamCalls: heartbeats and polls pay a stream's
// setup once instead of a call's every interval.
func ServeCalls[Req, Resp any](stream CallStream[Req, Resp], answer func(*Req) (*Resp, error)) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		resp, err := answer(req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
