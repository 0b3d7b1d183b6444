package sdk

import "github.com/alluvium/alluvium/plans/spec"

// The built-in plans' configs, for Submit (Submit(ctx, "load",
// sdk.LoadConfig{Path: "/data"})), pipelines and policies. They are the
// plans' own types (plans/spec): the same fields, defaults and JSON the job
// master validates.
type (
	LoadConfig      = spec.LoadConfig
	PersistConfig   = spec.PersistConfig
	PersistFile     = spec.PersistFile
	ReplicateConfig = spec.ReplicateConfig
	MoveConfig      = spec.MoveConfig
	CopyConfig      = spec.CopyConfig
	// ExecConfig runs an allowed command per file (jobworker.exec.allow).
	ExecConfig = spec.ExecConfig
	SyncConfig = spec.SyncConfig
	// NoopConfig plans tasks over every file and runs nothing (a check of
	// the job service that touches no data).
	NoopConfig = spec.NoopConfig
	// Filter selects the files of load, persist, copy, move and sync
	// (include/exclude globs, sizes, ages); set it in their configs.
	Filter = spec.Filter
	// Batching tunes how load, persist and copy group small files into
	// tasks; the defaults are good.
	Batching = spec.Batching
)

// JobSubject is what a job works on, in a few words: its path, or
// "SRC -> DST" (empty for a plan whose config names neither).
func JobSubject(j *JobInfo) string { return spec.What([]byte(j.GetConfigJson())) }
