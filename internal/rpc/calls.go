package rpc

import (
	"errors"
	"io"
)

// CallStream is the server side of a stream of calls: one request in, one
// answer out, in order (a gRPC bidi stream's RecvMsg and Send).
type CallStream[Req, Resp any] interface {
	RecvMsg(m any) error
	Send(*Resp) error
}

// ServeCalls answers each request of stream with answer, in order, on the
// calling (handler) goroutine, until the peer closes its side (nil) or
// answer or the stream fails (that error ends the stream). It is the
// server half of client.StreamCalls: heartbeats and polls pay a stream's
// setup once instead of a call's every interval.
//
// Every request is decoded into the same message (protobuf resets it
// first), so answer must not keep req past its return (what it holds,
// slices and sub-messages, is decoded afresh each time and may be kept):
// a fresh request a call was a quarter of the FS master's garbage per
// heartbeat at 10,000 workers, and so of its collections.
func ServeCalls[Req, Resp any](stream CallStream[Req, Resp], answer func(*Req) (*Resp, error)) error {
	req := new(Req)
	for {
		err := stream.RecvMsg(req)
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
