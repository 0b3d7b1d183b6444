package fsmaster

import (
	"context"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// validBlock reports whether blockID belongs to an existing file (and, once
// the file is complete, to one of its blocks). Call with ns.mu held.
func (ns *namespace) validBlock(blockID int64) bool {
	if blockID < 0 {
		return false
	}
	n := ns.st.get(api.FileIDOfBlock(blockID))
	if n == nil || n.dir() {
		return false
	}
	return !n.completed() || ns.st.hasBlock(n, api.BlockIndex(blockID))
}

// keepBlock says whether every cached copy of block id must be pinned on
// its worker, never evicted: its file is pinned, or the cache holds the
// only copy of its bytes — not persisted, and not being streamed to the UFS
// as it is written (CACHE_THROUGH and THROUGH write the UFS copy beside the
// cache). Call with ns.mu held.
func (ns *namespace) keepBlock(blockID int64) bool {
	n := ns.st.get(api.FileIDOfBlock(blockID))
	if n == nil || n.dir() {
		return false
	}
	if n.pinned() {
		return true
	}
	if u := ns.st.upload(n); u != nil {
		// A part's blocks are the only copy of its bytes unless it is
		// recorded as written in place in the upload's UFS file.
		return !u.inPlaceBlock(api.BlockIndex(blockID), ns.st.blockSize(n))
	}
	return !n.persisted() && (n.completed() || !throughUFS(n.writeType()))
}

// RegisterWorker gives a worker its stable id (journaled the first time its
// host:port is seen) and replaces its block report.
func (ns *namespace) RegisterWorker(ctx context.Context, r *api.RegisterWorkerRequest) (int64, error) {
	ns.op("register-worker")
	a := r.GetAddress()
	if a.GetHost() == "" || a.GetRpcPort() <= 0 || a.GetRpcPort() > 65535 {
		return 0, status.Errorf(codes.InvalidArgument, "register worker: address %q:%d is not host:port", a.GetHost(), a.GetRpcPort())
	}
	key := workerKey(a)
	id, err := ns.workerID(ctx, key)
	if err != nil {
		return 0, err
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return 0, err
	}
	ns.blocks.register(id, a, r.GetTiers(), r.GetBlocks(), ns.validBlock)
	ns.log.Info("worker registered", zap.Int64("worker", id), zap.String("address", key), zap.Int("blocks", len(r.GetBlocks())))
	return id, nil
}

// WorkerHeartbeat applies a worker's changes and returns its commands.
// Most heartbeats carry none and get none: those take neither the
// namespace lock nor the block map's write lock.
func (ns *namespace) WorkerHeartbeat(r *api.WorkerHeartbeatRequest) []*api.WorkerCommand {
	if ns.blocks.heartbeatFast(r.GetWorkerId(), r.GetTiers(), r.GetAddedBlocks(), r.GetRemovedBlockIds()) {
		return nil
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.blocks.heartbeat(r.GetWorkerId(), r.GetTiers(), r.GetAddedBlocks(), r.GetRemovedBlockIds(), ns.validBlock)
}

// CommitBlock makes a block a worker just stored visible.
func (ns *namespace) CommitBlock(r *api.CommitBlockRequest) error {
	ns.op("commit-block")
	if r.GetLength() < 0 {
		return status.Errorf(codes.InvalidArgument, "commit block %d: negative length %d", r.GetBlockId(), r.GetLength())
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	valid := ns.validBlock(r.GetBlockId())
	if valid {
		if bs := ns.st.blockSize(ns.st.get(api.FileIDOfBlock(r.GetBlockId()))); r.GetLength() > bs {
			return status.Errorf(codes.InvalidArgument, "commit block %d: length %d above the file's block size %d", r.GetBlockId(), r.GetLength(), bs)
		}
	}
	if err := ns.blocks.commit(r.GetWorkerId(), r.GetBlockId(), r.GetLength(), r.GetTier(), r.GetPinned(), valid); err != nil {
		code := codes.NotFound
		if valid {
			code = codes.FailedPrecondition // the worker must register first
		}
		return status.Errorf(code, "commit block %d: %v", r.GetBlockId(), err)
	}
	return nil
}

// CommitBlocks makes many blocks of one worker visible (CacheBlocks). A
// block whose file is gone is skipped (and the worker told to drop it); a
// worker that must register first fails the whole call.
func (ns *namespace) CommitBlocks(r *api.CommitBlocksRequest) (*api.CommitBlocksResponse, error) {
	ns.op("commit-blocks")
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	resp := &api.CommitBlocksResponse{}
	for _, b := range r.GetBlocks() {
		if b.GetLength() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "commit block %d: negative length %d", b.GetBlockId(), b.GetLength())
		}
		valid := ns.validBlock(b.GetBlockId())
		if valid {
			if bs := ns.st.blockSize(ns.st.get(api.FileIDOfBlock(b.GetBlockId()))); b.GetLength() > bs {
				return nil, status.Errorf(codes.InvalidArgument, "commit block %d: length %d above the file's block size %d", b.GetBlockId(), b.GetLength(), bs)
			}
		}
		if err := ns.blocks.commit(r.GetWorkerId(), b.GetBlockId(), b.GetLength(), b.GetTier(), b.GetPinned(), valid); err != nil {
			if valid {
				return nil, status.Errorf(codes.FailedPrecondition, "commit blocks: %v", err)
			}
			resp.Skipped++
			continue
		}
		resp.Committed++
	}
	return resp, nil
}

// BlockInfo returns a block's length and locations.
func (ns *namespace) BlockInfo(blockID int64) (*api.BlockInfo, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if !ns.validBlock(blockID) {
		return nil, status.Errorf(codes.NotFound, "block %d: no such block (file %d index %d)", blockID, api.FileIDOfBlock(blockID), api.BlockIndex(blockID))
	}
	n := ns.st.get(api.FileIDOfBlock(blockID))
	ns.blocks.mu.RLock()
	defer ns.blocks.mu.RUnlock()
	info := &api.BlockInfo{BlockId: blockID, Locations: ns.blocks.locations(blockID)}
	if n.completed() {
		info.Length = ns.st.blockLength(n, api.BlockIndex(blockID))
	} else if e := ns.blocks.blocks[blockID]; e != nil {
		info.Length = e.length
	}
	return info, nil
}
