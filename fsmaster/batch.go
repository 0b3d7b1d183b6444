package fsmaster

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// The batch calls: many files' creates, completes or stats in one call
// (the small files of a copy; the SDK's concurrent calls joined). Each file
// is checked and answered on its own, as its single call would be; a
// mutating batch takes the lock once and waits for the journal once (its
// entries are durable in order, so the last one's wait covers all). What
// concerns the whole call — this master does not lead, the journal failed —
// fails the whole call, so the client layer can send it again to the
// leader as it does a single call.

// result is one file's answer in a batch.
func result(info *api.FileInfo, err error) *api.CreateFileResult {
	return resultInto(&api.CreateFileResult{}, info, err)
}

// resultInto is result into r, a zero result: a batch allocates its
// answers together (one allocation per call, not one per file).
func resultInto(r *api.CreateFileResult, info *api.FileInfo, err error) *api.CreateFileResult {
	if err != nil {
		st := status.Convert(err)
		r.Code, r.Error = int32(st.Code()), st.Message()
		return r
	}
	r.Info = info
	return r
}

// CreateFiles creates many files, each as CreateFile would.
func (ns *namespace) CreateFiles(ctx context.Context, req *api.CreateFilesRequest) (*api.CreateFilesResponse, error) {
	files := req.GetFiles()
	resp := &api.CreateFilesResponse{Results: make([]*api.CreateFileResult, len(files))}
	answers := make([]api.CreateFileResult, len(files))
	args := make([]createReq, len(files))
	ok := make([]bool, len(files))
	for i, f := range files {
		ns.op("create")
		a, err := ns.createCheck(f)
		if err != nil {
			resp.Results[i] = resultInto(&answers[i], nil, err)
			continue
		}
		args[i], ok[i] = a, true
	}
	// The metadata of the paths: one read lock finds the batch's all
	// loaded (the usual case: files written in directories the
	// namespace holds), rather than a lock per file, each of which
	// waits out the applies of the batches in flight; the others are
	// learned as a single create learns its path.
	learned := make([]bool, len(files))
	ns.mu.RLock()
	for i := range files {
		learned[i] = ok[i] && ns.st.learned(args[i].load)
	}
	ns.mu.RUnlock()
	for i := range files {
		if !ok[i] || learned[i] {
			continue
		}
		if err := ns.ensureLoaded(ctx, args[i].load, api.LoadMetadataType_ONCE); err != nil {
			resp.Results[i] = resultInto(&answers[i], nil, err)
			ok[i] = false
		}
	}
	var last *txn
	if err := ns.lockUsable(); err != nil {
		return nil, err
	}
	release := ns.hold()
	var infos infoSlab
	for i, f := range files {
		if !ok[i] {
			continue
		}
		info, t, err := ns.createCompleteLocked(ctx, args[i], f, infos.next(len(files)-i))
		resp.Results[i] = resultInto(&answers[i], info, err)
		if err == nil {
			last = t
		}
	}
	wake := release()
	ns.mu.Unlock()
	wake()
	if err := last.wait(ctx); err != nil {
		return nil, err
	}
	return resp, nil
}

// CompleteFiles seals many files, each as CompleteFile would.
func (ns *namespace) CompleteFiles(ctx context.Context, req *api.CompleteFilesRequest) (*api.CompleteFilesResponse, error) {
	const op = "complete"
	files := req.GetFiles()
	resp := &api.CompleteFilesResponse{Results: make([]*api.CreateFileResult, len(files))}
	answers := make([]api.CreateFileResult, len(files))
	ps := make([]string, len(files))
	for i, f := range files {
		ns.op(op)
		p, err := ns.clean(op, f.GetPath())
		if err != nil {
			resp.Results[i] = resultInto(&answers[i], nil, err)
		}
		ps[i] = p
	}
	done := make([]completed, 0, len(files))
	var last *txn
	if err := ns.lockUsable(); err != nil {
		return nil, err
	}
	release := ns.hold()
	var infos infoSlab
	for i, f := range files {
		if resp.Results[i] != nil {
			continue
		}
		c, err := ns.completeLocked(ctx, ps[i], f, infos.next(len(files)-i))
		resp.Results[i] = resultInto(&answers[i], c.info, err)
		if err == nil {
			last = c.t
			done = append(done, c)
		}
	}
	wake := release()
	ns.mu.Unlock()
	wake()
	if err := last.wait(ctx); err != nil {
		return nil, err
	}
	for _, c := range done {
		ns.afterComplete(c)
	}
	return resp, nil
}

// GetStatuses answers many stats, each as GetStatus would. The paths the
// namespace does not hold yet are learned from the UFS first, all of them,
// and the call waits for the journal once (for the last entry: they are
// durable in order) — not once per path, one after another, as a loop of
// GetStatus would — then each stat is answered.
func (ns *namespace) GetStatuses(ctx context.Context, req *api.GetStatusesRequest) (*api.GetStatusesResponse, error) {
	reqs := req.GetRequests()
	resp := &api.GetStatusesResponse{Results: make([]*api.CreateFileResult, len(reqs))}
	if ns.statsKnown(ctx, reqs, resp.Results) == len(reqs) {
		return resp, nil
	}
	learned := make([]bool, len(reqs))
	var last *txn
	for i, r := range reqs {
		if resp.Results[i] != nil {
			continue // answered by statsKnown
		}
		lt := r.GetLoadMetadataType()
		if lt == api.LoadMetadataType_ALWAYS || lt == api.LoadMetadataType_NEVER {
			continue // answered alone below (ALWAYS syncs its path)
		}
		p, err := ns.clean("stat", r.GetPath())
		if err != nil {
			continue // answered below, with the error a single call gives
		}
		ns.mu.RLock()
		known := ns.st.lookup(p) != nil
		ns.mu.RUnlock()
		if known {
			continue
		}
		t, err := ns.learnPath(ctx, p, lt)
		if status.Code(err) == codes.Unavailable {
			return nil, err // see below
		}
		if err != nil {
			ns.op("stat")
			resp.Results[i] = result(nil, err)
			continue
		}
		learned[i] = true
		if t != nil && t.last != nil {
			last = t
		}
	}
	if err := last.wait(ctx); err != nil {
		return nil, err
	}
	for i, r := range reqs {
		if resp.Results[i] != nil {
			continue
		}
		info, err := ns.getStatus(ctx, r, learned[i])
		if status.Code(err) == codes.Unavailable {
			// Not leading (any more), or the journal failed: the whole
			// call is refused, as each of its single calls would be.
			return nil, err
		}
		resp.Results[i] = result(info, err)
	}
	return resp, nil
}

// statsChunk is the most stats statsKnown answers under one hold of the
// read lock: a writer waiting for the lock waits for at most this many.
const statsChunk = 64

// statsKnown answers, as getStatus would, the stats of paths the namespace
// holds (the common case: no UFS to ask, nothing to journal), taking the
// read lock once per statsChunk paths and walking each path once, with the
// answers allocated together; it leaves results[i] nil for the others
// (bad paths, ALWAYS, paths to learn, a master that does not lead) and
// returns how many it answered.
func (ns *namespace) statsKnown(ctx context.Context, reqs []*api.GetStatusRequest, results []*api.CreateFileResult) int {
	const op = "stat"
	answers := make([]api.CreateFileResult, len(reqs))
	var infos infoSlab
	done := 0
	for from := 0; from < len(reqs); from += statsChunk {
		to := min(from+statsChunk, len(reqs))
		ns.mu.RLock()
		if ns.usable() != nil {
			ns.mu.RUnlock()
			return done // answered one by one, with the error
		}
		for i := from; i < to; i++ {
			r := reqs[i]
			if r.GetLoadMetadataType() == api.LoadMetadataType_ALWAYS {
				continue
			}
			p, err := ns.cfg.pathLimits.Clean(r.GetPath())
			if err != nil {
				continue
			}
			n := ns.st.lookup(p)
			if n == nil {
				continue
			}
			ns.op(op)
			a := &answers[i]
			if info, err := ns.statLockedInto(ctx, op, p, n, r, infos.next(len(reqs)-i)); err != nil {
				st := status.Convert(err)
				a.Code, a.Error = int32(st.Code()), st.Message()
			} else {
				a.Info = info
			}
			results[i] = a
			done++
		}
		ns.mu.RUnlock()
	}
	return done
}
