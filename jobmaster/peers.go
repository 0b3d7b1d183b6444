package jobmaster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Raft membership at run time. A group starts from jobmaster.raft.peers
// (or one self-bootstrapped node); `alluvium job raft add-peer` grows it
// with a node started with jobmaster.raft.join, and `remove-peer` takes a
// member out — a dead one, so that a 3-node group that lost a machine can
// get back to three voters. Raft itself keeps the membership; the FSM keeps
// the rpc addresses of added members (SetPeerCommand), so any member can
// forward client calls to one that leads.

// peerChangeTimeout bounds one membership change (raft waits for the new
// configuration to commit).
const peerChangeTimeout = 30 * time.Second

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

// systemOnly refuses a membership change by anyone but the cluster's own
// identity (the cluster token, or the superuser's certificate).
func systemOnly(ctx context.Context, op string) error {
	if id, ok := rpc.IdentityFrom(ctx); ok && !id.System {
		return status.Errorf(codes.PermissionDenied, "%s: only the cluster's own identity (the cluster token) may change the raft group; user %s may not", op, id.User)
	}
	return nil
}

func (r *rpcServer) AddPeer(ctx context.Context, req *api.AddPeerRequest) (*api.AddPeerResponse, error) {
	const op = "add peer"
	s := r.s
	_, fwd, fctx, err := s.route(ctx, op)
	if err != nil {
		return nil, err
	}
	if fwd != nil {
		return fwd.AddPeer(fctx, req)
	}
	if err := systemOnly(ctx, op); err != nil {
		return nil, err
	}
	id := req.GetId()
	if id == "" {
		return nil, status.Errorf(codes.InvalidArgument, "%s: empty id", op)
	}
	for _, a := range [...][2]string{{"raft address", req.GetRaftAddress()}, {"rpc address", req.GetRpcAddress()}} {
		if !IsHostPort(a[1]) {
			return nil, status.Errorf(codes.InvalidArgument, "%s %s: %s %q is not host:port", op, id, a[0], a[1])
		}
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s %s: raft configuration: %v", op, id, err)
	}
	voter := false
	for _, sv := range cf.Configuration().Servers {
		switch {
		case string(sv.ID) == id && string(sv.Address) == req.GetRaftAddress():
			// Already a member (a retried call): finish what is left.
			voter = sv.Suffrage == raft.Voter
		case string(sv.ID) == id:
			return nil, status.Errorf(codes.AlreadyExists, "%s %s: already a member at %s (remove it first)", op, id, sv.Address)
		case string(sv.Address) == req.GetRaftAddress():
			return nil, status.Errorf(codes.AlreadyExists, "%s %s: raft address %s belongs to member %s", op, id, sv.Address, sv.ID)
		}
	}
	if voter {
		return &api.AddPeerResponse{}, nil
	}
	// A voter that cannot be reached would cost the group its quorum (one
	// node plus a dead one is a group of two that cannot elect), so the
	// new node must answer as itself first.
	if err := s.probePeer(ctx, id, req.GetRpcAddress()); err != nil {
		return nil, err
	}
	// The addresses first, so that every member can forward to the new
	// one as soon as it may lead, and the new one (which knows no static
	// peers) to every member.
	recs := []*api.SetPeerCommand{{Id: id, RaftAddress: req.GetRaftAddress(), RpcAddress: req.GetRpcAddress()}}
	for _, sv := range cf.Configuration().Servers {
		if string(sv.ID) != id && s.fsm.peerRPCAddr(string(sv.ID)) == "" {
			if a := s.rpcAddrOf(sv.ID); a != "" {
				recs = append(recs, &api.SetPeerCommand{Id: string(sv.ID), RaftAddress: string(sv.Address), RpcAddress: a})
			}
		}
	}
	for _, c := range recs {
		if err := s.applyErr(ctx, c); err != nil {
			return nil, grpcErr(op+" "+id, err)
		}
	}
	// As Consul's autopilot does: a non-voter until it holds the state,
	// so a slow catch-up never weakens the quorum; then a voter.
	if err := s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(req.GetRaftAddress()), 0, peerChangeTimeout).Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s %s: %v", op, id, err)
	}
	if err := s.awaitCatchUp(ctx, id, req.GetRpcAddress(), s.raft.AppliedIndex()); err != nil {
		// Leave no half-added member behind.
		_ = s.raft.RemoveServer(raft.ServerID(id), 0, peerChangeTimeout).Error()
		_ = s.applyErr(context.WithoutCancel(ctx), &api.SetPeerCommand{Id: id, Remove: true})
		return nil, err
	}
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(req.GetRaftAddress()), 0, peerChangeTimeout).Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s %s: %v", op, id, err)
	}
	s.log.Info("raft peer added", zap.String("id", id), zap.String("raft", req.GetRaftAddress()), zap.String("rpc", req.GetRpcAddress()))
	return &api.AddPeerResponse{}, nil
}

func (r *rpcServer) RemovePeer(ctx context.Context, req *api.RemovePeerRequest) (*api.RemovePeerResponse, error) {
	const op = "remove peer"
	s := r.s
	_, fwd, fctx, err := s.route(ctx, op)
	if err != nil {
		return nil, err
	}
	if fwd != nil {
		return fwd.RemovePeer(fctx, req)
	}
	if err := systemOnly(ctx, op); err != nil {
		return nil, err
	}
	id := req.GetId()
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s %s: raft configuration: %v", op, id, err)
	}
	found := false
	var ids []string
	for _, sv := range cf.Configuration().Servers {
		found = found || string(sv.ID) == id
		ids = append(ids, string(sv.ID))
	}
	switch {
	case !found:
		return nil, status.Errorf(codes.NotFound, "%s %s: not a member (members: %v)", op, id, ids)
	case len(ids) == 1:
		return nil, status.Errorf(codes.FailedPrecondition, "%s %s: it is the only member", op, id)
	case id == s.self.ID:
		// The leader hands leadership over and the new leader removes it.
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			return nil, status.Errorf(codes.Unavailable, "%s %s: handing leadership over first: %v", op, id, err)
		}
		return nil, status.Errorf(codes.Unavailable, "%s %s: leadership handed over; retry against the new leader", op, id)
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, peerChangeTimeout).Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%s %s: %v", op, id, err)
	}
	if err := s.applyErr(ctx, &api.SetPeerCommand{Id: id, Remove: true}); err != nil {
		return nil, grpcErr(op+" "+id, err)
	}
	s.log.Info("raft peer removed", zap.String("id", id))
	return &api.RemovePeerResponse{}, nil
}

// probePeer checks that the job master at rpcAddr answers and is id.
func (s *Server) probePeer(ctx context.Context, id, rpcAddr string) error {
	info, err := s.peerInfo(ctx, rpcAddr)
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "add peer %s: cannot reach a job master at %s (%v); start it with --join first", id, rpcAddr, err)
	}
	if info.GetNodeId() != id {
		return status.Errorf(codes.FailedPrecondition, "add peer %s: the job master at %s is %q, not %q (check its --node-id)", id, rpcAddr, info.GetNodeId(), id)
	}
	return nil
}

func (s *Server) peerInfo(ctx context.Context, rpcAddr string) (*api.GetLeaderResponse, error) {
	c, err := s.fwd.client(rpcAddr)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.GetLeader(pctx, &api.GetLeaderRequest{})
}

// awaitCatchUp waits until the new member's state holds entry index.
func (s *Server) awaitCatchUp(ctx context.Context, id, rpcAddr string, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, peerChangeTimeout)
	defer cancel()
	var last uint64
	for {
		if info, err := s.peerInfo(ctx, rpcAddr); err == nil {
			if last = info.GetAppliedIndex(); last >= index {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "add peer %s: it holds the state up to entry %d of %d after %v; not added", id, last, index, peerChangeTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitingToJoin logs how to add a node that started with
// jobmaster.raft.join and no raft state yet.
func (s *Server) waitingToJoin() {
	s.log.Info(fmt.Sprintf("waiting to be added to a raft group: run 'alluvium job raft add-peer %s %s %s' against the group", s.self.ID, s.self.RaftAddr, s.rpcAddr))
}
