// Package jobmaster is the job service: a raft group (hashicorp/raft, a
// raft-boltdb/v2 log and stable store, file snapshots under
// jobmaster.raft.dir) whose leader plans jobs into tasks, hands the tasks to
// job workers and tracks them to the end.
//
// # Replicated state (fsm.go, state.go, command.go, snapshot.go)
//
// The FSM holds jobs, tasks, job workers and policies (the cron policies'
// table) in copy-on-write B-trees of immutable records, so a snapshot is an
// O(1) clone written out while applying goes on. Every change is a typed
// command — one type byte (api.JobCommandType, append-only) and a protobuf
// body (api/jobfsm.proto) — applied by one function per type. As in
// Consul's FSM, each command type is registered once beside its apply
// function (registerCommand: body, apply, skippable); decoding, dispatch
// and a body's type all read that table (command.go). Each kind of snapshot
// record is registered the same way beside the state it holds
// (registerSnapshotRecord; snapshot.go writes and reads them). Commands
// carry everything they need (times, max attempts, the job's limits), so
// every replica computes the same state; a command the state has overtaken
// (a re-sent plan batch, a stale attempt's failure) is a no-op, not an
// error.
//
// # Leadership (leader.go)
//
// monitorLeadership follows raft's NotifyCh. On gaining leadership the
// leader waits for a barrier (every earlier entry applied), installs the
// FSM hook that tells it about every change, rebuilds its soft state from
// the FSM, and starts its loops; on losing it, it stops them all. Only the
// leader plans, assigns, tracks worker liveness and compacts old jobs. A
// follower forwards every client and worker call to the leader over gRPC
// (GetLeader names it), one hop only.
//
// # The leader's parts
//
//   - planners (planner.go): one goroutine per job being planned pulls
//     batches from the plan's streaming Planner and commits each batch with
//     the planner's cursor in one PLAN_TASKS entry: a new leader resumes at
//     the last committed cursor, without duplicates and without holding a
//     whole listing. Planning pauses while a job has
//     jobmaster.planner.max-outstanding unfinished tasks. At most
//     jobmaster.planner.concurrency batches are listed at once; a job waiting
//     for its tasks or for raft holds no slot, so a small job is never
//     queued behind big ones. A small job is planned before it exists:
//     its submit runs the planner, and a plan done in one small batch
//     rides in the submit entry (SUBMIT_PLANNED_JOB, leaderState.submitJob).
//     Submits that come while others are in raft share one SUBMIT_JOBS
//     entry, each answered on its own (submits.go).
//   - the scheduler (broker.go): PENDING tasks wait in a queue per job
//     worker (the one beside the block worker the task's data goes to) or a
//     shared one; a worker's long poll (JobWorkerHeartbeat with wait_ms,
//     or the same request on the worker's JobWorkerPolls stream, which
//     answers each in order and saves a call's setup every interval) is
//     answered the moment there is work for it, up to its capacity minus
//     what it holds — remote plans' tasks (plans.RemoteRunner: load) up to
//     its remote capacity instead, which a job worker runs beside its
//     threads (jobworker.remote-tasks). Idle workers steal from long queues, once their oldest
//     task has waited jobmaster.task.locality-wait there. Cancels ride on
//     the same replies. It turns claimed tasks into assignments (with each
//     job's bandwidth share, from the job's typed limits: it never reads a
//     plan's config) and reconciles what a worker says it holds with what
//     the FSM has running on it. A hand-out does not wait for its DISPATCH
//     entry, so a new leader settles first: the tasks PENDING when it took
//     over wait until every live worker has said what it holds (or is
//     LOST), and a held attempt still PENDING is adopted for its worker —
//     never handed out twice.
//   - collector (collector.go): task transitions from every worker (results,
//     progress) and from the leader (dispatches, timeouts) are batched into
//     UPDATE_TASKS entries: one fsync carries all that arrived meanwhile. A
//     worker's result is acked only once it is in raft, and re-sent until
//     then.
//   - heartbeats (heartbeat.go): a TTL timer per live job worker; one that is
//     silent past jobmaster.worker.timeout is LOST and its running tasks go
//     back to PENDING with attempt+1 (FAILED after max attempts). A new
//     leader gives the workers it inherits a longer failover TTL, the time
//     to find it.
//   - finisher (planner.go): a job whose planning is done and whose tasks
//     have all ended is COMPLETED or FAILED — or, if its plan asks (load
//     --verify), planned again in a new round.
//   - GC (leader.go): finished jobs past jobmaster.job.retention, and beyond
//     jobmaster.job.capacity, are compacted away.
//   - policies (policy.go, policy_fsm.go, policy_grpc.go): the cron
//     scheduler fires each policy's job on its spec. Every decision (launch,
//     skip, queue) is a POLICY_LAUNCH entry committed before the leader acts:
//     a launch names the job's request id (policy, scheduled time), and the
//     SUBMIT_JOB entry that creates the job clears it, so a new leader
//     submits a pending launch once and never repeats or loses a run.
//
// The http port (http.go) serves /healthz, /metrics and /api/v1/jobs[/{id}]
// from this node's FSM.
package jobmaster
