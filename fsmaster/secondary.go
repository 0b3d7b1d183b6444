package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/fsmaster/journal"
	"github.com/alluvium/alluvium/internal/config"
)

// Secondary is the secondary checkpointer: on the master's host, over the
// same journal dir, it replays closed segments into its own copy of the
// state and writes a checkpoint every checkpoint-period-entries entries (or
// when the master asks), so the master restarts fast and can delete old
// segments. It never serves clients.
type Secondary struct {
	cfg *config.Config
	log *zap.Logger
	dir string

	mu       sync.Mutex // guards st, lastCkpt
	st       *State
	lastCkpt int64

	lock   *os.File
	cancel context.CancelFunc
	done   chan struct{}
}

// NewSecondary returns a secondary for cfg's journal dir.
func NewSecondary(cfg *config.Config, log *zap.Logger) (*Secondary, error) {
	if cfg == nil {
		return nil, errors.New("secondary: no config")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.FSMaster.Journal.Dir == "" {
		return nil, errors.New("secondary: fsmaster.journal.dir is empty")
	}
	return &Secondary{cfg: cfg, log: log, dir: cfg.FSMaster.Journal.Dir}, nil
}

// Start takes the secondary lock, loads the newest checkpoint and starts
// the replay/checkpoint loop.
func (s *Secondary) Start(ctx context.Context) error {
	if _, err := os.Stat(s.dir); err != nil {
		return fmt.Errorf("secondary: journal dir %s: %w (start the master or run `alluvium format` first)", s.dir, err)
	}
	if kind, err := journal.KindOf(s.dir); err == nil && kind == journal.KindEmbedded || s.cfg.FSMaster.Journal.Type == journal.KindEmbedded {
		return fmt.Errorf("secondary: journal %s is embedded: its standby masters write the checkpoints, no secondary runs beside them", s.dir)
	}
	lock, err := lockSecondary(s.dir)
	if err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	st, path, seq, err := recoverState(s.dir, s.log)
	if err != nil {
		lock.Close()
		return fmt.Errorf("secondary: %w", err)
	}
	if path != "" {
		s.log.Info(fmt.Sprintf("loaded checkpoint %s at sequence %d", path, seq))
	}
	s.lock, s.st, s.lastCkpt = lock, st, seq
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	// Catch up once before returning, so "ready" means caught up.
	s.step(bg)
	go s.loop(bg)
	return nil
}

// Stop stops the loop (a checkpoint being written is finished first) and
// releases the lock.
func (s *Secondary) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.lock.Close()
}

// Sequence is the last entry the secondary has applied.
func (s *Secondary) Sequence() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.lastSeq
}

// LastCheckpoint is the sequence of the newest checkpoint it knows of.
func (s *Secondary) LastCheckpoint() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastCkpt
}

func (s *Secondary) loop(ctx context.Context) {
	defer close(s.done)
	poll := s.cfg.FSMaster.Journal.CheckpointPollInterval
	if poll <= 0 {
		poll = time.Second
	}
	// Requests from the master are polled faster than segments: a client
	// waits on them.
	fast := min(poll, 100*time.Millisecond)
	t := time.NewTicker(fast)
	defer t.Stop()
	lastFull := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(lastFull) >= poll || readCheckpointRequest(s.dir) > 0 {
			lastFull = time.Now()
			s.step(ctx)
		}
	}
}

// step replays newly closed segments and writes a checkpoint when the
// period has passed or the master asked for one.
func (s *Secondary) step(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := journal.ReplayClosed(ctx, s.dir, s.st.lastSeq, s.st.Apply)
	if err != nil && ctx.Err() == nil {
		// The entries we need may be gone because the master wrote a newer
		// checkpoint itself while no secondary ran: start from that one.
		if newestCheckpointName(s.dir) > s.st.lastSeq {
			if st, path, seq, rerr := recoverState(s.dir, s.log); rerr == nil && seq > s.st.lastSeq {
				s.log.Info(fmt.Sprintf("loaded checkpoint %s at sequence %d", path, seq))
				s.st, s.lastCkpt = st, seq
				_, err = journal.ReplayClosed(ctx, s.dir, s.st.lastSeq, s.st.Apply)
			}
		}
		if err != nil {
			s.log.Warn("secondary: replay of closed segments failed; retrying", zap.Error(err))
		}
	}
	if ctx.Err() != nil {
		return
	}
	req := readCheckpointRequest(s.dir)
	period := s.cfg.FSMaster.Journal.CheckpointPeriodEntries
	due := period > 0 && s.st.lastSeq-s.lastCkpt >= period
	asked := req > 0 && s.st.lastSeq >= req && s.st.lastSeq > s.lastCkpt
	if due || asked {
		if err := s.writeCheckpoint(); err != nil {
			s.log.Error("secondary: checkpoint failed", zap.Error(err))
			return
		}
	}
	if req > 0 && s.lastCkpt >= req {
		removeCheckpointRequest(s.dir, s.lastCkpt)
	}
}

func (s *Secondary) writeCheckpoint() error {
	seq := s.st.lastSeq
	t0 := time.Now()
	s.log.Info("secondary writing checkpoint", zap.Int64("sequence", seq))
	path, err := journal.WriteCheckpoint(s.dir, seq, s.st.WriteCheckpoint)
	if err != nil {
		return err
	}
	s.lastCkpt = seq
	s.log.Info("secondary wrote checkpoint", zap.String("path", path), zap.Int64("sequence", seq),
		zap.Int("inodes", s.st.InodeCount()), zap.Duration("took", time.Since(t0)))
	if err := journal.RemoveOldCheckpoints(s.dir, s.cfg.FSMaster.Journal.CheckpointsRetained); err != nil {
		s.log.Warn("secondary: could not remove old checkpoints", zap.Error(err))
	}
	return nil
}
