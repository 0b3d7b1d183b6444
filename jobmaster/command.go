package jobmaster

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/alluvium/alluvium/api"
)

// A raft log entry is one type byte followed by the protobuf body of that
// type (api/jobfsm.proto). The high bit of the type byte marks a command an
// older job master may skip; any other unknown type stops the FSM, because
// applying part of the log would let the replicas drift apart.
const ignorableFlag = 0x80

// errUnknownCommand is a type byte this build does not know.
var errUnknownCommand = errors.New("unknown command type")

// command is one registered command type: how to make its body and apply
// it, and whether an older job master may skip it.
type command struct {
	typ       api.JobCommandType
	newBody   func() proto.Message
	apply     func(x *tx, m proto.Message) any
	skippable bool
}

// The command table, as Consul's registerCommand: each command type is
// registered once, beside its apply function (fsm.go, policy_fsm.go,
// peers.go). Decoding, dispatch and the type of a body all read it.
var (
	commands     = map[api.JobCommandType]*command{}
	commandOfMsg = map[protoreflect.FullName]api.JobCommandType{}
)

// commandOption tunes registerCommand.
type commandOption func(*command)

// skippableCommand marks a command an older job master may skip without
// its state drifting from the others' in a way that matters (it carries
// the ignorable bit in the log).
func skippableCommand(c *command) { c.skippable = true }

// registerCommand adds command type t with body M and its apply function.
// It panics on a type or body registered twice (a programming error caught
// at start). It returns t so it can stand in a var declaration beside the
// apply function.
func registerCommand[M proto.Message](t api.JobCommandType, apply func(*tx, M) any, opts ...commandOption) api.JobCommandType {
	var zero M
	desc := zero.ProtoReflect().Descriptor()
	if _, dup := commands[t]; dup {
		panic(fmt.Sprintf("jobmaster: command %s registered twice", t))
	}
	if prev, dup := commandOfMsg[desc.FullName()]; dup {
		panic(fmt.Sprintf("jobmaster: %s is the body of both %s and %s", desc.FullName(), prev, t))
	}
	c := &command{
		typ:     t,
		newBody: func() proto.Message { return zero.ProtoReflect().New().Interface() },
		apply:   func(x *tx, m proto.Message) any { return apply(x, m.(M)) },
	}
	for _, o := range opts {
		o(c)
	}
	commands[t] = c
	commandOfMsg[desc.FullName()] = t
	return t
}

// commandType returns the type of a command body.
func commandType(m proto.Message) (api.JobCommandType, error) {
	t, ok := commandOfMsg[m.ProtoReflect().Descriptor().FullName()]
	if !ok {
		return 0, fmt.Errorf("%T is not a job master command", m)
	}
	return t, nil
}

// skippable reports whether an older job master may skip commands of type t.
func skippable(t api.JobCommandType) bool {
	c := commands[t]
	return c != nil && c.skippable
}

// encodeCommand frames a command body for the raft log.
func encodeCommand(m proto.Message) ([]byte, error) {
	t, err := commandType(m)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1, 1+proto.Size(m))
	buf[0] = byte(t)
	if skippable(t) {
		buf[0] |= ignorableFlag
	}
	return proto.MarshalOptions{}.MarshalAppend(buf, m)
}

// decodeCommand parses a raft log entry. An unknown type returns
// errUnknownCommand with ignorable set when the entry may be skipped.
func decodeCommand(buf []byte) (t api.JobCommandType, m proto.Message, ignorable bool, err error) {
	if len(buf) == 0 {
		return 0, nil, false, errors.New("empty command")
	}
	b := buf[0]
	ignorable = b&ignorableFlag != 0
	t = api.JobCommandType(b &^ ignorableFlag)
	c := commands[t]
	if c == nil {
		return t, nil, ignorable, fmt.Errorf("%w %d", errUnknownCommand, b)
	}
	m = c.newBody()
	if err := proto.Unmarshal(buf[1:], m); err != nil {
		return t, nil, ignorable, fmt.Errorf("decode %s: %w", t, err)
	}
	return t, m, ignorable, nil
}

// dispatch applies a decoded command through its registered function.
func (x *tx) dispatch(t api.JobCommandType, m proto.Message) any {
	c := commands[t]
	if c == nil {
		return fmt.Errorf("%w %d", errUnknownCommand, t)
	}
	return c.apply(x, m)
}
