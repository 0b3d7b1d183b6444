package raftgroup

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
	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/internal/config"
)

// Parts are the stores and transport a raft node runs on; tests build them
// from raft's in-memory ones.
type Parts struct {
	Logs   raft.LogStore
	Stable raft.StableStore
	Snaps  raft.SnapshotStore
	Trans  raft.Transport
	// Counted wraps the log store under Logs' cache; nil until Count.
	Counted *CountingLogStore
	Closer  func() error
}

// Count makes the log store count its writes (once).
func (p *Parts) Count() *CountingLogStore {
	if p.Counted == nil {
		p.Counted = &CountingLogStore{LogStore: p.Logs}
		p.Logs = p.Counted
	}
	return p.Counted
}

// Close closes the stores and the transport.
func (p *Parts) Close() error {
	if p == nil || p.Closer == nil {
		return nil
	}
	return p.Closer()
}

// CountingLogStore counts StoreLogs calls (one bbolt transaction, one
// fsync each), the entries they carry and the entries' data bytes.
type CountingLogStore struct {
	raft.LogStore
	writes  atomic.Uint64
	entries atomic.Uint64
	bytes   atomic.Uint64
}

// StoreLog implements raft.LogStore.
func (c *CountingLogStore) StoreLog(l *raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(1)
	c.bytes.Add(uint64(len(l.Data)))
	return c.LogStore.StoreLog(l)
}

// StoreLogs implements raft.LogStore.
func (c *CountingLogStore) StoreLogs(ls []*raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(uint64(len(ls)))
	for _, l := range ls {
		c.bytes.Add(uint64(len(l.Data)))
	}
	return c.LogStore.StoreLogs(ls)
}

// Bytes is the data bytes of the raft entries written.
func (c *CountingLogStore) Bytes() uint64 { return c.bytes.Load() }

// Writes is the number of log-store writes (fsyncs with bbolt).
func (c *CountingLogStore) Writes() uint64 { return c.writes.Load() }

// Entries is the number of raft entries written.
func (c *CountingLogStore) Entries() uint64 { return c.entries.Load() }

// StoreOptions say where a node keeps its raft data and how it is reached.
type StoreOptions struct {
	Dir      string // raft.db and snapshots/
	DirKey   string // the config key of Dir, for messages
	BindHost string // listen address of the raft port
	Host     string // advertised host
	HostKey  string // the config key of Host, for messages
	Port     int
	Magic    string // JobMasterMagic or FSMasterMagic
	Token    string // the cluster token; "": no challenge
	SrvTLS   *tls.Config
	CliTLS   *tls.Config
	Log      *zap.Logger
	HCLog    hclog.Logger
}

// Open opens the bbolt log/stable store, the file snapshot store and the
// TCP transport under o.Dir. The transport authenticates its peers
// (transport.go) with the cluster token and TLS.
func Open(o StoreOptions) (*Parts, error) {
	bolt, snaps, err := OpenStores(o.Dir, o.DirKey, o.HCLog)
	if err != nil {
		return nil, err
	}
	cached, err := raft.NewLogCache(1024, bolt)
	if err != nil {
		bolt.Close()
		return nil, err
	}
	bind := net.JoinHostPort(o.BindHost, fmt.Sprint(o.Port))
	adv, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(o.Host, fmt.Sprint(o.Port)))
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("%s %s: %w", o.HostKey, o.Host, err)
	}
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	layer, err := newAuthLayer(o.Magic, bind, adv, o.Token, o.SrvTLS, o.CliTLS, log)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raft transport on %s: %w", bind, err)
	}
	trans := raft.NewNetworkTransportWithLogger(layer, 4, 10*time.Second, o.HCLog)
	p := &Parts{Logs: cached, Stable: bolt, Snaps: snaps, Trans: trans}
	p.Closer = func() error {
		terr := trans.Close()
		if berr := bolt.Close(); berr != nil {
			return berr
		}
		return terr
	}
	return p, nil
}

// OpenStores opens the bbolt log and stable store and the file snapshot
// store under dir (dirKey names its config key in errors), without a
// transport: for tools that read or write a stopped node's raft data.
func OpenStores(dir, dirKey string, hl hclog.Logger) (*raftboltdb.BoltStore, raft.SnapshotStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", dirKey, dir, err)
	}
	dbPath := filepath.Join(dir, "raft.db")
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: boltOptions()})
	if err != nil {
		return nil, nil, fmt.Errorf("raft log %s: %w", dbPath, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		bolt.Close()
		return nil, nil, fmt.Errorf("raft snapshots %s: %w", dir, err)
	}
	return bolt, snaps, nil
}

// boltOptions are the raft log's bbolt options: every commit still
// fdatasyncs (raft-boltdb's NoSync stays false), but bbolt keeps its
// freelist in memory only (NoFreelistSync): a commit writes the new log
// pages and the meta page, not also a fresh copy of the freelist — one
// page or several once compactions have freed the old entries' pages.
// Opening the file rebuilds the freelist by scanning its pages (a raft.db
// is a few trailing-logs' worth: a moment), so nothing durable changes,
// and a build without this option opens the file as before. The map
// freelist allocates without the array's sorted merge. The FS master's
// journal segments are opened so too (fsmaster/journal.segmentOptions).
func boltOptions() *bbolt.Options {
	return &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// Config builds hashicorp/raft's config from ours.
func Config(r config.RaftConfig, id string, notify chan bool, hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = hl
	rc.NotifyCh = notify
	rc.BatchApplyCh = true
	rc.NoLegacyTelemetry = true
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

// Bootstrap writes the first configuration of a group with no raft state:
// the listed peers, or this node alone. It reports whether the node was
// bootstrapped (false: it has state already, or join asks it to wait
// empty until a member adds it).
func Bootstrap(rc *raft.Config, p *Parts, self Peer, peers []Peer, join bool) (bootstrapped, joining bool, err error) {
	has, err := raft.HasExistingState(p.Logs, p.Stable, p.Snaps)
	if err != nil {
		return false, false, fmt.Errorf("raft state: %w", err)
	}
	if has {
		return false, false, nil
	}
	if join {
		return false, true, nil
	}
	conf := raft.Configuration{}
	if len(peers) == 0 {
		conf.Servers = []raft.Server{{ID: raft.ServerID(self.ID), Address: p.Trans.LocalAddr()}}
	} else {
		for _, q := range peers {
			conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(q.ID), Address: raft.ServerAddress(q.RaftAddr)})
		}
	}
	if err := raft.BootstrapCluster(rc, p.Logs, p.Stable, p.Snaps, p.Trans, conf); err != nil {
		return false, false, fmt.Errorf("raft bootstrap: %w", err)
	}
	return true, false, nil
}

// HCLog routes raft's hclog output into zap.
func HCLog(log *zap.Logger, level string) hclog.Logger {
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
