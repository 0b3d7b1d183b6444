package blockworker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// CommitBlocks of the fake master: one call, many blocks.
func (m *fakeMaster) CommitBlocks(_ context.Context, req *api.CommitBlocksRequest) (*api.CommitBlocksResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batchCommits++
	for _, b := range req.GetBlocks() {
		m.locs[b.GetBlockId()] = b.GetTier()
	}
	return &api.CommitBlocksResponse{Committed: int32(len(req.GetBlocks()))}, nil
}

// CacheBlocks fills many blocks and commits them in one CommitBlocks call;
// a bad block fails alone.
func TestCacheBlocksCommitsOnce(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, _ := setupUFS(t, m, w, 0)
	var req api.CacheBlocksRequest
	var want map[int64][]byte
	req.Blocks, want = ufsBlocks(t, dir, 12, 1000, 5000)
	req.Blocks = append(req.Blocks, &api.CacheBlockRequest{BlockId: 6000, Source: &api.UfsBlockSource{MountId: 1, UfsPath: "file://" + dir + "/missing", Length: 10}})
	m.mu.Lock()
	before := len(m.commits)
	m.mu.Unlock()
	resp, err := w.client.CacheBlocks(context.Background(), &req)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if i < 12 && (r.GetError() != "" || r.GetBytes() != int64(1000+i)) {
			t.Errorf("block %d: %+v", r.GetBlockId(), r)
		}
		if i == 12 && (r.GetError() == "" || codes.Code(r.GetCode()) != codes.NotFound) {
			t.Errorf("missing file: %+v", r)
		}
	}
	m.mu.Lock()
	batches, single := m.batchCommits, len(m.commits)-before
	m.mu.Unlock()
	if batches != 1 || single != 0 {
		t.Fatalf("%d CommitBlocks and %d CommitBlock calls, want 1 and 0", batches, single)
	}
	for id, data := range want {
		if _, ok := m.has(id); !ok {
			t.Errorf("master does not know block %d", id)
		}
		got, err := w.read(context.Background(), &api.ReadBlockRequest{BlockId: id, Length: -1})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("block %d: %v", id, err)
		}
	}
	// Again: already cached, nothing read.
	resp, err = w.client.CacheBlocks(context.Background(), &api.CacheBlocksRequest{Blocks: req.Blocks[:3]})
	if err != nil || !resp.GetResults()[0].GetAlreadyCached() {
		t.Fatalf("second CacheBlocks: %v %+v", err, resp)
	}
}

// Small blocks filled on the callers' goroutines: calls that ask for the
// same blocks at once (CacheBlocks and CacheBlock) each get every block
// once filled, none twice stored, each committed to the master, and the
// bytes read back are the UFS file's.
func TestConcurrentCacheCallsShareSmallFills(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, _ := setupUFS(t, m, w, 0)
	const n = 24
	blocks, want := ufsBlocks(t, dir, n, 4096, 7000)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for c := 0; c < 4; c++ {
		// Each call asks for every block, starting at a different one.
		req := &api.CacheBlocksRequest{}
		for i := 0; i < n; i++ {
			req.Blocks = append(req.Blocks, blocks[(i+c*n/4)%n])
		}
		wg.Go(func() {
			resp, err := w.client.CacheBlocks(ctx, req)
			if err != nil {
				errs <- err
				return
			}
			for _, r := range resp.GetResults() {
				if r.GetError() != "" || !r.GetAlreadyCached() && r.GetBytes() != int64(len(want[r.GetBlockId()])) {
					errs <- fmt.Errorf("CacheBlocks: block %d: %+v", r.GetBlockId(), r)
				}
			}
		})
		wg.Go(func() {
			b := blocks[c*n/4]
			r, err := w.client.CacheBlock(ctx, b)
			if err != nil || !r.GetAlreadyCached() && r.GetBytes() != b.GetSource().GetLength() {
				errs <- fmt.Errorf("CacheBlock %d: %+v, %v", b.GetBlockId(), r, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for id, data := range want {
		if _, ok := m.has(id); !ok {
			t.Errorf("master does not know block %d", id)
		}
		got, err := w.read(ctx, &api.ReadBlockRequest{BlockId: id, Length: -1})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("block %d: %v", id, err)
		}
	}
	if got := w.Worker.store.Count(); got != n {
		t.Fatalf("%d blocks stored, want %d", got, n)
	}
}

// ufsBlocks writes n UFS files of size+i random bytes in dir (mount 1),
// each one block of id firstID+i, and returns the cache requests of those
// blocks and each block's bytes.
func ufsBlocks(t *testing.T, dir string, n, size int, firstID int64) ([]*api.CacheBlockRequest, map[int64][]byte) {
	t.Helper()
	want := map[int64][]byte{}
	var reqs []*api.CacheBlockRequest
	for i := 0; i < n; i++ {
		data := randBytes(size + i)
		p := filepath.Join(dir, fmt.Sprintf("b%d", firstID+int64(i)))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		id := firstID + int64(i)
		want[id] = data
		reqs = append(reqs, &api.CacheBlockRequest{BlockId: id, Source: &api.UfsBlockSource{MountId: 1, UfsPath: "file://" + p, Length: int64(len(data))}})
	}
	return reqs, want
}

// CopyBlockFrom copies a block from a peer, or within a worker under a new
// id, and refuses what is not there.
func TestCopyBlockFrom(t *testing.T) {
	_, addr := startFakeMaster(t)
	w1 := startWorker(t, t.TempDir(), addr)
	w2 := startWorker(t, t.TempDir(), addr)
	data := randBytes(3*mib + 5)
	w1.write(t, 100, data, false)
	ctx := context.Background()
	r, err := w2.client.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: 100, Source: w1.RPCAddr(), Length: int64(len(data))})
	if err != nil || r.GetBytes() != int64(len(data)) {
		t.Fatalf("copy from peer: %v %+v", err, r)
	}
	if got, err := w2.read(ctx, &api.ReadBlockRequest{BlockId: 100, Length: -1}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied block: %v", err)
	}
	if r, err := w2.client.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: 100, Source: w1.RPCAddr()}); err != nil || !r.GetAlreadyCached() {
		t.Fatalf("copy again: %v %+v", err, r)
	}
	// Unknown length, another id, from the peer; then locally.
	if _, err := w2.client.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: 200, SourceBlockId: 100, Source: w1.RPCAddr()}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.client.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: 300, SourceBlockId: 100}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{200, 300} {
		if got, err := w2.read(ctx, &api.ReadBlockRequest{BlockId: id, Length: -1}); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("block %d: %v", id, err)
		}
	}
	if _, err := w2.client.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: 400, Source: w1.RPCAddr()}); status.Code(err) != codes.NotFound {
		t.Fatalf("copy of a block the peer lacks: %v", err)
	}
	if w2.Store().Has(400) {
		t.Fatal("a failed copy left a block")
	}
}

func hexSum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// WriteUfsFileFrom assembles a UFS file from this worker's cache, a peer's
// and a UFS range, checks it, and can keep the bytes cached under new ids;
// a missing source fails it and leaves nothing.
func TestWriteUfsFileFrom(t *testing.T) {
	m, addr := startFakeMaster(t)
	w1 := startWorker(t, t.TempDir(), addr)
	w2 := startWorker(t, t.TempDir(), addr)
	dir, _ := setupUFS(t, m, w1, 0)
	ctx := context.Background()
	a, b, c := randBytes(mib), randBytes(mib), randBytes(mib/2)
	w1.write(t, 11, a, false)
	w2.write(t, 12, b, false)
	if err := os.WriteFile(filepath.Join(dir, "src"), append(append(randBytes(mib), randBytes(mib)...), c...), 0o644); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte(nil), a...), b...), c...)
	srcs := []*api.BlockSource{
		{BlockId: 11, Length: mib},
		{BlockId: 12, Length: mib, Workers: []string{w1.RPCAddr(), w2.RPCAddr()}},
		{BlockId: 13, Length: mib / 2, Ufs: &api.UfsBlockSource{MountId: 1, UfsPath: "file://" + dir + "/src", Offset: 2 * mib, Length: mib / 2}},
	}
	dest := func(p string) *api.WriteUfsFileHeader {
		return &api.WriteUfsFileHeader{MountId: 1, UfsPath: "file://" + dir + p, CreateParent: true, Overwrite: true}
	}
	r, err := w1.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/f"), Sources: srcs, Checksum: true, CacheFileId: 77})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetLength() != int64(len(want)) || r.GetSha256() != hexSum(want) || r.GetBytesFromCache() != 2*mib || r.GetBytesFromUfs() != mib/2 || r.GetUfsFingerprint() == "" {
		t.Fatalf("response %+v", r)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out/f")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("UFS file: %v", err)
	}
	for i, part := range [][]byte{a, b, c} {
		got, err := w1.read(ctx, &api.ReadBlockRequest{BlockId: api.BlockID(77, int64(i)), Length: -1})
		if err != nil || !bytes.Equal(got, part) {
			t.Fatalf("cached copy of block %d: %v", i, err)
		}
	}
	h, err := w1.client.HashBlocks(ctx, &api.HashBlocksRequest{Sources: srcs})
	if err != nil || h.GetSha256() != hexSum(want) || h.GetLength() != int64(len(want)) {
		t.Fatalf("HashBlocks: %v %+v", err, h)
	}
	// A source nobody has: the call fails, nothing is left in the UFS.
	bad := append(append([]*api.BlockSource(nil), srcs[:2]...), &api.BlockSource{BlockId: 99, Length: 10})
	if _, err := w1.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/bad"), Sources: bad}); err == nil || !strings.Contains(err.Error(), "block 99") {
		t.Fatalf("missing source: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "out"))
	if len(ents) != 1 {
		t.Fatalf("UFS dir holds %d entries after a failed write", len(ents))
	}
	// Many at once, each on its own.
	br, err := w1.client.WriteUfsFilesFrom(ctx, &api.WriteUfsFilesFromRequest{Files: []*api.WriteUfsFileFromRequest{
		{Dest: dest("/many/1"), Sources: srcs[:1]},
		{Dest: dest("/many/2"), Sources: bad[2:]},
		{Dest: dest("/many/3"), Sources: srcs[2:]},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := br.GetResults()
	if res[0].GetError() != "" || res[2].GetError() != "" || codes.Code(res[1].GetCode()) != codes.NotFound {
		t.Fatalf("batch results %+v", res)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "many/3")); !bytes.Equal(got, c) {
		t.Fatal("batch file 3 differs")
	}
	// Without a checksum a UFS range goes from file to file in the kernel
	// (copy_file_range), a cached block through the process: the bytes
	// are the same, in order. (setupUFS wraps the UFS's readers: a worker
	// of its own reads the bare local UFS, as a real worker does.)
	w3 := startWorker(t, t.TempDir(), addr)
	local, err := ufs.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	w3.mounts.open = func(context.Context, string, map[string]string) (ufs.FileSystem, error) { return local, nil }
	mixed := []*api.BlockSource{srcs[2], {BlockId: 11, Length: mib, Workers: []string{w1.RPCAddr()}}, srcs[2]}
	r2, err := w3.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/mixed"), Sources: mixed})
	if err != nil {
		t.Fatal(err)
	}
	wantMixed := append(append(append([]byte(nil), c...), a...), c...)
	if r2.GetLength() != int64(len(wantMixed)) || r2.GetBytesFromUfs() != mib || r2.GetBytesFromCache() != mib {
		t.Fatalf("mixed response %+v", r2)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out/mixed")); err != nil || !bytes.Equal(got, wantMixed) {
		t.Fatalf("mixed UFS file differs (%v)", err)
	}
	// Many at once through the bare local UFS: one batch, each directory
	// opened and fsynced once; every file in place when the call answers.
	br3, err := w3.client.WriteUfsFilesFrom(ctx, &api.WriteUfsFilesFromRequest{Files: []*api.WriteUfsFileFromRequest{
		{Dest: dest("/batch/a/1"), Sources: srcs[2:]},
		{Dest: dest("/batch/b/2"), Sources: srcs[2:], Checksum: true},
		{Dest: dest("/batch/a/3"), Sources: bad[2:]},
		{Dest: dest("/batch/a/4"), Sources: srcs[2:]},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range br3.GetResults() {
		if (r.GetError() != "") != (i == 2) {
			t.Fatalf("batch result %d: %+v", i, r)
		}
	}
	for _, p := range []string{"batch/a/1", "batch/b/2", "batch/a/4"} {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || !bytes.Equal(got, c) {
			t.Fatalf("%s differs (%v)", p, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "batch/a")); len(ents) != 2 {
		t.Fatalf("batch/a holds %d entries, want the 2 files written", len(ents))
	}
	// With a checksum, a long UFS range is hashed where it lies and copied
	// in the kernel, a short one streamed through the hash; the copy is
	// read back before it takes its name.
	srcBytes, err := os.ReadFile(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	long := &api.BlockSource{BlockId: 15, Length: 2 * mib, Ufs: &api.UfsBlockSource{MountId: 1, UfsPath: "file://" + dir + "/src", Offset: 0, Length: 2 * mib}}
	r3, err := w3.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/summed"), Sources: []*api.BlockSource{srcs[2], long}, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	wantSummed := append(append([]byte(nil), c...), srcBytes[:2*mib]...)
	if r3.GetLength() != int64(len(wantSummed)) || r3.GetSha256() != hexSum(wantSummed) {
		t.Fatalf("summed response %+v, want sha256 %s", r3, hexSum(wantSummed))
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out/summed")); err != nil || !bytes.Equal(got, wantSummed) {
		t.Fatalf("summed UFS file differs (%v)", err)
	}
	// A caller that wants the check, not the sum (a copy job): the long
	// range alone is compared with its source byte for byte and hashed by
	// no one; with a short range before it, both are hashed again.
	r4, err := w3.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/compared"), Sources: []*api.BlockSource{long}, Checksum: true, NoSha256: true})
	if err != nil || r4.GetLength() != 2*mib || r4.GetSha256() != "" {
		t.Fatalf("compared response %+v, %v: want 2 MiB, no sha256", r4, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out/compared")); err != nil || !bytes.Equal(got, srcBytes[:2*mib]) {
		t.Fatalf("compared UFS file differs (%v)", err)
	}
	r5, err := w3.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/summed2"), Sources: []*api.BlockSource{srcs[2], long}, Checksum: true, NoSha256: true})
	if err != nil || r5.GetSha256() != hexSum(wantSummed) {
		t.Fatalf("summed (no_sha256) response %+v, %v", r5, err)
	}
	// A kernel copy that reads back wrong (one byte changed after the
	// copy) is DataLoss and never takes its name, the old file kept.
	restore := ufs.AfterKernelCopyForTest(func(fd int, at, n int64) {
		if mib < at || mib >= at+n {
			return
		}
		b := []byte{0}
		_, _ = unix.Pread(fd, b, mib)
		b[0] ^= 1
		_, _ = unix.Pwrite(fd, b, mib)
	})
	for _, noSum := range []bool{true, false} {
		_, err = w3.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/compared"), Sources: []*api.BlockSource{long}, Checksum: true, NoSha256: noSum})
		if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), fmt.Sprintf("at byte %d", mib)) {
			t.Fatalf("a copy changed after the kernel copy (no_sha256 %v): %v, want DataLoss naming byte %d", noSum, err, mib)
		}
	}
	restore()
	if got, err := os.ReadFile(filepath.Join(dir, "out/compared")); err != nil || !bytes.Equal(got, srcBytes[:2*mib]) {
		t.Fatalf("out/compared after failed checked writes: %v (the old file must stay)", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "out")); len(ents) != 5 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("out holds %v after the failed writes, want the 5 files written (no temp files)", names)
	}
	// A UFS file shorter than planned (changed since): the write fails
	// and leaves nothing under the name.
	short := &api.BlockSource{BlockId: 14, Length: mib, Ufs: &api.UfsBlockSource{MountId: 1, UfsPath: "file://" + dir + "/src", Offset: 2 * mib, Length: mib}}
	for _, w := range []*testWorker{w1, w3} { // streamed, and in the kernel
		_, err = w.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{Dest: dest("/out/short"), Sources: []*api.BlockSource{short}})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "ends 524288 bytes early") {
			t.Fatalf("short source: %v, want Unavailable (ends early)", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out/short")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed write left out/short: %v", err)
	}
}

// sameBytes accepts exactly the bytes it wants, in any pieces, and names
// the first byte that differs (or where the bytes written end short or
// run long).
func TestSameBytes(t *testing.T) {
	want := []byte("abcdefghij")
	for _, c := range []struct {
		pieces []string
		at     int
		ok     bool
	}{
		{[]string{"abc", "defghij"}, 0, true},
		{[]string{"abcdefghij"}, 0, true},
		{[]string{"abc", "dXf", "ghij"}, 4, false},
		{[]string{"abcdefghi"}, 9, false},
		{[]string{"abcdefghij", "k"}, 10, false},
		{[]string{"abcdefghijk"}, 10, false},
		{nil, 0, false},
	} {
		s := &sameBytes{want: want, diff: -1}
		for _, p := range c.pieces {
			_, _ = s.Write([]byte(p))
		}
		if at, ok := s.same(); ok != c.ok || !ok && at != c.at {
			t.Errorf("%q: same() = %d, %v; want %d, %v", c.pieces, at, ok, c.at, c.ok)
		}
	}
}
