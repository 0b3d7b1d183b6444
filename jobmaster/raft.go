package jobmaster

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/internal/config"
)

// Peer is one member of the job master raft group.
type Peer struct {
	ID       string // raft server id
	RaftAddr string // host:raft-port
	RPCAddr  string // host:rpc-port, where clients and forwarded calls go
}

// ParsePeers reads jobmaster.raft.peers. Each entry is
//
//	[id=]host:raftport|host:rpcport
//
// e.g. "jm1=10.0.0.1:20003|10.0.0.1:20001"; without "id=" the id is
// host:raftport (the default jobmaster.raft.node-id). All members list the
// same peers; an empty list makes a single node that bootstraps itself.
func ParsePeers(entries []string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var p Peer
		rest := e
		if i := strings.IndexByte(e, '='); i >= 0 {
			p.ID, rest = strings.TrimSpace(e[:i]), e[i+1:]
			if p.ID == "" {
				return nil, fmt.Errorf("jobmaster.raft.peers %q: empty id before '='", e)
			}
		}
		raftAddr, rpcAddr, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, fmt.Errorf("jobmaster.raft.peers %q: want [id=]host:raftport|host:rpcport", e)
		}
		for _, a := range []string{raftAddr, rpcAddr} {
			if !IsHostPort(a) {
				return nil, fmt.Errorf("jobmaster.raft.peers %q: %q is not host:port", e, a)
			}
		}
		p.RaftAddr, p.RPCAddr = raftAddr, rpcAddr
		if p.ID == "" {
			p.ID = raftAddr
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("jobmaster.raft.peers: id %q listed twice", p.ID)
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	return out, nil
}

// IsHostPort reports whether a is host:port with a port, as every peer
// address must be.
func IsHostPort(a string) bool {
	_, port, err := net.SplitHostPort(a)
	return err == nil && port != ""
}

// raftParts are the pieces NewRaft needs; tests swap in memory ones.
type raftParts struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	trans  raft.Transport
	closer func() error
}

// countingLogStore counts StoreLogs calls (one bbolt transaction, one
// fsync each) and the entries they carry.
type countingLogStore struct {
	raft.LogStore
	writes  atomic.Uint64
	entries atomic.Uint64
}

func (c *countingLogStore) StoreLog(l *raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(1)
	return c.LogStore.StoreLog(l)
}

func (c *countingLogStore) StoreLogs(ls []*raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(uint64(len(ls)))
	return c.LogStore.StoreLogs(ls)
}

// openRaftParts opens the bbolt log/stable store, the file snapshot store
// and the TCP transport under cfg.JobMaster.Raft.Dir. The transport
// authenticates its peers (raftauth.go) with the cluster token and TLS.
func openRaftParts(cfg *config.Config, hl hclog.Logger, srvTLS, cliTLS *tls.Config, log *zap.Logger) (*raftParts, *countingLogStore, error) {
	dir := cfg.JobMaster.Raft.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("jobmaster.raft.dir %s: %w", dir, err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, nil, fmt.Errorf("raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	counted := &countingLogStore{LogStore: bolt}
	cached, err := raft.NewLogCache(1024, counted)
	if err != nil {
		bolt.Close()
		return nil, nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		bolt.Close()
		return nil, nil, fmt.Errorf("raft snapshots %s: %w", dir, err)
	}
	bind := net.JoinHostPort(cfg.JobMaster.BindHost, fmt.Sprint(cfg.JobMaster.Raft.Port))
	adv, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(cfg.JobMaster.Host, fmt.Sprint(cfg.JobMaster.Raft.Port)))
	if err != nil {
		bolt.Close()
		return nil, nil, fmt.Errorf("jobmaster.host %s: %w", cfg.JobMaster.Host, err)
	}
	layer, err := newAuthLayer(bind, adv, cfg.Security.Token, srvTLS, cliTLS, log)
	if err != nil {
		bolt.Close()
		return nil, nil, fmt.Errorf("raft transport on %s: %w", bind, err)
	}
	trans := raft.NewNetworkTransportWithLogger(layer, 4, 10*time.Second, hl)
	return &raftParts{
		logs: cached, stable: bolt, snaps: snaps, trans: trans,
		closer: func() error {
			terr := trans.Close()
			berr := bolt.Close()
			if berr != nil {
				return berr
			}
			return terr
		},
	}, counted, nil
}

// raftConfig builds hashicorp/raft's config from ours.
func raftConfig(cfg *config.Config, id string, notify chan bool, hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = hl
	rc.NotifyCh = notify
	rc.BatchApplyCh = true
	rc.NoLegacyTelemetry = true
	r := cfg.JobMaster.Raft
	if r.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = r.HeartbeatTimeout
		rc.LeaderLeaseTimeout = r.HeartbeatTimeout / 2
	}
	if r.ElectionTimeout > 0 {
		rc.ElectionTimeout = r.ElectionTimeout
	}
	if rc.CommitTimeout > rc.HeartbeatTimeout/4 {
		rc.CommitTimeout = rc.HeartbeatTimeout / 4
	}
	if r.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = uint64(r.SnapshotThreshold)
	}
	if r.SnapshotInterval > 0 {
		rc.SnapshotInterval = r.SnapshotInterval
	}
	if r.TrailingLogs > 0 {
		rc.TrailingLogs = uint64(r.TrailingLogs)
	}
	return rc
}

// hclogAdapter routes raft's hclog output into zap.
func hclogAdapter(log *zap.Logger, level string) hclog.Logger {
	lvl := hclog.Info
	switch level {
	case "debug":
		lvl = hclog.Debug
	case "warn":
		lvl = hclog.Warn
	case "error":
		lvl = hclog.Error
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       lvl,
		Output:      &zapWriter{log: log.Named("raft")},
		DisableTime: true,
	})
}

type zapWriter struct{ log *zap.Logger }

func (w *zapWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case strings.Contains(line, "[ERROR]"):
		w.log.Error(line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn(line)
	default:
		w.log.Info(line)
	}
	return len(p), nil
}

var _ io.Writer = (*zapWriter)(nil)
