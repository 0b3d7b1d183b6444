package fsmaster

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// A multipart upload (S3's) is a file written aside (see overwrite.go)
// whose bytes come as parts, in any order, through any gateway:
//
//   - AllocateUploadBlocks gives a part the next free block indices of the
//     upload (journaled), so no two parts — two gateways uploading part 3
//     at once, a retry racing the first attempt — ever write one block;
//   - the part's bytes go to block workers as blocks of the upload, and
//     CommitUploadPart records the part: its number, first block, length
//     and the client's tag (its ETag); a part of the same number recorded
//     before is replaced and its blocks dropped;
//   - CompleteFile names the parts in order: their blocks become the file's
//     extents (layout.go) and the file is swapped in at its path, in one
//     journal entry. No byte moves; blocks of parts not named go.
//
// The upload's state lives in the inode's rare attributes, is journaled
// with each change and kept in checkpoints, so every gateway sees it and a
// gateway that dies mid-upload loses nothing. Only the upload's owner (or
// a superuser) adds parts, lists, completes or aborts it; adding a part
// also needs write permission on the directory, as creating the file did;
// and the bytes staged in a user's uploads are bounded
// (fsmaster.multipart.max-staged-bytes).

// maxPartNumber is S3's highest part number.
const maxPartNumber = 10000

// maxPartTag bounds the tag a client keeps with a part.
const maxPartTag = 4 << 10

// uploadState is a multipart upload's state.
type uploadState struct {
	nextBlock int64 // the next block index to give out
	staged    int64 // bytes of the blocks given out and not dropped
	parts     map[int32]*api.UploadPartEntry
	// In-place UFS regions (write types with a UFS copy, on a UFS that
	// writes regions): part n of an upload whose parts are all grid bytes
	// (the last shorter) belongs at (n-1)*grid of the object, so its first
	// attempt writes its bytes there too, and a completion with every part
	// in place moves no byte. inPlace: part number → that attempt's first
	// block.
	grid    int64
	inPlace map[int32]int64
}

// placed reports whether part p is the attempt written in place, and its
// offset in the UFS file.
func (u *uploadState) placed(p *api.UploadPartEntry) (bool, int64) {
	first, ok := u.inPlace[p.GetPartNumber()]
	if !ok || first != p.GetFirst() {
		return false, 0
	}
	return true, int64(p.GetPartNumber()-1) * u.grid
}

// inPlaceBlock says whether block index idx belongs to a recorded part
// whose bytes are in place in the upload's UFS file (a part still being
// written is not yet: its blocks may be all there is of it).
func (u *uploadState) inPlaceBlock(idx, bs int64) bool {
	for num, first := range u.inPlace {
		p := u.parts[num]
		if p != nil && p.GetFirst() == first && idx >= first && idx < first+blockCountOf(p.GetLength(), bs) {
			return true
		}
	}
	return false
}

// upload returns n's upload state, or nil when n is not an upload.
func (s *State) upload(n *inode) *uploadState {
	if e := s.ext(n); e != nil {
		return e.upload
	}
	return nil
}

// uploadOf builds the state of an upload from its creation entry (a
// checkpoint record carries the state).
func uploadOf(f *api.InodeFileEntry) (*uploadState, error) {
	u := &uploadState{parts: map[int32]*api.UploadPartEntry{}}
	st := f.GetUploadState()
	if st == nil {
		return u, nil
	}
	u.nextBlock, u.staged, u.grid = st.GetNextBlock(), st.GetStagedBytes(), st.GetGrid()
	for n, first := range st.GetInPlace() {
		if n < 1 || n > maxPartNumber || first < 0 || first >= u.nextBlock || u.grid <= 0 {
			return nil, fmt.Errorf("in-place part %d at block %d (grid %d, next block %d)", n, first, u.grid, u.nextBlock)
		}
		if u.inPlace == nil {
			u.inPlace = map[int32]int64{}
		}
		u.inPlace[n] = first
	}
	for _, p := range st.GetParts() {
		if err := u.checkPart(p, f.GetBlockSizeBytes()); err != nil {
			return nil, err
		}
		if _, dup := u.parts[p.GetPartNumber()]; dup {
			return nil, fmt.Errorf("part %d recorded twice", p.GetPartNumber())
		}
		u.parts[p.GetPartNumber()] = p
	}
	return u, nil
}

// checkPart checks a part against the blocks given out.
func (u *uploadState) checkPart(p *api.UploadPartEntry, bs int64) error {
	n := blockCountOf(p.GetLength(), bs)
	switch {
	case p.GetPartNumber() < 1 || p.GetPartNumber() > maxPartNumber:
		return fmt.Errorf("part number %d: want 1 to %d", p.GetPartNumber(), maxPartNumber)
	case p.GetLength() < 0 || p.GetFirst() < 0:
		return fmt.Errorf("part %d: first block %d, length %d", p.GetPartNumber(), p.GetFirst(), p.GetLength())
	case p.GetFirst()+n > u.nextBlock:
		return fmt.Errorf("part %d: blocks %d..%d were not given out (next %d)", p.GetPartNumber(), p.GetFirst(), p.GetFirst()+n-1, u.nextBlock)
	case len(p.GetTag()) > maxPartTag:
		return fmt.Errorf("part %d: tag of %d bytes", p.GetPartNumber(), len(p.GetTag()))
	}
	return nil
}

// uploadRecord is n's upload state for a checkpoint record (nil: none).
func (s *State) uploadRecord(n *inode) *api.UploadState {
	if u := s.upload(n); u != nil {
		return u.record()
	}
	return nil
}

// record is the state in a checkpoint record.
func (u *uploadState) record() *api.UploadState {
	r := &api.UploadState{NextBlock: u.nextBlock, StagedBytes: u.staged, Grid: u.grid, InPlace: u.inPlace}
	for _, num := range u.numbers() {
		r.Parts = append(r.Parts, u.parts[num])
	}
	return r
}

// numbers returns the recorded part numbers in order.
func (u *uploadState) numbers() []int32 { return slices.Sorted(maps.Keys(u.parts)) }

// dumpUpload renders an upload's state canonically (Dump).
func dumpUpload(u *uploadState) string {
	if u == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, " upload next=%d staged=%d grid=%d", u.nextBlock, u.staged, u.grid)
	for _, num := range u.numbers() {
		p := u.parts[num]
		fmt.Fprintf(&b, " %d:%d+%d/%x@%d", num, p.GetFirst(), p.GetLength(), p.GetTag(), p.GetTimeMs())
	}
	for _, n := range slices.Sorted(maps.Keys(u.inPlace)) {
		fmt.Fprintf(&b, " placed%d@%d", n, u.inPlace[n])
	}
	return b.String()
}

func (s *State) applyUploadBlocks(e *api.JournalEntry, a *api.UploadBlocksEntry) error {
	n := s.get(a.GetId())
	u := (*uploadState)(nil)
	if n != nil {
		u = s.upload(n)
	}
	switch {
	case u == nil:
		return fmt.Errorf("inode %d is not a multipart upload", a.GetId())
	case a.GetFirst() != u.nextBlock:
		return fmt.Errorf("upload %d: blocks from %d, but the next free one is %d", n.id, a.GetFirst(), u.nextBlock)
	case a.GetCount() < 0 || a.GetBytes() < 0 || a.GetFirst()+a.GetCount() > api.MaxBlocksPerFile:
		return fmt.Errorf("upload %d: %d blocks from %d for %d bytes", n.id, a.GetCount(), a.GetFirst(), a.GetBytes())
	}
	if a.GetInPlace() {
		num := a.GetPartNumber()
		grid := u.grid
		if grid == 0 {
			grid = a.GetBytes()
		}
		_, taken := u.inPlace[num]
		switch {
		case num < 1 || num > maxPartNumber:
			return fmt.Errorf("upload %d: in-place part number %d", n.id, num)
		case taken:
			return fmt.Errorf("upload %d: part %d is in place already", n.id, num)
		case grid <= 0 || a.GetBytes() > grid || a.GetUfsOffset() != int64(num-1)*grid:
			return fmt.Errorf("upload %d: part %d of %d bytes in place at %d (grid %d)", n.id, num, a.GetBytes(), a.GetUfsOffset(), grid)
		}
		u.grid = grid
		if u.inPlace == nil {
			u.inPlace = map[int32]int64{}
		}
		u.inPlace[num] = a.GetFirst()
	}
	u.nextBlock += a.GetCount()
	u.staged += a.GetBytes()
	return nil
}

func (s *State) applyUploadPart(e *api.JournalEntry, a *api.UploadPartEntry) error {
	n := s.get(a.GetId())
	u := (*uploadState)(nil)
	if n != nil {
		u = s.upload(n)
	}
	if u == nil {
		return fmt.Errorf("inode %d is not a multipart upload", a.GetId())
	}
	if err := u.checkPart(a, s.blockSize(n)); err != nil {
		return fmt.Errorf("upload %d: %w", n.id, err)
	}
	if old := u.parts[a.GetPartNumber()]; old != nil {
		u.staged -= old.GetLength()
	}
	u.parts[a.GetPartNumber()] = a
	n.mtime = e.GetOpTimeMs()
	return nil
}

// uploadExtents returns the extents an upload's parts, named in order,
// give the file (nil, nil for a file that is not an upload). It changes
// nothing: applyCompleteFile checks everything before it changes anything.
func (s *State) uploadExtents(n *inode, parts []int32, length int64) ([]extent, error) {
	u := s.upload(n)
	switch {
	case u == nil && len(parts) > 0:
		return nil, fmt.Errorf("file %d is not a multipart upload: it has no parts", n.id)
	case u == nil:
		return nil, nil
	case len(parts) == 0:
		return nil, fmt.Errorf("upload %d completes with no parts", n.id)
	}
	ex := make([]extent, 0, len(parts))
	for i, num := range parts {
		p := u.parts[num]
		switch {
		case p == nil:
			return nil, fmt.Errorf("upload %d has no part %d", n.id, num)
		case i > 0 && num <= parts[i-1]:
			return nil, fmt.Errorf("upload %d: part %d after part %d", n.id, num, parts[i-1])
		}
		ex = append(ex, extent{first: p.GetFirst(), length: p.GetLength()})
	}
	if err := checkExtents(ex, length, s.blockSize(n)); err != nil {
		return nil, fmt.Errorf("upload %d: %w", n.id, err)
	}
	return ex, nil
}

// finishUpload makes a completed upload an ordinary file of extents ex.
func (s *State) finishUpload(n *inode, ex []extent) {
	if e := s.ext(n); e != nil && e.upload != nil {
		e.upload = nil
		e.extents = ex
	}
}

// stagedBy returns the bytes staged in user's uploads.
func (s *State) stagedBy(user string) int64 {
	var total int64
	for _, a := range s.asides {
		if u := s.upload(a); u != nil && s.owner(a) == user {
			total += u.staged
		}
	}
	return total
}

// ---- the namespace's calls ----

// uploadLocked returns the upload file_id at p, checking the caller may
// use it: it is an upload in flight and the caller its owner (or a
// superuser). Call with ns.mu held.
func (ns *namespace) uploadLocked(ctx context.Context, op, p string, id int64) (*inode, *uploadState, principal, error) {
	pr := ns.caller(ctx)
	if err := ns.usable(); err != nil {
		return nil, nil, pr, err
	}
	n := ns.aside(p, id)
	var u *uploadState
	if n != nil {
		u = ns.st.upload(n)
	}
	if u == nil {
		return nil, nil, pr, errf(codes.NotFound, op, p, "no multipart upload %d (completed, aborted, expired, or its directory deleted)", id)
	}
	if err := ns.traverse(op, p, pr, n); err != nil {
		return nil, nil, pr, err
	}
	if !pr.super && ns.st.owner(n) != pr.user {
		// Uploads are their initiator's: another user learns nothing more
		// of one than that it is not theirs.
		return nil, nil, pr, errf(codes.PermissionDenied, op, p, "permission denied: multipart upload %d belongs to another user, not %s", id, pr.user)
	}
	return n, u, pr, nil
}

// AllocateUploadBlocks gives the next free block indices of an upload to a
// part of length bytes about to be written.
func (ns *namespace) AllocateUploadBlocks(ctx context.Context, req *api.AllocateUploadBlocksRequest) (*api.AllocateUploadBlocksResponse, error) {
	const op = "upload-part"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	if req.GetLength() < 0 {
		return nil, errf(codes.InvalidArgument, op, p, "negative part length %d", req.GetLength())
	}
	ns.mu.Lock()
	n, u, pr, err := ns.uploadLocked(ctx, op, p, req.GetFileId())
	if err == nil {
		// Adding bytes is writing in the directory, as creating the file
		// was: a permission taken away since stops the upload.
		err = ns.need(op, p, pr, n.parent, permW|permX)
	}
	if err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	bs := ns.st.blockSize(n)
	count := blockCountOf(req.GetLength(), bs)
	if u.nextBlock+count > api.MaxBlocksPerFile {
		ns.mu.Unlock()
		return nil, errf(codes.ResourceExhausted, op, p, "upload %d has used its %d block ids (parts of %d bytes in blocks of %d)", n.id, api.MaxBlocksPerFile, req.GetLength(), bs)
	}
	if max := ns.cfg.maxStagedBytes; max > 0 && !pr.super {
		if staged := ns.st.stagedBy(ns.st.owner(n)); staged+req.GetLength() > max {
			ns.mu.Unlock()
			return nil, api.WithReason(errf(codes.ResourceExhausted, op, p, "user %s has %d bytes staged in multipart uploads; %d more would pass fsmaster.multipart.max-staged-bytes (%d): complete or abort uploads first",
				ns.st.owner(n), staged, req.GetLength(), max), api.ReasonStagedBytesExceeded, nil)
		}
	}
	first := u.nextBlock
	resp := &api.AllocateUploadBlocksResponse{FirstBlock: first, BlockCount: count, BlockSize: bs}
	entry := &api.UploadBlocksEntry{Id: n.id, First: first, Count: count, Bytes: req.GetLength(), PartNumber: req.GetPartNumber()}
	if off, ok := ns.inPlaceOffset(p, n, u, req.GetPartNumber(), req.GetLength()); ok {
		m, rel := ns.st.mountOf(p)
		entry.InPlace, entry.UfsOffset = true, off
		resp.InPlace, resp.UfsOffset = true, off
		resp.UfsPath, resp.MountId = ufs.JoinURI(m.GetUfsUri(), asideUFSRel(rel, n.id)), m.GetMountId()
	}
	t := ns.begin()
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_UploadBlocks{UploadBlocks: entry}}); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	ns.mu.Unlock()
	if err := t.wait(ctx); err != nil {
		return nil, err
	}
	return resp, nil
}

// inPlaceOffset says whether part num of length bytes of upload n at p is
// written in place in its UFS file too, and where: for write types with a
// UFS copy, on a UFS that writes regions (a local directory), for the
// first attempt at the part, when it fits the grid (the length of the
// first part placed). Call with ns.mu held.
func (ns *namespace) inPlaceOffset(p string, n *inode, u *uploadState, num int32, length int64) (int64, bool) {
	if num < 1 || num > maxPartNumber || length <= 0 || !throughUFS(n.writeType()) {
		return 0, false
	}
	if _, taken := u.inPlace[num]; taken {
		return 0, false
	}
	grid := u.grid
	if grid == 0 {
		grid = length
	}
	if length > grid {
		return 0, false
	}
	m, rel := ns.st.mountOf(p)
	if m == nil || rel == "" {
		return 0, false
	}
	if uri, err := url.Parse(m.GetUfsUri()); err != nil || uri.Scheme != "file" && uri.Scheme != "" {
		return 0, false // only a local directory writes regions in place
	}
	return int64(num-1) * grid, true
}

// CommitUploadPart records a part whose bytes are stored.
func (ns *namespace) CommitUploadPart(ctx context.Context, req *api.CommitUploadPartRequest) (*api.UploadPart, error) {
	const op = "upload-part"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	ns.mu.Lock()
	n, u, _, err := ns.uploadLocked(ctx, op, p, req.GetFileId())
	if err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	e := &api.UploadPartEntry{Id: n.id, PartNumber: req.GetPartNumber(), First: req.GetFirstBlock(),
		Length: req.GetLength(), Tag: req.GetTag(), TimeMs: ns.now().UnixMilli()}
	if err := u.checkPart(e, ns.st.blockSize(n)); err != nil {
		ns.mu.Unlock()
		return nil, errf(codes.InvalidArgument, op, p, "%v", err)
	}
	var drop []int64
	if old := u.parts[req.GetPartNumber()]; old != nil && old.GetFirst() != e.GetFirst() {
		for i := range blockCountOf(old.GetLength(), ns.st.blockSize(n)) {
			drop = append(drop, api.BlockID(n.id, old.GetFirst()+i))
		}
	}
	t := ns.begin()
	e.Id = n.id
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_UploadPart{UploadPart: e}}); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	ns.blocks.removeBlocks(drop)
	// Recorded in place, its blocks need no pin any more.
	if placed, _ := u.placed(e); placed {
		ids := make([]int64, 0, blockCountOf(e.GetLength(), ns.st.blockSize(n)))
		for i := range blockCountOf(e.GetLength(), ns.st.blockSize(n)) {
			ids = append(ids, api.BlockID(n.id, e.GetFirst()+i))
		}
		ns.blocks.reconcileBlocks(ids)
	}
	ns.mu.Unlock()
	if err := t.wait(ctx); err != nil {
		return nil, err
	}
	return partInfo(u, e), nil
}

func partInfo(u *uploadState, e *api.UploadPartEntry) *api.UploadPart {
	p := &api.UploadPart{PartNumber: e.GetPartNumber(), FirstBlock: e.GetFirst(), Length: e.GetLength(), Tag: e.GetTag(), ModificationTimeMs: e.GetTimeMs()}
	p.InPlace, p.UfsOffset = u.placed(e)
	return p
}

// ListUploadParts returns an upload and its parts.
func (ns *namespace) ListUploadParts(ctx context.Context, req *api.ListUploadPartsRequest) (*api.ListUploadPartsResponse, error) {
	const op = "list-parts"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	n, u, _, err := ns.uploadLocked(ctx, op, p, req.GetFileId())
	if err != nil {
		return nil, err
	}
	resp := &api.ListUploadPartsResponse{Upload: ns.info(n, p, true)}
	for _, num := range u.numbers() {
		resp.Parts = append(resp.Parts, partInfo(u, u.parts[num]))
	}
	return resp, nil
}

// ListUploads returns the uploads in flight to paths below a directory
// that the caller may see: its own (a superuser's: every one).
func (ns *namespace) ListUploads(ctx context.Context, req *api.ListUploadsRequest) (*api.ListUploadsResponse, error) {
	const op = "list-uploads"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return nil, err
	}
	pr := ns.caller(ctx)
	d := ns.st.lookup(p)
	switch {
	case d == nil:
		return nil, errf(codes.NotFound, op, p, "no such directory")
	case !d.dir():
		return nil, errf(codes.InvalidArgument, op, p, "is a file")
	}
	if err := ns.traverse(op, p, pr, d); err != nil {
		return nil, err
	}
	resp := &api.ListUploadsResponse{}
	for _, id := range ns.st.asideIDs() {
		a := ns.st.asides[id]
		if ns.st.upload(a) == nil || !isAncestor(d, a.parent) || !pr.super && ns.st.owner(a) != pr.user {
			continue
		}
		resp.Uploads = append(resp.Uploads, ns.info(a, ns.st.pathOf(a), false))
	}
	slices.SortStableFunc(resp.Uploads, func(a, b *api.FileInfo) int { return strings.Compare(a.GetPath(), b.GetPath()) })
	return resp, nil
}

// checkUploadComplete checks a CompleteFile of upload n at p naming
// parts (each as the caller saw it) and length, in place in the UFS file
// when inPlace. Call with ns.mu held.
func (ns *namespace) checkUploadComplete(op, p string, n *inode, parts []*api.UploadPartRef, length int64, inPlace bool) error {
	u := ns.st.upload(n)
	switch {
	case u == nil && inPlace:
		return errf(codes.InvalidArgument, op, p, "file %d is not a multipart upload: it has no parts in place", n.id)
	case u == nil && len(parts) > 0:
		return errf(codes.InvalidArgument, op, p, "file %d is not a multipart upload: it has no parts to complete with", n.id)
	case u == nil:
		return nil
	case len(parts) == 0:
		return errf(codes.InvalidArgument, op, p, "multipart upload %d needs the parts it is made of", n.id)
	}
	var total int64
	for i, r := range parts {
		cur := u.parts[r.GetPartNumber()]
		switch {
		case i > 0 && r.GetPartNumber() <= parts[i-1].GetPartNumber():
			return errf(codes.InvalidArgument, op, p, "part %d after part %d: parts go in ascending order", r.GetPartNumber(), parts[i-1].GetPartNumber())
		case cur == nil:
			return errf(codes.InvalidArgument, op, p, "upload %d has no part %d", n.id, r.GetPartNumber())
		case cur.GetFirst() != r.GetFirstBlock():
			return errf(codes.FailedPrecondition, op, p, "part %d of upload %d was uploaded again meanwhile", r.GetPartNumber(), n.id)
		}
		if placed, off := u.placed(cur); inPlace && (!placed || off != total) {
			return errf(codes.FailedPrecondition, op, p, "part %d of upload %d is not in place in its UFS file (at byte %d)", r.GetPartNumber(), n.id, total)
		}
		total += cur.GetLength()
	}
	if total != length {
		return errf(codes.InvalidArgument, op, p, "the parts hold %d bytes, not %d", total, length)
	}
	return nil
}

// partNumbers returns the numbers of refs.
func partNumbers(refs []*api.UploadPartRef) []int32 {
	if len(refs) == 0 {
		return nil
	}
	out := make([]int32, len(refs))
	for i, r := range refs {
		out[i] = r.GetPartNumber()
	}
	return out
}

// uploadCreate checks CreateFile's upload flag.
func uploadCreate(op, p string, req *api.CreateFileRequest) error {
	if req.GetUpload() && (!req.GetOverwrite() || req.GetComplete()) {
		return errf(codes.InvalidArgument, op, p, "a multipart upload is written aside: it needs overwrite, and cannot be born complete")
	}
	return nil
}
