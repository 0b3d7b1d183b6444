package sim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
)

// Config says what to simulate.
type Config struct {
	Workers    int      // block+job worker pairs
	FSMasters  []string // FS master rpc addresses (the first that answers is used)
	JobMasters []string // job master rpc addresses; none: no job workers
	Dial       rpc.ClientOptions
	// HostPrefix names the simulated hosts: <prefix>-<i>. Nothing dials
	// them; the names only have to be unique per worker.
	HostPrefix string
	// Conns is how many clients of the masters (a connection to each) the
	// workers share; 0 gives each worker its own, as separate worker
	// processes have.
	Conns int
	// Capacity is how many tasks a job worker takes at once (default 8).
	Capacity int
	// TierBytes is the MEM tier capacity each block worker reports
	// (default 64 GiB).
	TierBytes int64
	// SpreadPhases starts each worker's beats (and polls) at a random
	// point of the interval after its registration instead of a whole
	// interval on (firstDue): the spread real workers' phases drift to.
	SpreadPhases bool
	Log          *zap.Logger
}

// Sim runs the simulated workers.
type Sim struct {
	cfg    Config
	log    *zap.Logger
	blocks []*blockWorker
	jobs   []*jobWorker
	byID   sync.Map // block worker id → *blockWorker

	shared []*masters // Conns > 0: the clients the workers share

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	st stats
}

type stats struct {
	heartbeats, hbErrors, registrations, regErrors, registerAsks      atomic.Int64
	polls, pollErrors, jobRegistrations, jobRegErrors, reregisterAsks atomic.Int64
	reports, reportErrors, tasksDone, blocksCommitted, commitErrors   atomic.Int64
	hb, reg, report, poll, commit                                     histogram
	// hbLate: how late the simulator sent each heartbeat after it was
	// due (its own lag: a starved simulator shows here, not in hb);
	// skipped: beats (and polls) dropped because the simulator fell more
	// than half an interval behind.
	hbLate  histogram
	skipped atomic.Int64
}

// nextDue is the instant the beat (or poll) after one due at due is due:
// an interval on; when the simulator is already (at now) more than half an
// interval past that, the beats it cannot send in time are skipped (and
// counted, as a ticker drops its ticks) so that it does not send a burst.
func (s *Sim) nextDue(due time.Time, every time.Duration, now time.Time) time.Time {
	due = due.Add(every)
	if late := now.Sub(due); late > every/2 {
		n := (late + every/2) / every
		s.st.skipped.Add(int64(n))
		due = due.Add(n * every)
	}
	return due
}

// firstDue is when a worker registered at now is first due to heartbeat
// (or to end its first long poll): a whole interval on, or with
// SpreadPhases at a random point of the interval. The masters answer
// registrations in batches (one journal or raft commit for many), so
// thousands of workers register at the same few instants, and the
// simulator holds each to an exact period (nextDue): their beats stay
// bunched for good (in the 10,000-worker run, 10 ms stretches of the
// second held up to four times the average number of beats and others
// none). A real worker's period is the interval plus its reply's latency,
// which differs from worker to worker, so real phases drift apart over
// time; SpreadPhases gives the spread that drift ends in. Bunched beats
// are cheaper for the masters (many answered per wake-up): at 10,000
// workers over 100 shared connections, spread, the FS master took 46 µs of
// CPU a heartbeat against 19–21 bunched, the job master 56 µs a poll
// against 34, and the simulator 0.91 of a core against 0.51 (two quiet
// runs each, interleaved): on a 2-core machine the spread simulator and
// the masters use 1.93 cores together, and the tails measure that.
func (s *Sim) firstDue(now time.Time, every time.Duration) time.Time {
	if !s.cfg.SpreadPhases {
		return now.Add(every)
	}
	return now.Add(client.Spread(every) + time.Millisecond)
}

// Stats is a snapshot of what the simulated workers saw since the last
// ResetStats (counters) and now (gauges).
type Stats struct {
	Workers          int   `json:"workers"`
	BlockRegistered  int   `json:"blockRegistered"` // gauge: block workers holding a registration
	JobRegistered    int   `json:"jobRegistered"`   // gauge: job workers holding a registration
	BlocksHeld       int64 `json:"blocksHeld"`      // gauge
	Heartbeats       int64 `json:"heartbeats"`
	HeartbeatErrors  int64 `json:"heartbeatErrors"`
	Registrations    int64 `json:"registrations"`
	RegisterErrors   int64 `json:"registerErrors"`
	RegisterAsks     int64 `json:"registerAsks"` // the FS master asked a registered worker to register again
	Polls            int64 `json:"polls"`
	PollErrors       int64 `json:"pollErrors"`
	JobRegistrations int64 `json:"jobRegistrations"`
	JobRegErrors     int64 `json:"jobRegisterErrors"`
	ReregisterAsks   int64 `json:"reregisterAsks"` // the job master did not know a registered job worker (LOST)
	Reports          int64 `json:"reports"`
	ReportErrors     int64 `json:"reportErrors"`
	TasksDone        int64 `json:"tasksDone"`
	BlocksCommitted  int64 `json:"blocksCommitted"`
	CommitErrors     int64 `json:"commitErrors"`
	// Latencies: a block worker heartbeat to the FS master, a registration
	// (with its full report), a job worker's task-result report, a long
	// poll's time beyond the wait it asked for (polls that got no task),
	// a CommitBlocks.
	Heartbeat Latency `json:"heartbeatLatency"`
	// HeartbeatLate is how late after its due instant the simulator sent
	// each heartbeat: its own lag (scheduling, CPU), apart from the
	// master's answer; Skipped counts beats and polls it dropped after
	// falling more than half an interval behind.
	HeartbeatLate Latency `json:"heartbeatLate"`
	Skipped       int64   `json:"skipped"`
	Registration  Latency `json:"registrationLatency"`
	Report        Latency `json:"reportLatency"`
	PollOverrun   Latency `json:"pollOverrun"`
	Commit        Latency `json:"commitLatency"`
}

// New checks cfg and returns a simulator; Start runs it.
func New(cfg Config) (*Sim, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("sim: %d workers: want at least 1", cfg.Workers)
	}
	if len(cfg.FSMasters) == 0 {
		return nil, errors.New("sim: no FS master address")
	}
	if cfg.HostPrefix == "" {
		cfg.HostPrefix = "sim"
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 8
	}
	if cfg.TierBytes <= 0 {
		cfg.TierBytes = 64 << 30
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Dial.ConnBuffer <= 0 {
		// Thousands of connections: keep each one's buffers small.
		cfg.Dial.ConnBuffer = 16 << 10
	}
	perWorker := 1
	if len(cfg.JobMasters) > 0 {
		perWorker = 2
	}
	if lim := FileLimit(); cfg.Conns == 0 && ConnsFor(cfg.Workers, perWorker, lim) > 0 {
		return nil, fmt.Errorf("sim: %d workers need about %d open files (a connection to each master apiece), the limit is %d: raise it (ulimit -n) or share connections (--conns %d)",
			cfg.Workers, cfg.Workers*perWorker+fileReserve, lim, ConnsFor(cfg.Workers, perWorker, lim))
	}
	s := &Sim{cfg: cfg, log: cfg.Log}
	for range cfg.Conns {
		m, err := s.newMasters()
		if err != nil {
			s.closeMasters()
			return nil, err
		}
		s.shared = append(s.shared, m)
	}
	for i := range cfg.Workers {
		m := s.sharedMasters(i)
		if m == nil {
			var err error
			if m, err = s.newMasters(); err != nil {
				s.closeMasters()
				return nil, err
			}
		}
		b := &blockWorker{s: s, i: i, host: fmt.Sprintf("%s-%d", cfg.HostPrefix, i), m: m}
		s.blocks = append(s.blocks, b)
		if len(cfg.JobMasters) > 0 {
			s.jobs = append(s.jobs, &jobWorker{s: s, i: i, bw: b, m: m, instance: rand.Text()})
		}
	}
	return s, nil
}

// Start starts every worker, each at a random phase of its interval so
// their heartbeats spread as independent processes' do.
func (s *Sim) Start() {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, b := range s.blocks {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); b.run(s.ctx) }()
	}
	for _, j := range s.jobs {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); j.run(s.ctx) }()
	}
}

// Stop stops every worker and closes the connections.
func (s *Sim) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
	s.closeMasters()
}

// closeMasters closes every worker's clients.
func (s *Sim) closeMasters() {
	for _, m := range s.shared {
		m.close()
	}
	if s.cfg.Conns <= 0 {
		for _, b := range s.blocks {
			b.m.close()
		}
	}
}

// Stats returns what the workers saw since the last ResetStats.
func (s *Sim) Stats() Stats {
	st := &s.st
	out := Stats{
		Workers: len(s.blocks), Heartbeats: st.heartbeats.Load(), HeartbeatErrors: st.hbErrors.Load(),
		Registrations: st.registrations.Load(), RegisterErrors: st.regErrors.Load(), RegisterAsks: st.registerAsks.Load(),
		Polls: st.polls.Load(), PollErrors: st.pollErrors.Load(), JobRegistrations: st.jobRegistrations.Load(),
		JobRegErrors: st.jobRegErrors.Load(), ReregisterAsks: st.reregisterAsks.Load(), Reports: st.reports.Load(),
		ReportErrors: st.reportErrors.Load(), TasksDone: st.tasksDone.Load(), BlocksCommitted: st.blocksCommitted.Load(),
		CommitErrors: st.commitErrors.Load(),
		Heartbeat:    st.hb.summary(), Registration: st.reg.summary(), Report: st.report.summary(),
		PollOverrun: st.poll.summary(), Commit: st.commit.summary(),
		HeartbeatLate: st.hbLate.summary(), Skipped: st.skipped.Load(),
	}
	for _, b := range s.blocks {
		reg, held := b.gauges()
		if reg {
			out.BlockRegistered++
		}
		out.BlocksHeld += int64(held)
	}
	for _, j := range s.jobs {
		if j.registered() {
			out.JobRegistered++
		}
	}
	return out
}

// ResetStats starts a new measurement window (gauges are not reset).
func (s *Sim) ResetStats() {
	st := &s.st
	for _, c := range []*atomic.Int64{&st.heartbeats, &st.hbErrors, &st.registrations, &st.regErrors, &st.registerAsks,
		&st.polls, &st.pollErrors, &st.jobRegistrations, &st.jobRegErrors, &st.reregisterAsks, &st.reports,
		&st.reportErrors, &st.tasksDone, &st.blocksCommitted, &st.commitErrors, &st.skipped} {
		c.Store(0)
	}
	for _, h := range []*histogram{&st.hb, &st.reg, &st.report, &st.poll, &st.commit, &st.hbLate} {
		h.reset()
	}
}

// masters are the clients a simulated worker (or, with Conns, a share of
// them) reaches the masters with: the client layer's, as a worker process
// has — the FS master's leader found and followed, the job master's leader
// found for a session with it.
type masters struct {
	fs *client.FSMaster
	jm *client.JobMaster // nil: no job masters
}

func (s *Sim) newMasters() (*masters, error) {
	o := client.Defaults(s.cfg.Dial)
	fs, err := client.NewFSMaster(s.cfg.FSMasters, o)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	m := &masters{fs: fs}
	if len(s.cfg.JobMasters) > 0 {
		if m.jm, err = client.NewJobMaster(s.cfg.JobMasters, o); err != nil {
			fs.Close()
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	return m, nil
}

// sharedMasters is worker i's share of the shared clients (nil: Conns is
// 0, the worker has its own).
func (s *Sim) sharedMasters(i int) *masters {
	if len(s.shared) == 0 {
		return nil
	}
	return s.shared[i%len(s.shared)]
}

func (m *masters) close() {
	if m == nil {
		return
	}
	m.fs.Close()
	if m.jm != nil {
		m.jm.Close()
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tier is what every simulated block worker reports.
func (s *Sim) tiers(used int64) []*api.TierUsage {
	return []*api.TierUsage{{Alias: "MEM", CapacityBytes: s.cfg.TierBytes, UsedBytes: used}}
}
