package jobmaster

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// A raft log entry is one type byte followed by the protobuf body of that
// type (api/jobfsm.proto). The high bit of the type byte marks a command an
// older job master may skip; any other unknown type stops the FSM, because
// applying part of the log would let the replicas drift apart.
const ignorableFlag = 0x80

// errUnknownCommand is a type byte this build does not know.
var errUnknownCommand = errors.New("unknown command type")

// newCommandBody returns an empty message for a command type.
func newCommandBody(t api.JobCommandType) proto.Message {
	switch t {
	case api.JobCommandType_SUBMIT_JOB:
		return &api.SubmitJobCommand{}
	case api.JobCommandType_PLAN_TASKS:
		return &api.PlanTasksCommand{}
	case api.JobCommandType_UPDATE_TASKS:
		return &api.UpdateTasksCommand{}
	case api.JobCommandType_CANCEL_JOB:
		return &api.CancelJobCommand{}
	case api.JobCommandType_FINISH_JOB:
		return &api.FinishJobCommand{}
	case api.JobCommandType_NEXT_ROUND:
		return &api.NextRoundCommand{}
	case api.JobCommandType_REGISTER_WORKER:
		return &api.RegisterWorkerCommand{}
	case api.JobCommandType_WORKER_LOST:
		return &api.WorkerLostCommand{}
	case api.JobCommandType_DELETE_JOBS:
		return &api.DeleteJobsCommand{}
	case api.JobCommandType_PUT_POLICY:
		return &api.PutPolicyCommand{}
	case api.JobCommandType_DELETE_POLICY:
		return &api.DeletePolicyCommand{}
	case api.JobCommandType_POLICY_LAUNCH:
		return &api.PolicyLaunchCommand{}
	case api.JobCommandType_SET_POLICY_ENABLED:
		return &api.SetPolicyEnabledCommand{}
	case api.JobCommandType_SET_PEER:
		return &api.SetPeerCommand{}
	}
	return nil
}

// commandType returns the type of a command body.
func commandType(m proto.Message) (api.JobCommandType, error) {
	switch m.(type) {
	case *api.SubmitJobCommand:
		return api.JobCommandType_SUBMIT_JOB, nil
	case *api.PlanTasksCommand:
		return api.JobCommandType_PLAN_TASKS, nil
	case *api.UpdateTasksCommand:
		return api.JobCommandType_UPDATE_TASKS, nil
	case *api.CancelJobCommand:
		return api.JobCommandType_CANCEL_JOB, nil
	case *api.FinishJobCommand:
		return api.JobCommandType_FINISH_JOB, nil
	case *api.NextRoundCommand:
		return api.JobCommandType_NEXT_ROUND, nil
	case *api.RegisterWorkerCommand:
		return api.JobCommandType_REGISTER_WORKER, nil
	case *api.WorkerLostCommand:
		return api.JobCommandType_WORKER_LOST, nil
	case *api.DeleteJobsCommand:
		return api.JobCommandType_DELETE_JOBS, nil
	case *api.PutPolicyCommand:
		return api.JobCommandType_PUT_POLICY, nil
	case *api.DeletePolicyCommand:
		return api.JobCommandType_DELETE_POLICY, nil
	case *api.PolicyLaunchCommand:
		return api.JobCommandType_POLICY_LAUNCH, nil
	case *api.SetPolicyEnabledCommand:
		return api.JobCommandType_SET_POLICY_ENABLED, nil
	case *api.SetPeerCommand:
		return api.JobCommandType_SET_PEER, nil
	}
	return 0, fmt.Errorf("%T is not a job master command", m)
}

// skippable reports whether an older job master may skip commands of type
// t without its state drifting from the others' in a way that matters.
func skippable(t api.JobCommandType) bool {
	// A peer's rpc address only lets a member forward calls to it.
	return t == api.JobCommandType_SET_PEER
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
	m = newCommandBody(t)
	if m == nil {
		return t, nil, ignorable, fmt.Errorf("%w %d", errUnknownCommand, b)
	}
	if err := proto.Unmarshal(buf[1:], m); err != nil {
		return t, nil, ignorable, fmt.Errorf("decode %s: %w", t, err)
	}
	return t, m, ignorable, nil
}
