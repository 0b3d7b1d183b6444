// Package blockworker is the block worker role: a tiered local cache of
// blocks (MEM, SSD, HDD directories, each with a byte quota) served over
// gRPC (api.BlockWorker).
//
// It owns:
//   - the store (store.go): one file per block in a tier directory, new
//     blocks in the fastest tier with room, writes in a temp file that is
//     invisible until committed by rename, LRU eviction behind the Evictor
//     interface that never takes pinned blocks or blocks in use;
//   - reads through to the UFS on a miss (fill.go): one shared copy per
//     block however many readers and CacheBlock calls ask at once;
//   - the link to the FS master (masterlink.go): full report on registration,
//     deltas on heartbeats (over one WorkerHeartbeats stream to the leader,
//     internal/client.Heartbeats), CommitBlock right after a block is stored,
//     REGISTER and REMOVE_BLOCKS commands;
//   - UFS access by mount id (mounts.go), writes into the UFS for clients
//     (WriteUfsFile), and short-circuit leases for clients on this host.
//
// It talks to the FS master only through api.BlockMaster and
// api.FileSystemMaster (GetMountTable).
package blockworker
