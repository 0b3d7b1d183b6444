package fsmaster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
)

// ConvertJournal turns the stopped master's journal in
// fsmaster.journal.dir into the other kind (`alluvium fsadmin journal
// convert --to KIND`), keeping the namespace:
//
//   - to embedded: the local checkpoint and segments are replayed into a
//     state that becomes the first raft snapshot of a group of one — this
//     master (fsmaster.raft.node-id). The others start empty with --join
//     and are added with `fsadmin journal quorum add`.
//   - to local: the newest raft snapshot becomes a local checkpoint. The
//     raft log must hold no journal entry after it (a stopped group cannot
//     tell which were committed): run `fsadmin checkpoint` on the leader
//     before stopping the masters, and convert the leader's journal.
//
// What belonged to the old kind is moved aside into
// <dir>/converted-<kind>-<time>/, not deleted. It returns a one-line
// summary.
func ConvertJournal(ctx context.Context, cfg *config.Config, to string, log *zap.Logger) (string, error) {
	if log == nil {
		log = zap.NewNop()
	}
	dir := cfg.FSMaster.Journal.Dir
	kind, err := journal.KindOf(dir)
	if err != nil {
		return "", err
	}
	switch {
	case kind == "":
		return "", fmt.Errorf("journal %s is empty: nothing to convert (format it with --journal-type %s)", dir, to)
	case kind == to:
		return "", fmt.Errorf("journal %s is %s already", dir, to)
	case to == journal.KindEmbedded:
		return toEmbedded(ctx, cfg, log)
	case to == journal.KindLocal:
		return toLocal(cfg)
	}
	return "", fmt.Errorf("--to %q: want %s or %s", to, journal.KindLocal, journal.KindEmbedded)
}

func asideName(from string) string {
	return fmt.Sprintf("converted-%s-%s", from, time.Now().UTC().Format("20060102T150405"))
}

func toEmbedded(ctx context.Context, cfg *config.Config, log *zap.Logger) (string, error) {
	dir, c := cfg.FSMaster.Journal.Dir, cfg.FSMaster
	peers, err := raftgroup.ParsePeers("fsmaster.raft.peers", c.Raft.Peers)
	if err != nil {
		return "", err
	}
	self, _ := raftgroup.Self(peers, raftgroup.Peer{ID: c.Raft.NodeID, RaftAddr: net.JoinHostPort(c.Host, fmt.Sprint(c.Raft.Port))})
	if len(peers) > 1 || len(peers) == 1 && peers[0].ID != self.ID {
		return "", fmt.Errorf("convert makes a group of one, this master (%s); fsmaster.raft.peers lists %s: convert with only this master in it (or none), then start the others with --join and add them with 'alluvium fsadmin journal quorum add'", self.ID, raftgroup.IDs(peers))
	}
	// The namespace, as a restart of the local master would load it.
	j, err := journal.Open(journal.Options{Dir: dir, Logger: log})
	if err != nil {
		return "", err
	}
	st, _, seq, err := recoverState(dir, log)
	if err == nil {
		err = j.Replay(ctx, seq, st.Apply)
	}
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("read the local journal %s: %w", dir, err)
	}
	lock, err := journal.LockDir(dir)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	hl := hclog.NewNullLogger()
	logs, snaps, err := raftgroup.OpenStores(c.Raft.Dir, "fsmaster.raft.dir", hl)
	if err != nil {
		return "", err
	}
	defer logs.Close()
	if has, err := raft.HasExistingState(logs, logs, snaps); err != nil || has {
		return "", fmt.Errorf("raft dir %s already holds raft state (%v): remove it first", c.Raft.Dir, err)
	}
	// The state becomes raft entry 1: the group's first configuration is
	// that entry, and the first snapshot covers it.
	b, err := writeBaseCheckpoint(dir, st, 1)
	if err != nil {
		return "", err
	}
	conf := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(self.ID), Address: raft.ServerAddress(self.RaftAddr)}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(self.RaftAddr))
	rc := raftgroup.Config(c.Raft, self.ID, nil, hl)
	if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, conf); err != nil {
		return "", fmt.Errorf("raft bootstrap: %w", err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, conf, 1, trans)
	if err != nil {
		return "", fmt.Errorf("raft snapshot: %w", err)
	}
	if err := writeSnapshotOf(sink, b, st.lastSeq); err != nil {
		_ = sink.Cancel()
		return "", err
	}
	if err := sink.Close(); err != nil {
		return "", fmt.Errorf("raft snapshot: %w", err)
	}
	aside := asideName(journal.KindLocal)
	if err := journal.SetAsideCheckpoints(dir, aside, b.path); err != nil {
		return "", err
	}
	if err := journal.ConvertDir(dir, journal.KindEmbedded, aside); err != nil {
		return "", err
	}
	return fmt.Sprintf("converted %s to an embedded journal at sequence %d (%d inodes): a group of one, %s at %s; the local journal is in %s/%s",
		dir, st.lastSeq, st.InodeCount(), self.ID, self.RaftAddr, dir, aside), nil
}

// writeSnapshotOf writes a snapshot that is base b alone.
func writeSnapshotOf(w io.Writer, b base, seq int64) error {
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 1<<20)}
	if err := sw.header(&api.RaftSnapshotHeader{Index: b.index, Sequence: seq, BaseIndex: b.index, BaseSequence: b.seq, BaseBytes: fi.Size()}); err != nil {
		return err
	}
	if _, err := io.Copy(sw.w, f); err != nil {
		return err
	}
	return sw.end()
}

func toLocal(cfg *config.Config) (string, error) {
	dir, c := cfg.FSMaster.Journal.Dir, cfg.FSMaster
	lock, err := journal.LockDir(dir)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	logs, snaps, err := raftgroup.OpenStores(c.Raft.Dir, "fsmaster.raft.dir", hclog.NewNullLogger())
	if err != nil {
		return "", err
	}
	defer logs.Close()
	st, from := NewState(), uint64(0)
	metas, err := snaps.List()
	if err != nil {
		return "", err
	}
	if len(metas) > 0 {
		_, rc, err := snaps.Open(metas[0].ID)
		if err != nil {
			return "", fmt.Errorf("raft snapshot %s: %w", metas[0].ID, err)
		}
		snap, err := readSnapshot(rc, journal.CheckpointsDir(dir))
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("raft snapshot %s: %w", metas[0].ID, err)
		}
		if snap.base != "" {
			os.Remove(snap.base)
		}
		st, from = snap.st, metas[0].Index
	}
	last, err := logs.LastIndex()
	if err != nil {
		return "", err
	}
	var l raft.Log
	pending := 0
	for i := from + 1; i <= last; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return "", err
		}
		if l.Type == raft.LogCommand && len(l.Data) > 0 && l.Data[0] == cmdJournal {
			pending++
		}
	}
	if pending > 0 {
		return "", fmt.Errorf("the raft log of %s holds %d journal batches after its last snapshot (entry %d), and a stopped group cannot tell which were committed: start the masters, run 'alluvium fsadmin checkpoint', stop them, and convert the journal of the master that led", dir, pending, from)
	}
	path, err := journal.WriteCheckpoint(dir, st.lastSeq, st.WriteCheckpoint)
	if err != nil {
		return "", err
	}
	aside := asideName(journal.KindEmbedded)
	if err := journal.SetAsideCheckpoints(dir, aside, path); err != nil {
		return "", err
	}
	if err := journal.ConvertDir(dir, journal.KindLocal, aside); err != nil {
		return "", err
	}
	if err := journal.StartLogAt(dir, st.lastSeq+1); err != nil {
		return "", err
	}
	return fmt.Sprintf("converted %s to a local journal at sequence %d (%d inodes); the raft data is in %s/%s",
		dir, st.lastSeq, st.InodeCount(), dir, aside), nil
}
