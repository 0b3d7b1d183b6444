// Package jobworker is the job-worker role of `alluvium worker`: it
// registers with the job master leader (finding it through any job master
// and following it across failovers), keeps one long poll open for tasks
// (over one JobWorkerPolls stream to the leader, internal/client.Polls;
// the unary call to a master without it),
// runs them on a pool of jobworker.threads executors through the plans
// registry — a remote plan's tasks (plans.RemoteRunner: a load, whose
// work is its block workers') each on a goroutine of its own, up to
// jobworker.remote-tasks at once beside the threads, as the leader hands
// it that many beside its capacity — and reports every result at once — re-sending it until the
// leader acks that it is in raft, so a lost reply or a leader change never
// loses a result.
//
// server.go is the worker (poll, executors, reports); masterlink.go its
// registration with the leading job master, which the client layer
// (internal/client.JobMaster) finds and follows; cacheblocks.go the env
// tasks run with, whose concurrent small CacheBlock calls to one block
// worker for one user go as one CacheBlocks.
//
// Each task runs with a context that is cancelled when the job is
// cancelled (the leader sends cancels in poll replies), when the leader
// retries the task elsewhere, or when the task's timeout passes.
package jobworker
