package rpc

import (
	"errors"
	"io"
	"testing"
)

type fakeCalls struct {
	in      []int
	out     []int
	sendErr error
}

func (f *fakeCalls) RecvMsg(m any) error {
	if len(f.in) == 0 {
		return io.EOF
	}
	*m.(*int) = f.in[0]
	f.in = f.in[1:]
	return nil
}

func (f *fakeCalls) Send(v *int) error {
	if f.sendErr != nil {
		return f.sendErr
	}
	f.out = append(f.out, *v)
	return nil
}

func TestServeCallsAnswersInOrderUntilEOF(t *testing.T) {
	f := &fakeCalls{in: []int{1, 2, 3}}
	err := ServeCalls[int, int](f, func(v *int) (*int, error) { r := *v * 10; return &r, nil })
	if err != nil || len(f.out) != 3 || f.out[0] != 10 || f.out[2] != 30 {
		t.Fatalf("ServeCalls: %v, answers %v; want nil and [10 20 30]", err, f.out)
	}
}

func TestServeCallsEndsOnAnswerOrSendError(t *testing.T) {
	stop := errors.New("not the leader")
	f := &fakeCalls{in: []int{1, 2, 3}}
	err := ServeCalls[int, int](f, func(v *int) (*int, error) {
		if *v == 2 {
			return nil, stop
		}
		return v, nil
	})
	if !errors.Is(err, stop) || len(f.out) != 1 || len(f.in) != 1 {
		t.Fatalf("answer error: %v, answered %v, left %v; want it after one answer, one request unread", err, f.out, f.in)
	}
	broken := errors.New("broken pipe")
	f = &fakeCalls{in: []int{1, 2}, sendErr: broken}
	if err := ServeCalls[int, int](f, func(v *int) (*int, error) { return v, nil }); !errors.Is(err, broken) || len(f.in) != 1 {
		t.Fatalf("send error: %v, left %v; want it at the first answer", err, f.in)
	}
}
