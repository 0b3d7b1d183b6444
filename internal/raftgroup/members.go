package raftgroup

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Raft membership at run time. A group starts from its peer list (or one
// self-bootstrapped node); AddPeer grows it with a node started with
// raft.join, RemovePeer takes a member out — a dead one, so that a 3-node
// group that lost a machine can get back to three voters. Raft itself keeps
// the membership; the role's FSM keeps the rpc addresses of added members
// (Book), so any member can name or forward to whichever one leads.

// PeerChangeTimeout bounds one membership change (raft waits for the new
// configuration to commit) and a new member's catch-up.
const PeerChangeTimeout = 30 * time.Second

// Book is what membership changes need of a role.
type Book interface {
	// Probe asks the node at rpcAddr who it is and how much of the log
	// its state holds (its GetLeader answer).
	Probe(ctx context.Context, rpcAddr string) (*api.GetLeaderResponse, error)
	// Record stores a member's rpc address in the replicated state; with
	// remove, forgets it.
	Record(ctx context.Context, p Peer, remove bool) error
	// Recorded reports whether the replicated state holds id's address.
	Recorded(id string) bool
	// RPCAddr is a member's rpc address ("" when unknown).
	RPCAddr(id string) string
}

// Group is one raft node and the role's book of addresses.
type Group struct {
	Raft *raft.Raft
	Book Book
	Self Peer
	Role string // "job master", "FS master": for messages
	// AddHint names the command that starts a node to be added.
	AddHint string
	Log     *zap.Logger
	// Health says which members the leader cannot reach (nil: unknown).
	Health *Health
}

// SystemOnly refuses a membership change by anyone but the cluster's own
// identity (the cluster token, or the superuser's certificate).
func SystemOnly(ctx context.Context, op string) error {
	if id, ok := rpc.IdentityFrom(ctx); ok && !id.System {
		return status.Errorf(codes.PermissionDenied, "%s: only the cluster's own identity (the cluster token) may change the raft group; user %s may not", op, id.User)
	}
	return nil
}

// AddPeer adds the node p to the group. Call it on the leader. The node
// must answer as p.ID; it joins as a non-voter, is promoted once its state
// has caught up with the leader's, and is taken out again if it does not
// catch up in time. A retried call finishes what is left.
func (g *Group) AddPeer(ctx context.Context, p Peer) error {
	const op = "add peer"
	if err := SystemOnly(ctx, op); err != nil {
		return err
	}
	id := p.ID
	if id == "" {
		return status.Errorf(codes.InvalidArgument, "%s: empty id", op)
	}
	for _, a := range [...][2]string{{"raft address", p.RaftAddr}, {"rpc address", p.RPCAddr}} {
		if !client.IsHostPort(a[1]) {
			return status.Errorf(codes.InvalidArgument, "%s %s: %s %q is not host:port", op, id, a[0], a[1])
		}
	}
	cf := g.Raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return status.Errorf(codes.Unavailable, "%s %s: raft configuration: %v", op, id, err)
	}
	voter := false
	for _, sv := range cf.Configuration().Servers {
		switch {
		case string(sv.ID) == id && string(sv.Address) == p.RaftAddr:
			// Already a member (a retried call): finish what is left.
			voter = sv.Suffrage == raft.Voter
		case string(sv.ID) == id:
			return status.Errorf(codes.AlreadyExists, "%s %s: already a member at %s (remove it first)", op, id, sv.Address)
		case string(sv.Address) == p.RaftAddr:
			return status.Errorf(codes.AlreadyExists, "%s %s: raft address %s belongs to member %s", op, id, sv.Address, sv.ID)
		}
	}
	if voter {
		return nil
	}
	// A voter that cannot be reached would cost the group its quorum (one
	// node plus a dead one is a group of two that cannot elect), so the
	// new node must answer as itself first.
	if err := g.probe(ctx, p); err != nil {
		return err
	}
	// The addresses first, so that every member can name the new one as
	// soon as it may lead, and the new one (which knows no static peers)
	// every member.
	recs := []Peer{p}
	for _, sv := range cf.Configuration().Servers {
		if string(sv.ID) != id && !g.Book.Recorded(string(sv.ID)) {
			if a := g.Book.RPCAddr(string(sv.ID)); a != "" {
				recs = append(recs, Peer{ID: string(sv.ID), RaftAddr: string(sv.Address), RPCAddr: a})
			}
		}
	}
	for _, r := range recs {
		if err := g.Book.Record(ctx, r, false); err != nil {
			return err
		}
	}
	// As Consul's autopilot does: a non-voter until it holds the state,
	// so a slow catch-up never weakens the quorum; then a voter.
	if err := g.Raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(p.RaftAddr), 0, PeerChangeTimeout).Error(); err != nil {
		return status.Errorf(codes.Unavailable, "%s %s: %v", op, id, err)
	}
	if err := g.awaitCatchUp(ctx, p, g.Raft.AppliedIndex()); err != nil {
		// Leave no half-added member behind.
		_ = g.Raft.RemoveServer(raft.ServerID(id), 0, PeerChangeTimeout).Error()
		_ = g.Book.Record(context.WithoutCancel(ctx), Peer{ID: id}, true)
		return err
	}
	if err := g.Raft.AddVoter(raft.ServerID(id), raft.ServerAddress(p.RaftAddr), 0, PeerChangeTimeout).Error(); err != nil {
		return status.Errorf(codes.Unavailable, "%s %s: %v", op, id, err)
	}
	if g.Log != nil {
		g.Log.Info("raft peer added", zap.String("id", id), zap.String("raft", p.RaftAddr), zap.String("rpc", p.RPCAddr))
	}
	return nil
}

// RemovePeer takes member id out of the group. Call it on the leader.
// Removing the leader itself hands leadership over first and answers
// Unavailable, so that the caller retries against the new leader, which
// does the removal.
func (g *Group) RemovePeer(ctx context.Context, id string) error {
	const op = "remove peer"
	if err := SystemOnly(ctx, op); err != nil {
		return err
	}
	cf := g.Raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return status.Errorf(codes.Unavailable, "%s %s: raft configuration: %v", op, id, err)
	}
	found := false
	var ids []string
	for _, sv := range cf.Configuration().Servers {
		found = found || string(sv.ID) == id
		ids = append(ids, string(sv.ID))
	}
	switch {
	case !found:
		return status.Errorf(codes.NotFound, "%s %s: not a member (members: %v)", op, id, ids)
	case len(ids) == 1:
		return status.Errorf(codes.FailedPrecondition, "%s %s: it is the only member", op, id)
	case id == g.Self.ID:
		if err := g.Raft.LeadershipTransfer().Error(); err != nil {
			return status.Errorf(codes.Unavailable, "%s %s: handing leadership over first: %v", op, id, err)
		}
		return status.Errorf(codes.Unavailable, "%s %s: leadership handed over; retry against the new leader", op, id)
	}
	if err := g.Raft.RemoveServer(raft.ServerID(id), 0, PeerChangeTimeout).Error(); err != nil {
		return status.Errorf(codes.Unavailable, "%s %s: %v", op, id, err)
	}
	if err := g.Book.Record(ctx, Peer{ID: id}, true); err != nil {
		return err
	}
	if g.Log != nil {
		g.Log.Info("raft peer removed", zap.String("id", id))
	}
	return nil
}

// probe checks that the node at p.RPCAddr answers and is p.ID.
func (g *Group) probe(ctx context.Context, p Peer) error {
	info, err := g.info(ctx, p.RPCAddr)
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "add peer %s: cannot reach a %s at %s (%v); start it with --join first", p.ID, g.Role, p.RPCAddr, err)
	}
	if info.GetNodeId() != p.ID {
		return status.Errorf(codes.FailedPrecondition, "add peer %s: the %s at %s is %q, not %q (check its --node-id)", p.ID, g.Role, p.RPCAddr, info.GetNodeId(), p.ID)
	}
	return nil
}

func (g *Group) info(ctx context.Context, rpcAddr string) (*api.GetLeaderResponse, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return g.Book.Probe(pctx, rpcAddr)
}

// awaitCatchUp waits until the new member's state holds entry index.
func (g *Group) awaitCatchUp(ctx context.Context, p Peer, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, PeerChangeTimeout)
	defer cancel()
	var last uint64
	for {
		if info, err := g.info(ctx, p.RPCAddr); err == nil {
			if last = info.GetAppliedIndex(); last >= index {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "add peer %s: it holds the state up to entry %d of %d after %v; not added", p.ID, last, index, PeerChangeTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LeaderInfo is a member's GetLeader answer: who leads, the members, and
// how far this node's state is.
func (g *Group) LeaderInfo(applied uint64) *api.GetLeaderResponse {
	_, id := g.Raft.LeaderWithID()
	resp := &api.GetLeaderResponse{
		LeaderId: string(id), Term: g.Raft.CurrentTerm(), CommitIndex: g.Raft.CommitIndex(),
		NodeId: g.Self.ID, AppliedIndex: applied,
	}
	if id != "" {
		resp.LeaderRpcAddress = g.Book.RPCAddr(string(id))
	}
	if f := g.Raft.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			rs := &api.RaftServer{
				Id: string(sv.ID), RaftAddress: string(sv.Address), RpcAddress: g.Book.RPCAddr(string(sv.ID)),
				Suffrage: sv.Suffrage.String(), Leader: sv.ID == id,
			}
			if down, since := g.Health.Unreachable(string(sv.ID)); down && sv.ID != id {
				rs.Unreachable, rs.UnreachableSinceMs = true, since.UnixMilli()
			}
			resp.Servers = append(resp.Servers, rs)
		}
	}
	return resp
}

// WaitingToJoin logs how to add a node that started with raft.join and no
// raft state yet.
func (g *Group) WaitingToJoin(rpcAddr string) {
	if g.Log != nil {
		g.Log.Info("waiting to be added to a raft group: run '" + g.AddHint + " " + g.Self.ID + " " + g.Self.RaftAddr + " " + rpcAddr + "' against the group")
	}
}
