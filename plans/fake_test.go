package plans

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// xfake extends the load tests' fake cluster with what persist, copy, move
// and replicate need: file contents (in the UFS and in cached blocks), the
// namespace calls that change files, mounts, and the block workers' data
// path calls. It keeps the real services' rules that the plans rely on:
// file ids guard SetAttribute, persist_from renames onto the UFS path,
// Rename refuses an existing destination, CreateFile overwrites only when
// asked.
type xfake struct {
	*fakeCluster
	ufs      map[string][]byte // UFS URI → bytes
	data     map[int64][]byte  // block id → bytes (the same on every worker)
	mounts   []*api.MountPointInfo
	failUFS  map[string]string // UFS URI prefix → error of writes there
	writes   map[string]int    // worker address → WriteUfsFileFrom calls
	copies   int               // CopyBlockFrom calls
	ufsReads int               // block sources read from the UFS
	onCopy   func()            // called as WriteUfsFileFrom returns (to race with the caller)
	corrupt  bool              // WriteUfsFileFrom stores a flipped byte
	batches  int               // CreateFiles calls
}

func newXFake(workers int) *xfake {
	x := &xfake{fakeCluster: newFakeCluster(workers), ufs: map[string][]byte{}, data: map[int64][]byte{},
		failUFS: map[string]string{}, writes: map[string]int{}}
	x.mounts = []*api.MountPointInfo{{AlluviumPath: "/", UfsUri: "file:///ufs", MountId: 1}}
	x.nodes["/"].UfsPath, x.nodes["/"].MountId = "file:///ufs", 1
	return x
}

// mount adds a mount (and its directory).
func (x *xfake) mount(p, uri string, id int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mounts = append(x.mounts, &api.MountPointInfo{AlluviumPath: p, UfsUri: uri, MountId: id})
	x.mkdirsLocked(p)
	x.nodes[p].MountPoint = true
	x.kids = nil
}

func content(seed string, n int) []byte {
	b := make([]byte, n)
	h := sha256.Sum256([]byte(seed))
	for i := range b {
		b[i] = h[i%32] ^ byte(i/32)
	}
	return b
}

// put adds a file with data: persisted (bytes in the UFS) and/or cached on
// the given workers.
func (x *xfake) put(p string, data []byte, bs int64, persist bool, cachedOn ...int64) *api.FileInfo {
	fi := x.file(p, int64(len(data)), bs)
	x.mu.Lock()
	defer x.mu.Unlock()
	_, fi.UfsPath = mountFor(x.mounts, p)
	m, _ := mountFor(x.mounts, p)
	fi.MountId = m.GetMountId()
	fi.UfsFingerprint = fmt.Sprintf("fp-%d", len(data))
	if persist {
		x.ufs[fi.UfsPath] = append([]byte(nil), data...)
	} else {
		fi.PersistenceState = api.PersistenceState_NOT_PERSISTED
		fi.UfsFingerprint = ""
	}
	for i, id := range fi.BlockIds {
		end := min(int64(i+1)*bs, int64(len(data)))
		x.data[id] = append([]byte(nil), data[int64(i)*bs:end]...)
		for _, w := range cachedOn {
			if x.locs[id] == nil {
				x.locs[id] = map[int64]bool{}
			}
			x.locs[id][w] = true
		}
	}
	return fi
}

func (x *xfake) workerID(addr string) int64 {
	for _, w := range x.workers {
		if waddr(int(w.Id)) == addr {
			return w.Id
		}
	}
	return 0
}

// withAddrs fills block locations' addresses (the base fake gives ids only).
func (x *xfake) withAddrs(fi *api.FileInfo) {
	for _, b := range fi.GetFileBlockInfos() {
		for _, l := range b.GetBlockInfo().GetLocations() {
			l.Address = &api.WorkerNetAddress{Host: fmt.Sprintf("h%d", l.GetWorkerId()), RpcPort: 29999}
		}
	}
}

type xenv struct{ x *xfake }

func (e xenv) FS() api.FileSystemMasterClient     { return xfs{fakeFS: fakeFS{c: e.x.fakeCluster}, x: e.x} }
func (e xenv) BlockMaster() api.BlockMasterClient { return fakeBM{c: e.x.fakeCluster} }
func (e xenv) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	return xbw{fakeBW: fakeBW{c: e.x.fakeCluster, addr: addr}, x: e.x}, nil
}

type xfs struct {
	fakeFS
	x *xfake
}

func (f xfs) GetStatus(ctx context.Context, req *api.GetStatusRequest, o ...grpc.CallOption) (*api.GetStatusResponse, error) {
	resp, err := f.fakeFS.GetStatus(ctx, req, o...)
	if err == nil {
		f.x.mu.Lock()
		f.x.withAddrs(resp.Info)
		f.x.mu.Unlock()
	}
	return resp, err
}

func (f xfs) ListStatus(ctx context.Context, req *api.ListStatusRequest, o ...grpc.CallOption) (*api.ListStatusResponse, error) {
	resp, err := f.fakeFS.ListStatus(ctx, req, o...)
	if err == nil {
		f.x.mu.Lock()
		for _, fi := range resp.Infos {
			f.x.withAddrs(fi)
		}
		f.x.mu.Unlock()
	}
	return resp, err
}

func (f xfs) GetMountTable(context.Context, *api.GetMountTableRequest, ...grpc.CallOption) (*api.GetMountTableResponse, error) {
	f.x.mu.Lock()
	defer f.x.mu.Unlock()
	return &api.GetMountTableResponse{Mounts: f.x.mounts}, nil
}

func (f xfs) CreateDirectory(_ context.Context, req *api.CreateDirectoryRequest, _ ...grpc.CallOption) (*api.CreateDirectoryResponse, error) {
	x := f.x
	x.mu.Lock()
	defer x.mu.Unlock()
	if n, ok := x.nodes[req.GetPath()]; ok {
		if n.Folder && req.GetAllowExists() {
			return &api.CreateDirectoryResponse{Info: n}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "mkdir %s: exists", req.GetPath())
	}
	x.mkdirsLocked(req.GetPath())
	x.kids = nil
	return &api.CreateDirectoryResponse{Info: x.nodes[req.GetPath()]}, nil
}

func (f xfs) CreateFile(_ context.Context, req *api.CreateFileRequest, _ ...grpc.CallOption) (*api.CreateFileResponse, error) {
	x := f.x
	x.mu.Lock()
	defer x.mu.Unlock()
	p := req.GetPath()
	if old, ok := x.nodes[p]; ok {
		if old.Folder || !req.GetOverwrite() {
			return nil, status.Errorf(codes.AlreadyExists, "create %s: already exists", p)
		}
		x.removeLocked(p, true)
	}
	parent := parentOf(p)
	if pn, ok := x.nodes[parent]; !ok && !req.GetRecursive() {
		return nil, status.Errorf(codes.NotFound, "create %s: no parent", p)
	} else if ok && !pn.Folder {
		return nil, status.Errorf(codes.FailedPrecondition, "create %s: parent is a file", p)
	}
	x.mkdirsLocked(parent)
	id := x.nextID
	x.nextID++
	_, name := paths.Split(p)
	m, uri := mountFor(x.mounts, p)
	st := api.PersistenceState_NOT_PERSISTED
	if req.GetWriteType() == api.WriteType_ASYNC_THROUGH {
		st = api.PersistenceState_TO_BE_PERSISTED
	}
	bs := req.GetBlockSizeBytes()
	if bs == 0 {
		bs = 1000
	}
	fi := &api.FileInfo{Path: p, Name: name, FileId: id, BlockSizeBytes: bs, UfsPath: uri, MountId: m.GetMountId(), PersistenceState: st, Mode: req.GetMode(),
		LastModificationTimeMs: 1_000_000 + id}
	if req.GetComplete() {
		fi.Completed, fi.Length = true, req.GetLength()
		if mt := req.GetLastModificationTimeMs(); mt > 0 {
			fi.LastModificationTimeMs = mt
		}
		for i := int64(0); i*bs < fi.Length; i++ {
			fi.BlockIds = append(fi.BlockIds, api.BlockID(id, i))
		}
		fi.PersistenceState, fi.UfsFingerprint = api.PersistenceState_PERSISTED, req.GetUfsFingerprint()
	}
	x.nodes[p] = fi
	x.kids = nil
	return &api.CreateFileResponse{Info: proto.Clone(fi).(*api.FileInfo)}, nil
}

func (f xfs) CompleteFile(_ context.Context, req *api.CompleteFileRequest, _ ...grpc.CallOption) (*api.CompleteFileResponse, error) {
	x := f.x
	x.mu.Lock()
	defer x.mu.Unlock()
	fi, ok := x.nodes[req.GetPath()]
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "complete %s: no such file", req.GetPath())
	case req.GetFileId() != 0 && req.GetFileId() != fi.FileId:
		return nil, status.Errorf(codes.FailedPrecondition, "complete %s: replaced", req.GetPath())
	case fi.Completed:
		return nil, status.Errorf(codes.FailedPrecondition, "complete %s: already complete", req.GetPath())
	}
	fi.Completed, fi.Length = true, req.GetLength()
	if mt := req.GetLastModificationTimeMs(); mt > 0 {
		fi.LastModificationTimeMs = mt
	}
	fi.BlockIds = nil
	for i := int64(0); i*fi.BlockSizeBytes < fi.Length; i++ {
		fi.BlockIds = append(fi.BlockIds, api.BlockID(fi.FileId, i))
	}
	if req.GetUfsFingerprint() != "" {
		fi.PersistenceState = api.PersistenceState_PERSISTED
		fi.UfsFingerprint = req.GetUfsFingerprint()
	}
	return &api.CompleteFileResponse{Info: proto.Clone(fi).(*api.FileInfo)}, nil
}

// removeLocked drops p and its subtree (and their UFS bytes unless
// alluvium-only).
func (x *xfake) removeLocked(p string, alluviumOnly bool) {
	for q, fi := range x.nodes {
		if q == p || strings.HasPrefix(q, p+"/") {
			for _, id := range fi.GetBlockIds() {
				delete(x.locs, id)
			}
			if !alluviumOnly {
				delete(x.ufs, fi.GetUfsPath())
			}
			delete(x.nodes, q)
		}
	}
	x.kids = nil
}

func (f xfs) Delete(_ context.Context, req *api.DeleteRequest, _ ...grpc.CallOption) (*api.DeleteResponse, error) {
	x := f.x
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.nodes[req.GetPath()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "delete %s: no such file or directory", req.GetPath())
	}
	if req.GetFileId() != 0 && n.FileId != req.GetFileId() {
		return nil, status.Errorf(codes.FailedPrecondition, "delete %s: file %d is gone", req.GetPath(), req.GetFileId())
	}
	if n.Folder && !req.GetRecursive() {
		for q := range x.nodes {
			if strings.HasPrefix(q, req.GetPath()+"/") {
				return nil, status.Errorf(codes.FailedPrecondition, "delete %s: directory not empty", req.GetPath())
			}
		}
	}
	x.removeLocked(req.GetPath(), req.GetAlluviumOnly())
	return &api.DeleteResponse{}, nil
}

func (f xfs) Rename(_ context.Context, req *api.RenameRequest, _ ...grpc.CallOption) (*api.RenameResponse, error) {
	x := f.x
	x.mu.Lock()
	defer x.mu.Unlock()
	src, dst := req.GetSrc(), req.GetDst()
	if _, ok := x.nodes[src]; !ok {
		return nil, status.Errorf(codes.NotFound, "rename %s: no such file", src)
	}
	if old, ok := x.nodes[dst]; ok {
		if !req.GetOverwrite() || old.Folder || x.nodes[src].Folder {
			return nil, status.Errorf(codes.AlreadyExists, "rename %s to %s: %s exists", src, dst, dst)
		}
		x.removeLocked(dst, false)
	}
	if pn, ok := x.nodes[parentOf(dst)]; !ok || !pn.Folder {
		return nil, status.Errorf(codes.NotFound, "rename %s to %s: parent missing", src, dst)
	}
	ms, _ := mountFor(x.mounts, src)
	md, _ := mountFor(x.mounts, dst)
	if ms.GetMountId() != md.GetMountId() {
		return nil, status.Errorf(codes.InvalidArgument, "rename %s to %s: across mounts", src, dst)
	}
	var moved []string
	for q := range x.nodes {
		if q == src || strings.HasPrefix(q, src+"/") {
			moved = append(moved, q)
		}
	}
	sort.Strings(moved)
	for _, q := range moved {
		fi := x.nodes[q]
		delete(x.nodes, q)
		np := dst + strings.TrimPrefix(q, src)
		_, uri := mountFor(x.mounts, np)
		if b, ok := x.ufs[fi.UfsPath]; ok && fi.PersistenceState == api.PersistenceState_PERSISTED {
			delete(x.ufs, fi.UfsPath)
			x.ufs[uri] = b
		}
		fi.Path, fi.UfsPath = np, uri
		_, fi.Name = paths.Split(np)
		x.nodes[np] = fi
	}
	x.kids = nil
	return &api.RenameResponse{Info: proto.Clone(x.nodes[dst]).(*api.FileInfo)}, nil
}

func (f xfs) SetAttribute(_ context.Context, req *api.SetAttributeRequest, _ ...grpc.CallOption) (*api.SetAttributeResponse, error) {
	x := f.x
	x.mu.Lock()
	defer x.mu.Unlock()
	fi, ok := x.nodes[req.GetPath()]
	if !ok || req.GetFileId() != 0 && fi.FileId != req.GetFileId() {
		delete(x.ufs, req.GetPersistFrom())
		if !ok {
			return nil, status.Errorf(codes.NotFound, "setattr %s: no such file", req.GetPath())
		}
		return nil, status.Errorf(codes.FailedPrecondition, "setattr %s: file %d is gone", req.GetPath(), req.GetFileId())
	}
	if from := req.GetPersistFrom(); from != "" {
		b, ok := x.ufs[from]
		if !ok || int64(len(b)) != fi.Length {
			return nil, status.Errorf(codes.FailedPrecondition, "persist %s: the copy %s has the wrong bytes", fi.Path, from)
		}
		delete(x.ufs, from)
		x.ufs[fi.UfsPath] = b
		fi.UfsFingerprint = fmt.Sprintf("fp-%d", len(b))
	}
	if req.PersistenceState != nil {
		fi.PersistenceState = req.GetPersistenceState()
	}
	if req.Pinned != nil {
		fi.Pinned = req.GetPinned()
	}
	return &api.SetAttributeResponse{Info: proto.Clone(fi).(*api.FileInfo)}, nil
}

type xbw struct {
	fakeBW
	x *xfake
}

func (w xbw) check() error {
	if w.x.dead[w.addr] {
		return status.Error(codes.Unavailable, "connection refused")
	}
	return nil
}

func (w xbw) addLocLocked(id int64) {
	if w.x.locs[id] == nil {
		w.x.locs[id] = map[int64]bool{}
	}
	w.x.locs[id][w.x.workerID(w.addr)] = true
}

func (w xbw) CacheBlock(ctx context.Context, req *api.CacheBlockRequest, o ...grpc.CallOption) (*api.CacheBlockResponse, error) {
	resp, err := w.fakeBW.CacheBlock(ctx, req, o...)
	if err != nil {
		return nil, err
	}
	w.x.mu.Lock()
	defer w.x.mu.Unlock()
	if b, ok := w.x.ufs[req.GetSource().GetUfsPath()]; ok {
		s := req.GetSource()
		w.x.data[req.GetBlockId()] = append([]byte(nil), b[s.GetOffset():s.GetOffset()+s.GetLength()]...)
	}
	return resp, nil
}

func (w xbw) CacheBlocks(ctx context.Context, req *api.CacheBlocksRequest, o ...grpc.CallOption) (*api.CacheBlocksResponse, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	resp := &api.CacheBlocksResponse{}
	for _, b := range req.GetBlocks() {
		r := &api.CacheBlockResult{BlockId: b.GetBlockId()}
		if _, err := w.CacheBlock(ctx, b); err != nil {
			r.Error = err.Error()
		} else {
			r.Bytes = b.GetSource().GetLength()
		}
		resp.Results = append(resp.Results, r)
	}
	w.x.mu.Lock()
	w.x.cached[w.addr+"/batch"]++
	w.x.mu.Unlock()
	return resp, nil
}

func (w xbw) CopyBlockFrom(_ context.Context, req *api.CopyBlockFromRequest, _ ...grpc.CallOption) (*api.CopyBlockFromResponse, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	x := w.x
	x.mu.Lock()
	defer x.mu.Unlock()
	src := req.GetSourceBlockId()
	if src == 0 {
		src = req.GetBlockId()
	}
	from := req.GetSource()
	if from == "" {
		from = w.addr
	}
	if x.dead[from] || !x.locs[src][x.workerID(from)] {
		return nil, status.Errorf(codes.NotFound, "block %d not on %s", src, from)
	}
	x.copies++
	x.data[req.GetBlockId()] = append([]byte(nil), x.data[src]...)
	w.addLocLocked(req.GetBlockId())
	return &api.CopyBlockFromResponse{Bytes: int64(len(x.data[src]))}, nil
}

func (w xbw) RemoveBlock(_ context.Context, req *api.RemoveBlockRequest, _ ...grpc.CallOption) (*api.RemoveBlockResponse, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	w.x.mu.Lock()
	defer w.x.mu.Unlock()
	id := w.x.workerID(w.addr)
	if !w.x.locs[req.GetBlockId()][id] {
		return nil, status.Errorf(codes.NotFound, "remove block %d: not cached", req.GetBlockId())
	}
	delete(w.x.locs[req.GetBlockId()], id)
	return &api.RemoveBlockResponse{}, nil
}

// readLocked reads a block source as the real worker does.
func (w xbw) readLocked(s *api.BlockSource) ([]byte, error) {
	x := w.x
	cands := append([]string{w.addr}, s.GetWorkers()...)
	for _, a := range cands {
		if !x.dead[a] && x.locs[s.GetBlockId()][x.workerID(a)] {
			b := x.data[s.GetBlockId()]
			if int64(len(b)) != s.GetLength() {
				return nil, status.Errorf(codes.DataLoss, "block %d has %d bytes, want %d", s.GetBlockId(), len(b), s.GetLength())
			}
			return b, nil
		}
	}
	if u := s.GetUfs(); u != nil {
		b, ok := x.ufs[u.GetUfsPath()]
		if !ok || u.GetOffset()+u.GetLength() > int64(len(b)) {
			return nil, status.Errorf(codes.NotFound, "ufs %s: missing or short", u.GetUfsPath())
		}
		x.ufsReads++
		return b[u.GetOffset() : u.GetOffset()+u.GetLength()], nil
	}
	if s.GetLength() == 0 {
		return nil, nil
	}
	return nil, status.Errorf(codes.NotFound, "block %d: no source", s.GetBlockId())
}

func (w xbw) WriteUfsFileFrom(_ context.Context, req *api.WriteUfsFileFromRequest, _ ...grpc.CallOption) (*api.WriteUfsFileFromResponse, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	x := w.x
	if hook := x.onCopy; hook != nil {
		defer hook() // after the bytes are written, before the caller goes on
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.writes[w.addr]++
	dst := req.GetDest().GetUfsPath()
	for prefix, e := range x.failUFS {
		if strings.HasPrefix(dst, prefix) {
			return nil, status.Errorf(codes.PermissionDenied, "ufs %s: %s", dst, e)
		}
	}
	if _, ok := x.ufs[dst]; ok && !req.GetDest().GetOverwrite() {
		return nil, status.Errorf(codes.AlreadyExists, "ufs %s: exists", dst)
	}
	var buf bytes.Buffer
	for _, s := range req.GetSources() {
		b, err := w.readLocked(s)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	out := append([]byte(nil), buf.Bytes()...)
	sum := sha256.Sum256(out)
	if x.corrupt && len(out) > 0 {
		out[0] ^= 0xff
	}
	resp := &api.WriteUfsFileFromResponse{Length: int64(len(out)), UfsFingerprint: fmt.Sprintf("fp-%d", len(out))}
	if req.GetChecksum() {
		resp.Sha256 = hex.EncodeToString(sum[:])
		back := sha256.Sum256(out)
		if back != sum {
			return nil, status.Errorf(codes.DataLoss, "ufs %s: checksum mismatch", dst)
		}
	}
	x.ufs[dst] = out
	return resp, nil
}

func (w xbw) HashBlocks(_ context.Context, req *api.HashBlocksRequest, _ ...grpc.CallOption) (*api.HashBlocksResponse, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	w.x.mu.Lock()
	defer w.x.mu.Unlock()
	h := sha256.New()
	var n int64
	for _, s := range req.GetSources() {
		b, err := w.readLocked(s)
		if err != nil {
			return nil, err
		}
		h.Write(b)
		n += int64(len(b))
	}
	return &api.HashBlocksResponse{Length: n, Sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

// runJob plans a job to the end (restarting the planner from its cursor
// after every batch) and runs every task, retrying a failed one up to
// attempts times as the job master would; it returns the failed paths.
func runJob(ctx context.Context, p Plan, env Env, cfg []byte, attempts int, local string) (tasks int, failed []*api.FailedPath, err error) {
	st, err := runJobStats(ctx, p, env, cfg, attempts, local)
	return st.tasks, st.failed, err
}

// jobStats is what runJobStats saw of a job, counted as the job master
// counts them (JobInfo's files_total, files_skipped, ...).
type jobStats struct {
	tasks                               int
	rounds                              int32 // rounds planned
	failed                              []*api.FailedPath
	files, skipped, bytesSkipped, bytes int64 // bytes: copied (Result.Bytes)
	deletes                             int64
}

// runJobStats runs a job as the job master would: rounds of planning then
// tasks (each tried up to attempts times), until the plan is done. A dry
// run (the config's Limits) plans and counts and runs no task.
func runJobStats(ctx context.Context, p Plan, env Env, cfg []byte, attempts int, local string) (st jobStats, err error) {
	v, err := p.Validate(ctx, env, cfg)
	norm := v.Config
	if err != nil {
		return st, err
	}
	dry := v.Limits.DryRun
	for round := int32(0); ; round++ {
		var cursor []byte
		var specs []TaskSpec
		roundFailed := 0
		for {
			pl, err := p.NewPlanner(ctx, env, Job{ID: 7, Config: norm, Cursor: cursor, Round: round, CreatedMs: fakeNowMs, Deletes: st.deletes})
			if err != nil {
				return st, err
			}
			b, err := pl.Next(ctx, 3)
			if err != nil {
				return st, err
			}
			specs = append(specs, b.Tasks...)
			st.failed = append(st.failed, b.Failed...)
			st.skipped += b.FilesSkipped
			st.bytesSkipped += b.BytesSkipped
			st.deletes += b.Deletes
			roundFailed += len(b.Failed)
			cursor = b.Cursor
			if b.Done {
				break
			}
		}
		for i, s := range specs {
			st.files += s.Files
			if dry {
				continue
			}
			st.tasks++
			var last Result
			var rerr error
			for a := 1; a <= attempts; a++ {
				l := local
				if l == "" {
					l = s.BlockWorkerAddress
				}
				last, rerr = p.Run(ctx, env, &Task{JobID: 7, TaskID: int64(i + 1), Attempt: int32(a), Args: s.Args, Config: norm, LocalBlockWorker: l})
				if rerr == nil {
					break
				}
			}
			st.bytes += last.Bytes
			st.skipped += last.FilesSkipped
			st.bytesSkipped += last.BytesSkipped
			st.files -= last.FilesSkipped
			if rerr != nil {
				roundFailed++
				if len(last.Failed) > 0 {
					st.failed = append(st.failed, last.Failed...)
				} else {
					st.failed = append(st.failed, &api.FailedPath{Path: s.Description, Error: rerr.Error()})
				}
			}
		}
		st.rounds = round + 1
		done, err := p.Done(ctx, env, Job{ID: 7, Config: norm, Cursor: cursor, Round: round, RoundFailed: int64(roundFailed), Tasks: int64(st.tasks), CreatedMs: fakeNowMs, Deletes: st.deletes})
		if err != nil || done {
			return st, err
		}
	}
}

// fakeNowMs is when the fake's jobs are created (filter ages count from it).
const fakeNowMs = 2_000_000_000

// CacheBlocks makes the load tests' fake worker take batches too.
func (w fakeBW) CacheBlocks(ctx context.Context, req *api.CacheBlocksRequest, o ...grpc.CallOption) (*api.CacheBlocksResponse, error) {
	w.c.mu.Lock()
	dead := w.c.dead[w.addr]
	w.c.mu.Unlock()
	if dead {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	resp := &api.CacheBlocksResponse{}
	for _, b := range req.GetBlocks() {
		r := &api.CacheBlockResult{BlockId: b.GetBlockId()}
		if _, err := w.CacheBlock(ctx, b, o...); err != nil {
			r.Error = err.Error()
		} else {
			r.Bytes = b.GetSource().GetLength()
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f xfs) CreateFiles(ctx context.Context, req *api.CreateFilesRequest, _ ...grpc.CallOption) (*api.CreateFilesResponse, error) {
	f.x.mu.Lock()
	f.x.batches++
	f.x.mu.Unlock()
	resp := &api.CreateFilesResponse{}
	for _, r := range req.GetFiles() {
		cr, err := f.CreateFile(ctx, r)
		if err != nil {
			st := status.Convert(err)
			resp.Results = append(resp.Results, &api.CreateFileResult{Code: int32(st.Code()), Error: st.Message()})
			continue
		}
		resp.Results = append(resp.Results, &api.CreateFileResult{Info: cr.GetInfo()})
	}
	return resp, nil
}

func (w xbw) WriteUfsFilesFrom(ctx context.Context, req *api.WriteUfsFilesFromRequest, _ ...grpc.CallOption) (*api.WriteUfsFilesFromResponse, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	resp := &api.WriteUfsFilesFromResponse{}
	for _, f := range req.GetFiles() {
		r, err := w.WriteUfsFileFrom(ctx, f)
		if err != nil {
			st := status.Convert(err)
			resp.Results = append(resp.Results, &api.WriteUfsFileFromResult{Code: int32(st.Code()), Error: st.Message()})
			continue
		}
		resp.Results = append(resp.Results, &api.WriteUfsFileFromResult{Response: r})
	}
	return resp, nil
}
