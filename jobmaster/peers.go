package jobmaster

import (
	"context"
	"maps"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/raftgroup"
)

// Raft membership at run time (`alluvium job raft add-peer|remove-peer`):
// the logic is raftgroup's; the FSM keeps the rpc addresses of added
// members (SetPeerCommand), so any member can forward client calls to one
// that leads.

// Added members' addresses are snapshot records (snapshot.go), by id.
var _ = registerSnapshotRecord(api.JobSnapshotRecordType_SNAPSHOT_PEER,
	func(st *state, emit func(*api.SetPeerCommand) error) error {
		for _, id := range slices.Sorted(maps.Keys(st.peers)) {
			if err := emit(st.peers[id]); err != nil {
				return err
			}
		}
		return nil
	},
	func(st *state, m *api.SetPeerCommand) { st.peers[m.GetId()] = m })

// Skippable: a peer's rpc address only lets a member forward calls to it.
var _ = registerCommand(api.JobCommandType_SET_PEER, (*tx).applySetPeer, skippableCommand)

func (x *tx) applySetPeer(c *api.SetPeerCommand) any {
	if c.GetRemove() {
		delete(x.s.peers, c.GetId())
		return nil
	}
	x.s.peers[c.GetId()] = &api.SetPeerCommand{Id: c.GetId(), RaftAddress: c.GetRaftAddress(), RpcAddress: c.GetRpcAddress()}
	return nil
}

// peerRPCAddr returns the rpc address the FSM recorded for an added peer.
func (f *FSM) peerRPCAddr(id string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if p := f.st.peers[id]; p != nil {
		return p.GetRpcAddress()
	}
	return ""
}

// book is the job master's raftgroup.Book: rpc addresses live in the FSM
// (SetPeerCommand).
type book struct{ s *Server }

func (b book) Probe(ctx context.Context, rpcAddr string) (*api.GetLeaderResponse, error) {
	c, err := b.s.fwd.client(rpcAddr)
	if err != nil {
		return nil, err
	}
	return c.GetLeader(ctx, &api.GetLeaderRequest{})
}

func (b book) Record(ctx context.Context, p raftgroup.Peer, remove bool) error {
	if err := b.s.applyErr(ctx, &api.SetPeerCommand{Id: p.ID, RaftAddress: p.RaftAddr, RpcAddress: p.RPCAddr, Remove: remove}); err != nil {
		op := "add peer "
		if remove {
			op = "remove peer "
		}
		return grpcErr(op+p.ID, err)
	}
	return nil
}

func (b book) Recorded(id string) bool  { return b.s.fsm.peerRPCAddr(id) != "" }
func (b book) RPCAddr(id string) string { return b.s.rpcAddrOf(raft.ServerID(id)) }

// group is this node's raftgroup view (membership changes, GetLeader).
func (s *Server) group() *raftgroup.Group {
	return &raftgroup.Group{Raft: s.raft, Book: book{s}, Self: s.self, Role: "job master", AddHint: "alluvium job raft add-peer", Log: s.log, Health: s.health}
}

func (r *rpcServer) AddPeer(ctx context.Context, req *api.AddPeerRequest) (*api.AddPeerResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "add peer", req, api.JobMasterClient.AddPeer)
	if answered {
		return ans, err
	}
	if err := s.group().AddPeer(ctx, raftgroup.Peer{ID: req.GetId(), RaftAddr: req.GetRaftAddress(), RPCAddr: req.GetRpcAddress()}); err != nil {
		return nil, err
	}
	return &api.AddPeerResponse{}, nil
}

func (r *rpcServer) RemovePeer(ctx context.Context, req *api.RemovePeerRequest) (*api.RemovePeerResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "remove peer", req, api.JobMasterClient.RemovePeer)
	if answered {
		return ans, err
	}
	if err := s.group().RemovePeer(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &api.RemovePeerResponse{}, nil
}
