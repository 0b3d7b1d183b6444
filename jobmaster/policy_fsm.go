package jobmaster

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// The policies' replicated state. A policy record (api.PolicyInfo) carries,
// besides what the user gave, the scheduler's cursor (the scheduled time of
// the latest run handled), the launch that is recorded but whose job is not
// yet created, and the run waiting in the overlap queue. Every decision of
// the leader's scheduler is a POLICY_LAUNCH entry applied here BEFORE the
// leader acts on it, so whichever node leads next knows exactly which runs
// were handled.

var (
	errPolicyExists   = errors.New("a policy of that name exists")
	errPolicyNotFound = errors.New("no such policy")
)

func (s *state) policy(name string) *api.PolicyInfo {
	p, _ := s.policies.Get(&api.PolicyInfo{Name: name})
	return p
}

// policyCopy returns a modifiable copy of a policy record (records in the
// tree are never changed in place).
func policyCopy(p *api.PolicyInfo) *api.PolicyInfo { return proto.Clone(p).(*api.PolicyInfo) }

// Policies are snapshot records of their own (snapshot.go).
var _ = registerSnapshotRecord(api.JobSnapshotRecordType_SNAPSHOT_POLICY,
	func(st *state, emit func(*api.PolicyInfo) error) error {
		return ascendEmit(st.policies, func(p *api.PolicyInfo) *api.PolicyInfo { return p }, emit)
	},
	func(st *state, m *api.PolicyInfo) { st.policies.ReplaceOrInsert(m) })

var _ = registerCommand(api.JobCommandType_PUT_POLICY, (*tx).applyPutPolicy)

func (x *tx) applyPutPolicy(c *api.PutPolicyCommand) any {
	x.now = c.GetNowMs()
	p := c.GetPolicy()
	if p.GetName() == "" {
		return errors.New("put policy: empty name")
	}
	if c.GetCreateOnly() && x.s.policy(p.GetName()) != nil {
		return fmt.Errorf("policy %q: %w", p.GetName(), errPolicyExists)
	}
	x.s.policies.ReplaceOrInsert(policyCopy(p))
	return nil
}

var _ = registerCommand(api.JobCommandType_DELETE_POLICY, (*tx).applyDeletePolicy)

func (x *tx) applyDeletePolicy(c *api.DeletePolicyCommand) any {
	if _, ok := x.s.policies.Delete(&api.PolicyInfo{Name: c.GetName()}); !ok {
		return fmt.Errorf("delete policy %q: %w", c.GetName(), errPolicyNotFound)
	}
	return nil
}

var _ = registerCommand(api.JobCommandType_SET_POLICY_ENABLED, (*tx).applySetPolicyEnabled)

func (x *tx) applySetPolicyEnabled(c *api.SetPolicyEnabledCommand) any {
	x.now = c.GetNowMs()
	old := x.s.policy(c.GetName())
	if old == nil {
		return fmt.Errorf("policy %q: %w", c.GetName(), errPolicyNotFound)
	}
	if old.GetEnabled() == c.GetEnabled() {
		return nil
	}
	p := policyCopy(old)
	p.Enabled = c.GetEnabled()
	if p.Enabled {
		// Runs that fell due while paused are not caught up.
		p.CursorMs = max(p.CursorMs, c.GetNowMs())
	} else if p.QueuedMs != 0 {
		p.QueuedMs = 0
		p.Skipped++
	}
	x.s.policies.ReplaceOrInsert(p)
	return nil
}

var _ = registerCommand(api.JobCommandType_POLICY_LAUNCH, (*tx).applyPolicyLaunch)

// applyPolicyLaunch records one scheduler decision. A decision the state
// has overtaken (a run at or before the cursor, a second launch while one is
// pending, a policy removed and added again) is stale and changes nothing:
// that is what makes a decision replayed by a new leader harmless.
func (x *tx) applyPolicyLaunch(c *api.PolicyLaunchCommand) any {
	x.now = c.GetNowMs()
	old := x.s.policy(c.GetName())
	if old == nil || old.GetCreatedMs() != c.GetPolicyCreatedMs() {
		return fmt.Errorf("policy %q launch: %w", c.GetName(), errStale)
	}
	p := policyCopy(old)
	if c.GetEventTo() != 0 {
		return x.applyEventLaunch(p, c)
	}
	sched := c.GetScheduledMs()
	stale := func() any { return fmt.Errorf("policy %q %s at %d: %w", c.GetName(), c.GetKind(), sched, errStale) }
	switch c.GetKind() {
	case api.PolicyLaunchCommand_LAUNCH:
		if p.PendingRequestId != "" || c.GetRequestId() == "" {
			return stale()
		}
		switch {
		case c.GetFromQueue():
			if p.QueuedMs == 0 || p.QueuedMs != sched {
				return stale()
			}
			p.QueuedMs = 0
		case c.GetManual():
			// run-now: outside the schedule; the cursor stays.
		default:
			if sched <= p.CursorMs {
				return stale()
			}
			p.CursorMs = sched
		}
		p.PendingRequestId = c.GetRequestId()
		p.PendingScheduledMs = sched
		p.LastLaunchMs = c.GetNowMs()
	case api.PolicyLaunchCommand_SKIP:
		if sched <= p.CursorMs {
			return stale()
		}
		p.CursorMs = sched
		p.Skipped++
	case api.PolicyLaunchCommand_QUEUE:
		if sched <= p.CursorMs || p.QueuedMs != 0 {
			return stale()
		}
		p.CursorMs = sched
		p.QueuedMs = sched
	default:
		return fmt.Errorf("policy %q: launch kind %d: %w", c.GetName(), c.GetKind(), errUnknownCommand)
	}
	p.Skipped += max(c.GetMissed(), 0)
	x.s.policies.ReplaceOrInsert(p)
	return nil
}

// policyJobSubmitted completes a pending launch: the SUBMIT_JOB entry that
// creates (or, retried, finds) the launch's job clears it in the same entry,
// so a launch is never submitted twice.
func (x *tx) policyJobSubmitted(policy, requestID string, jobID int64) {
	x.launchDone(policy, requestID, func(p *api.PolicyInfo) {
		p.LastJobId = jobID
		p.LastJobStatus = api.JobInfo_CREATED
	})
}

// launchDone clears policy's pending launch requestID (the entry that made
// its job or run) and records the run with set.
func (x *tx) launchDone(policy, requestID string, set func(p *api.PolicyInfo)) {
	if policy == "" || requestID == "" {
		return
	}
	old := x.s.policy(policy)
	if old == nil || old.GetPendingRequestId() != requestID {
		return
	}
	p := policyCopy(old)
	p.PendingRequestId = ""
	p.LastRunMs = p.PendingScheduledMs
	p.PendingScheduledMs = 0
	p.PendingEvents = nil
	set(p)
	p.Runs++
	x.s.policies.ReplaceOrInsert(p)
}

// policyPipelineSubmitted completes a pending launch of a policy that fires
// a pipeline: the SUBMIT_PIPELINE entry that creates (or finds) the run
// clears it in the same entry, as SUBMIT_JOB does for a job.
func (x *tx) policyPipelineSubmitted(policy, requestID string, runID int64) {
	x.launchDone(policy, requestID, func(p *api.PolicyInfo) { p.LastPipelineId = runID })
}

// applyEventLaunch records an event policy's decision about a batch of
// completions: the cursor moves from event_from to event_to and the batch
// is launched (a pending launch with its files, submitted next) or
// skipped, in this one entry. A decision about another cursor, or a second
// launch while one is pending, is stale: a new leader that decides again
// from the committed cursor can neither lose nor repeat a file.
func (x *tx) applyEventLaunch(p *api.PolicyInfo, c *api.PolicyLaunchCommand) any {
	from, to := c.GetEventFrom(), c.GetEventTo()
	stale := func() any {
		return fmt.Errorf("policy %q %s of events %d..%d (cursor %d): %w", c.GetName(), c.GetKind(), from, to, p.GetEventCursor(), errStale)
	}
	if p.GetOnCreate() == "" || from != p.GetEventCursor() || to <= from {
		return stale()
	}
	switch c.GetKind() {
	case api.PolicyLaunchCommand_LAUNCH:
		if p.PendingRequestId != "" || c.GetRequestId() == "" || len(c.GetEvents()) == 0 {
			return stale()
		}
		p.PendingRequestId = c.GetRequestId()
		p.PendingScheduledMs = c.GetNowMs()
		p.PendingEvents = c.GetEvents()
		p.LastLaunchMs = c.GetNowMs()
		p.Events += int64(len(c.GetEvents()))
	case api.PolicyLaunchCommand_SKIP:
		p.SkippedEvents += int64(len(c.GetEvents())) + max(c.GetSkippedEvents(), 0)
		if len(c.GetEvents()) > 0 {
			p.Skipped++
		}
	default:
		return fmt.Errorf("policy %q: event launch kind %d: %w", c.GetName(), c.GetKind(), errUnknownCommand)
	}
	p.EventCursor = to
	x.s.policies.ReplaceOrInsert(p)
	return nil
}
