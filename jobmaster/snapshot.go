package jobmaster

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// A snapshot is a JobSnapshotHeader followed by records, each a type byte
// (api.JobSnapshotRecordType) and a length-delimited protobuf, ending with
// SNAPSHOT_END. Each kind of record is registered once, beside the state it
// holds (state.go, policy_fsm.go, peers.go), with how it is written from
// the state and read back into it.

const snapshotVersion = 1

// snapshotRecord is one registered kind of record.
type snapshotRecord struct {
	kind    api.JobSnapshotRecordType
	write   func(st *state, emit func(proto.Message) error) error
	newBody func() proto.Message
	restore func(st *state, m proto.Message)
}

var snapshotRecords = map[api.JobSnapshotRecordType]*snapshotRecord{}

// registerSnapshotRecord adds a kind of record: write emits one body M per
// item of the state (in a stable order), restore puts one back. It returns
// kind so it can stand in a var declaration.
func registerSnapshotRecord[M proto.Message](kind api.JobSnapshotRecordType, write func(st *state, emit func(M) error) error, restore func(st *state, m M)) api.JobSnapshotRecordType {
	if _, dup := snapshotRecords[kind]; dup {
		panic(fmt.Sprintf("jobmaster: snapshot record %s registered twice", kind))
	}
	var zero M
	snapshotRecords[kind] = &snapshotRecord{
		kind: kind,
		write: func(st *state, emit func(proto.Message) error) error {
			return write(st, func(m M) error { return emit(m) })
		},
		newBody: func() proto.Message { return zero.ProtoReflect().New().Interface() },
		restore: func(st *state, m proto.Message) { restore(st, m.(M)) },
	}
	return kind
}

// ascendEmit emits one record per item of t, in order.
func ascendEmit[T any, M proto.Message](t *btree.BTreeG[T], body func(T) M, emit func(M) error) error {
	var err error
	t.Ascend(func(v T) bool { err = emit(body(v)); return err == nil })
	return err
}

// Snapshot implements raft.FSM: an O(1) copy-on-write clone.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	c := f.st.clone()
	f.mu.Unlock()
	return &fsmSnapshot{st: c}, nil
}

type fsmSnapshot struct{ st *state }

// Persist writes the header and every registered kind of record, in the
// order of their type numbers, then the end record.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := protodelim.MarshalTo(bw, &api.JobSnapshotHeader{
		Version: snapshotVersion, NextJobId: s.st.nextJobID, NextWorkerId: s.st.nextWorkerID, Index: s.st.index,
		NextPipelineId: s.st.nextPipeline,
	}); err != nil {
		return err
	}
	for _, kind := range slices.Sorted(maps.Keys(snapshotRecords)) {
		emit := func(m proto.Message) error {
			if err := bw.WriteByte(byte(kind)); err != nil {
				return err
			}
			_, err := protodelim.MarshalTo(bw, m)
			return err
		}
		if err := snapshotRecords[kind].write(s.st, emit); err != nil {
			return err
		}
	}
	if err := bw.WriteByte(byte(api.JobSnapshotRecordType_SNAPSHOT_END)); err != nil {
		return err
	}
	if _, err := protodelim.MarshalTo(bw, &api.DeletePolicyCommand{}); err != nil { // an empty body
		return err
	}
	return bw.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the whole state.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("jobmaster: restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.restored.Add(1)
	f.publish(nil)
	return nil
}

func readSnapshot(r io.Reader) (*state, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	var h api.JobSnapshotHeader
	if err := opts.UnmarshalFrom(br, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.GetVersion() != snapshotVersion {
		return nil, fmt.Errorf("snapshot version %d, this job master reads %d", h.GetVersion(), snapshotVersion)
	}
	st := newState()
	st.nextJobID, st.nextWorkerID, st.index = h.GetNextJobId(), h.GetNextWorkerId(), h.GetIndex()
	st.nextPipeline = max(h.GetNextPipelineId(), 1) // 0: a snapshot from before pipelines
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("record type: %w (snapshot cut short)", err)
		}
		kind := api.JobSnapshotRecordType(b)
		if kind == api.JobSnapshotRecordType_SNAPSHOT_END {
			var m api.DeletePolicyCommand
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("end record: %w", err)
			}
			st.reindex()
			return st, nil
		}
		rec := snapshotRecords[kind]
		if rec == nil {
			return nil, fmt.Errorf("unknown record type %d", b)
		}
		m := rec.newBody()
		if err := opts.UnmarshalFrom(br, m); err != nil {
			return nil, fmt.Errorf("%s record: %w", kind, err)
		}
		rec.restore(st, m)
	}
}
