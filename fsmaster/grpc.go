package fsmaster

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// server adapts the master to the generated gRPC interfaces.
type server struct {
	api.UnimplementedFileSystemMasterServer
	api.UnimplementedBlockMasterServer
	m *Master
}

func (s *server) CreateDirectory(ctx context.Context, r *api.CreateDirectoryRequest) (*api.CreateDirectoryResponse, error) {
	info, err := s.m.ns.CreateDirectory(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.CreateDirectoryResponse{Info: info}, nil
}

func (s *server) CreateFile(ctx context.Context, r *api.CreateFileRequest) (*api.CreateFileResponse, error) {
	info, err := s.m.ns.CreateFile(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.CreateFileResponse{Info: info}, nil
}

func (s *server) CreateFiles(ctx context.Context, r *api.CreateFilesRequest) (*api.CreateFilesResponse, error) {
	return s.m.ns.CreateFiles(ctx, r)
}

func (s *server) CompleteFiles(ctx context.Context, r *api.CompleteFilesRequest) (*api.CompleteFilesResponse, error) {
	return s.m.ns.CompleteFiles(ctx, r)
}

func (s *server) GetStatuses(ctx context.Context, r *api.GetStatusesRequest) (*api.GetStatusesResponse, error) {
	return s.m.ns.GetStatuses(ctx, r)
}

func (s *server) CompleteFile(ctx context.Context, r *api.CompleteFileRequest) (*api.CompleteFileResponse, error) {
	info, err := s.m.ns.CompleteFile(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.CompleteFileResponse{Info: info}, nil
}

func (s *server) GetStatus(ctx context.Context, r *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	info, err := s.m.ns.GetStatus(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.GetStatusResponse{Info: info}, nil
}

func (s *server) ListStatus(ctx context.Context, r *api.ListStatusRequest) (*api.ListStatusResponse, error) {
	done, err := s.m.ns.gate.enter(ctx, "ls", r.GetPath())
	if err != nil {
		return nil, err
	}
	defer done()
	return s.m.ns.ListStatus(ctx, r)
}

func (s *server) Delete(ctx context.Context, r *api.DeleteRequest) (*api.DeleteResponse, error) {
	if r.GetRecursive() {
		done, err := s.m.ns.gate.enter(ctx, "delete", r.GetPath())
		if err != nil {
			return nil, err
		}
		defer done()
	}
	if err := s.m.ns.Delete(ctx, r); err != nil {
		return nil, err
	}
	return &api.DeleteResponse{}, nil
}

func (s *server) Rename(ctx context.Context, r *api.RenameRequest) (*api.RenameResponse, error) {
	info, err := s.m.ns.Rename(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.RenameResponse{Info: info}, nil
}

func (s *server) SetAttribute(ctx context.Context, r *api.SetAttributeRequest) (*api.SetAttributeResponse, error) {
	if r.GetRecursive() {
		done, err := s.m.ns.gate.enter(ctx, "setattr", r.GetPath())
		if err != nil {
			return nil, err
		}
		defer done()
	}
	info, err := s.m.ns.SetAttribute(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.SetAttributeResponse{Info: info}, nil
}

func (s *server) Mount(ctx context.Context, r *api.MountRequest) (*api.MountResponse, error) {
	done, err := s.m.ns.gate.enter(ctx, "mount", r.GetAlluviumPath())
	if err != nil {
		return nil, err
	}
	defer done()
	m, err := s.m.ns.Mount(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.MountResponse{Mount: m}, nil
}

func (s *server) Unmount(ctx context.Context, r *api.UnmountRequest) (*api.UnmountResponse, error) {
	if err := s.m.ns.Unmount(ctx, r); err != nil {
		return nil, err
	}
	return &api.UnmountResponse{}, nil
}

func (s *server) GetMountTable(ctx context.Context, r *api.GetMountTableRequest) (*api.GetMountTableResponse, error) {
	mounts := s.m.ns.MountTable()
	if !s.m.ns.caller(ctx).super {
		// Mount options may hold UFS credentials.
		for _, m := range mounts {
			m.Options = nil
		}
	}
	return &api.GetMountTableResponse{Mounts: mounts}, nil
}

func (s *server) Free(ctx context.Context, r *api.FreeRequest) (*api.FreeResponse, error) {
	if r.GetRecursive() {
		done, err := s.m.ns.gate.enter(ctx, "free", r.GetPath())
		if err != nil {
			return nil, err
		}
		defer done()
	}
	n, err := s.m.ns.Free(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.FreeResponse{BlocksFreed: n}, nil
}

func (s *server) GetMasterInfo(ctx context.Context, r *api.GetMasterInfoRequest) (*api.GetMasterInfoResponse, error) {
	return s.m.Info(), nil
}

func (s *server) AllocateUploadBlocks(ctx context.Context, r *api.AllocateUploadBlocksRequest) (*api.AllocateUploadBlocksResponse, error) {
	return s.m.ns.AllocateUploadBlocks(ctx, r)
}

func (s *server) CommitUploadPart(ctx context.Context, r *api.CommitUploadPartRequest) (*api.CommitUploadPartResponse, error) {
	p, err := s.m.ns.CommitUploadPart(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.CommitUploadPartResponse{Part: p}, nil
}

func (s *server) ListUploadParts(ctx context.Context, r *api.ListUploadPartsRequest) (*api.ListUploadPartsResponse, error) {
	return s.m.ns.ListUploadParts(ctx, r)
}

func (s *server) ListUploads(ctx context.Context, r *api.ListUploadsRequest) (*api.ListUploadsResponse, error) {
	return s.m.ns.ListUploads(ctx, r)
}

func (s *server) CheckAccess(ctx context.Context, r *api.CheckAccessRequest) (*api.CheckAccessResponse, error) {
	if r.GetRecursive() {
		done, err := s.m.ns.gate.enter(ctx, "access", r.GetPath())
		if err != nil {
			return nil, err
		}
		defer done()
	}
	if err := s.m.ns.CheckAccess(ctx, r); err != nil {
		return nil, err
	}
	return &api.CheckAccessResponse{}, nil
}

func (s *server) AuthorizeBlockAccess(ctx context.Context, r *api.AuthorizeBlockAccessRequest) (*api.AuthorizeBlockAccessResponse, error) {
	info, err := s.m.ns.AuthorizeBlockAccess(ctx, r)
	if err != nil {
		return nil, err
	}
	return &api.AuthorizeBlockAccessResponse{Info: info}, nil
}

func (s *server) Checkpoint(ctx context.Context, r *api.CheckpointRequest) (*api.CheckpointResponse, error) {
	s.m.ns.op("checkpoint")
	if err := s.m.ns.superOnly(ctx, "checkpoint", "/"); err != nil {
		return nil, err
	}
	path, seq, err := s.m.Checkpoint(ctx)
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Internal, "checkpoint: %v", err)
	}
	return &api.CheckpointResponse{Sequence: seq, Path: path}, nil
}

// ---- BlockMaster ----

func (s *server) RegisterWorker(ctx context.Context, r *api.RegisterWorkerRequest) (*api.RegisterWorkerResponse, error) {
	id, err := s.m.ns.RegisterWorker(ctx, r)
	if err != nil {
		return nil, err
	}
	every, ttl := s.m.ns.blocks.timing()
	return &api.RegisterWorkerResponse{WorkerId: id, HeartbeatIntervalMs: every.Milliseconds(), TtlMs: ttl.Milliseconds()}, nil
}

func (s *server) WorkerHeartbeat(ctx context.Context, r *api.WorkerHeartbeatRequest) (*api.WorkerHeartbeatResponse, error) {
	start := time.Now()
	defer s.m.hbTimer.Observe(ctx, start, 0)
	return s.heartbeat(r), nil
}

func (s *server) heartbeat(r *api.WorkerHeartbeatRequest) *api.WorkerHeartbeatResponse {
	resp := &api.WorkerHeartbeatResponse{}
	s.heartbeatInto(resp, r)
	return resp
}

// heartbeatInto answers heartbeat r in resp (reset first: nothing of an
// earlier answer stays).
func (s *server) heartbeatInto(resp *api.WorkerHeartbeatResponse, r *api.WorkerHeartbeatRequest) {
	resp.Reset()
	cmds := s.m.ns.WorkerHeartbeat(r)
	every, ttl := s.m.ns.blocks.timing()
	resp.Commands, resp.HeartbeatIntervalMs, resp.TtlMs = cmds, every.Milliseconds(), ttl.Milliseconds()
}

// WorkerHeartbeats answers a stream of block worker heartbeats, each as
// WorkerHeartbeat would, in order, on this one handler goroutine: the
// stream's setup is paid once, not every interval by every worker. The
// interceptor checked at its opening that this master leads; each
// heartbeat checks again, and a master that no longer leads (or is
// stopping) ends the stream so that the worker finds the leader.
//
// The answers to a stream share one message: Send encodes it before it
// returns (the rpc servers install no stats handler that could read it
// later), and a fresh one a heartbeat was a sixth of the FS master's
// garbage per heartbeat at 10,000 workers, and so of its collections.
func (s *server) WorkerHeartbeats(stream api.BlockMaster_WorkerHeartbeatsServer) error {
	ctx := stream.Context()
	resp := &api.WorkerHeartbeatResponse{}
	return rpc.ServeCalls(stream, func(r *api.WorkerHeartbeatRequest) (*api.WorkerHeartbeatResponse, error) {
		start := time.Now()
		if s.m.stopping.Load() {
			return nil, status.Error(codes.Unavailable, "worker heartbeats: this FS master is stopping (find the leader again)")
		}
		if e := s.m.emb; e != nil && !e.isLeader() {
			return nil, errStandby // the interceptor names the leader
		}
		s.heartbeatInto(resp, r)
		// Timed from the message's arrival here (the stream's context
		// carries no per-heartbeat arrival).
		s.m.hbTimer.Observe(ctx, start, 0)
		return resp, nil
	})
}

func (s *server) WorkerLost(ctx context.Context, r *api.WorkerLostRequest) (*api.WorkerLostResponse, error) {
	wasLive, heard := s.m.declareLost(r.GetWorkerId(), r.GetReason(), time.Duration(r.GetUnlessHeardWithinMs())*time.Millisecond)
	return &api.WorkerLostResponse{WasLive: wasLive, Heard: heard}, nil
}

func (s *server) CommitBlock(ctx context.Context, r *api.CommitBlockRequest) (*api.CommitBlockResponse, error) {
	if err := s.m.ns.CommitBlock(r); err != nil {
		return nil, err
	}
	return &api.CommitBlockResponse{}, nil
}

func (s *server) CommitBlocks(ctx context.Context, r *api.CommitBlocksRequest) (*api.CommitBlocksResponse, error) {
	return s.m.ns.CommitBlocks(r)
}

func (s *server) GetWorkerInfoList(ctx context.Context, r *api.GetWorkerInfoListRequest) (*api.GetWorkerInfoListResponse, error) {
	return &api.GetWorkerInfoListResponse{Workers: s.m.ns.blocks.workerInfos()}, nil
}

func (s *server) GetBlockInfo(ctx context.Context, r *api.GetBlockInfoRequest) (*api.GetBlockInfoResponse, error) {
	info, err := s.m.ns.BlockInfo(r.GetBlockId())
	if err != nil {
		return nil, err
	}
	return &api.GetBlockInfoResponse{Info: info}, nil
}

// GetLeader answers who leads. A single master (fsmaster.journal.type
// local) is always its own leader; its id is its advertised rpc address.
func (s *server) WatchCompletions(ctx context.Context, r *api.WatchCompletionsRequest) (*api.WatchCompletionsResponse, error) {
	s.m.ns.op("watch_completions")
	return s.m.ns.WatchCompletions(ctx, r)
}

func (s *server) GetLeader(ctx context.Context, r *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return s.m.leaderInfo(), nil
}
