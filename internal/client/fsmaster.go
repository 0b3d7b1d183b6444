package client

import (
	"github.com/alluvium/alluvium/api"
)

// FSMaster is a client of the FS masters: calls go to the one that leads,
// found with GetLeader and followed when it moves. The generated
// FileSystemMaster and BlockMaster clients run over it.
type FSMaster struct {
	*group
	fs api.FileSystemMasterClient
	bm api.BlockMasterClient
	ej api.EmbeddedJournalClient
}

// NewFSMaster returns a client of the FS masters at addrs (host:port each;
// an element may itself be a comma-separated list, as client.master is).
// Nothing is dialled before the first call.
func NewFSMaster(addrs []string, o Options) (*FSMaster, error) {
	g, err := newGroup(addrs, o, policy{
		what: "FS master", lookup: api.FileSystemMaster_GetLeader_FullMethodName,
		idempotent: fsIdempotent, retries: o.Retries,
	})
	if err != nil {
		return nil, err
	}
	return &FSMaster{group: g, fs: api.NewFileSystemMasterClient(g), bm: api.NewBlockMasterClient(g), ej: api.NewEmbeddedJournalClient(g)}, nil
}

// FS is the namespace service of the leader.
func (m *FSMaster) FS() api.FileSystemMasterClient { return m.fs }

// BlockMaster is the worker and block-location service of the leader.
func (m *FSMaster) BlockMaster() api.BlockMasterClient { return m.bm }

// Journal is the embedded journal's group service of the leader
// (membership changes).
func (m *FSMaster) Journal() api.EmbeddedJournalClient { return m.ej }

// Member returns clients of one member at addr alone: no leader
// discovery, no retries (a report asks each member about itself).
func (m *FSMaster) Member(addr string) (api.FileSystemMasterClient, api.EmbeddedJournalClient, error) {
	return m.pool.FSMasterMember(addr)
}

// fsReads are the FS-master calls that change nothing: sending one twice
// is harmless. Others are resent after a connection failure only when the
// caller marks the call (Idempotent).
var fsReads = map[string]bool{
	api.FileSystemMaster_GetStatus_FullMethodName:        true,
	api.FileSystemMaster_GetStatuses_FullMethodName:      true,
	api.FileSystemMaster_ListStatus_FullMethodName:       true,
	api.FileSystemMaster_GetMountTable_FullMethodName:    true,
	api.FileSystemMaster_GetMasterInfo_FullMethodName:    true,
	api.FileSystemMaster_CheckAccess_FullMethodName:      true,
	api.FileSystemMaster_GetLeader_FullMethodName:        true,
	api.FileSystemMaster_WatchCompletions_FullMethodName: true,
	api.BlockMaster_GetWorkerInfoList_FullMethodName:     true,
	api.BlockMaster_GetBlockInfo_FullMethodName:          true,
	api.BlockMaster_AuthorizeBlockAccess_FullMethodName:  true,
}

func fsIdempotent(method string) bool { return fsReads[method] }
