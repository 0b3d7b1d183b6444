package sdk

import (
	"context"
	"sync"
	"time"

	"github.com/alluvium/alluvium/api"
)

// Master is one FS master as it reports itself: with an embedded journal
// (fsmaster.journal.type: embedded) one member of the group, with a local
// journal the only master.
type Master struct {
	ID          string `json:"id"`
	RaftAddress string `json:"raftAddress,omitempty"`
	RPCAddress  string `json:"rpcAddress"`
	// Role is LEADER, FOLLOWER, NONVOTER or CANDIDATE; UNREACHABLE when
	// it did not answer.
	Role string `json:"role"`
	// AppliedIndex is the last raft entry its state holds (the journal
	// sequence with a local journal); Lag is how many entries it is
	// behind the leader's commit index.
	AppliedIndex uint64 `json:"appliedIndex"`
	Lag          uint64 `json:"lag"`
	Sequence     int64  `json:"journalSequence"`
	Error        string `json:"error,omitempty"`
	// Info is its GetMasterInfo answer (nil when unreachable).
	Info *api.GetMasterInfoResponse `json:"-"`
}

// MasterGroup is the FS masters' group: who leads and every member.
type MasterGroup struct {
	JournalType string   `json:"journalType"`
	LeaderID    string   `json:"leaderId"`
	LeaderRPC   string   `json:"leaderRpcAddress"`
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commitIndex"`
	Masters     []Master `json:"masters"`
}

// MasterGroup asks the leading FS master for the group (Masters) and then
// every member about itself (in parallel, a few seconds each), so a member
// that is down or behind shows as such.
func (c *Client) MasterGroup(ctx context.Context) (*MasterGroup, error) {
	gl, err := c.Masters(ctx)
	if err != nil {
		return nil, err
	}
	g := &MasterGroup{LeaderID: gl.GetLeaderId(), LeaderRPC: gl.GetLeaderRpcAddress(), Term: gl.GetTerm(), CommitIndex: gl.GetCommitIndex()}
	g.Masters = make([]Master, len(gl.GetServers()))
	var wg sync.WaitGroup
	for i, s := range gl.GetServers() {
		g.Masters[i] = Master{ID: s.GetId(), RaftAddress: s.GetRaftAddress(), RPCAddress: s.GetRpcAddress(), Role: "UNREACHABLE"}
		wg.Add(1)
		go func(m *Master) {
			defer wg.Done()
			fs, _, err := c.fsm.Member(m.RPCAddress)
			if err == nil {
				mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				m.Info, err = fs.GetMasterInfo(mctx, &api.GetMasterInfoRequest{})
				cancel()
			}
			if err != nil {
				m.Error = wrapErr("master info", m.RPCAddress, err).Error()
				return
			}
			m.Role, m.AppliedIndex, m.Sequence = m.Info.GetRole(), m.Info.GetAppliedIndex(), m.Info.GetJournalSequence()
			if m.Info.GetJournalType() != "embedded" {
				m.AppliedIndex = uint64(m.Info.GetJournalSequence())
			}
		}(&g.Masters[i])
	}
	wg.Wait()
	top := g.CommitIndex
	for _, m := range g.Masters {
		if m.Info != nil {
			top = max(top, m.Info.GetCommitIndex(), m.AppliedIndex)
			if g.JournalType == "" {
				g.JournalType = m.Info.GetJournalType()
			}
		}
	}
	for i := range g.Masters {
		if g.Masters[i].Info != nil && top > g.Masters[i].AppliedIndex {
			g.Masters[i].Lag = top - g.Masters[i].AppliedIndex
		}
	}
	return g, nil
}

// AddMaster adds the FS master started with fsmaster.raft.join at the
// given addresses to the embedded journal's group: a non-voter until its
// state has caught up, then a voter. Cluster identity only.
func (c *Client) AddMaster(ctx context.Context, id, raftAddr, rpcAddr string) error {
	return c.call(ctx, "add master", id, true, func(ctx context.Context) error {
		_, err := c.fsm.Journal().AddPeer(ctx, &api.AddPeerRequest{Id: id, RaftAddress: raftAddr, RpcAddress: rpcAddr})
		return err
	})
}

// RemoveMaster takes member id out of the embedded journal's group (a
// dead one, say, before a replacement is added). Removing the leader hands
// leadership over first. Cluster identity only.
func (c *Client) RemoveMaster(ctx context.Context, id string) error {
	return c.call(ctx, "remove master", id, false, func(ctx context.Context) error {
		_, err := c.fsm.Journal().RemovePeer(ctx, &api.RemovePeerRequest{Id: id})
		return err
	})
}
