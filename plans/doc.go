// Package plans holds the job service's plans: one Go type per kind of job
// (load, persist, replicate, move, copy, sync, exec, noop), each behind the Plan
// interface and registered by name in this package's registry. Every plan
// here plans with the one streaming, batching planner of items.go (a tree
// walk or a plan's own file source, the plan's items per file, tasks
// placed beside the data or on the least loaded eligible worker: see
// workers.go) and runs its tasks' items with the one bounded runner there
// (runEach; noop's tasks, which do nothing, only count theirs); a plan's file holds only what is its own (load: which blocks
// lack copies, and CacheBlocks). Copy, move and sync walk source and
// destination together (merge.go) to do only what differs. Filters (plans/spec filter.go) are applied while listing; a dry
// run plans and counts (Batch and Result carry files, skipped files and
// deletes) while the job master keeps no task.
//
// # What a plan implements
//
// A plan is stateless; every method gets what it needs as arguments.
//
//   - Name: the word users type (`alluvium job submit load ...`).
//   - Validate(ctx, env, config): decode the job's JSON config strictly
//     (plans/spec holds the config types, defaults and the checks that need
//     no cluster), check it against the cluster (the path exists, enough
//     workers, ...) and return it normalized (defaults filled in, path
//     cleaned) with the typed limits the scheduler enforces (bandwidth,
//     replication, worker filters: spec.Valid) — the job master never reads
//     a config itself. Errors are gRPC status errors naming the field or
//     path at fault (InvalidArgument, NotFound, FailedPrecondition); nothing
//     is submitted when Validate fails. Validate runs on the job master
//     leader.
//   - NewPlanner(ctx, env, job): a Planner positioned at job.Cursor (nil: the
//     start of planning round job.Round). Planner.Next returns the next batch
//     of tasks with the cursor just after them; the job master commits both
//     to raft in one entry, so after a failover the new leader calls
//     NewPlanner with that cursor and planning continues with no duplicate
//     and no gap. A planner must stream: it pulls its input (directory
//     listings) page by page and never holds a whole listing in memory; its
//     cursor must stay small (kilobytes), because it is stored in every
//     batch.
//   - Run(ctx, env, task): do one task on a job worker. ctx is cancelled when
//     the job is cancelled or the task times out; a task must return soon
//     after. Run reports bytes as it goes (task.Progress), returns failed
//     paths in Result.Failed, and an error when the attempt failed. Tasks are
//     idempotent: a retried or duplicated task must be harmless.
//   - Done(ctx, env, job): asked when planning is done and every task of the
//     round has ended. true ends the job (COMPLETED, or FAILED when tasks
//     failed; an error FAILS it with that message: sync's --max-delete);
//     false starts another planning round (load --verify uses this to
//     re-check and re-load what is missing; sync to delete).
//
// Adding a plan is one file with the type and one Register line in
// plan.go's init.
//
// Plans reach the cluster only through Env, which the job master and job
// workers implement with the client layer (internal/client.Cluster), so
// plans never import a server role.
package plans
