package auth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// TestBlockAccessIsChecked: a block id is not a key. A user who may not read
// a file gets nothing from the worker that caches it — not with the SDK, not
// through the REST proxy, not by calling the worker's gRPC with the block id
// or the file's UFS path — and cannot write, remove or fill its blocks or
// write its UFS file; once the owner opens the file up, reads go through.
func TestBlockAccessIsChecked(t *testing.T) {
	c := startLocal(t, usersYAML+"worker:\n  access-cache-ttl: 2s\n")
	ctx := context.Background()
	c.must(t, c.token, "fs", "mkdir", "-p", "/home/bob", "/home/alice")
	c.must(t, c.token, "fs", "chown", "bob:bob", "/home/bob")
	c.must(t, c.token, "fs", "chown", "alice:alice", "/home/alice")
	c.must(t, c.token, "fs", "chmod", "755", "/home/bob")

	secret := bytes.Repeat([]byte("bob's secret\n"), 5000)
	local := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(local, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c.must(t, bobToken, "fs", "put", "--write-type", "CACHE_THROUGH", local, "/home/bob/secret")
	c.must(t, bobToken, "fs", "chmod", "600", "/home/bob/secret")
	// alice's own readable file, to borrow a block id she may read.
	c.must(t, aliceToken, "fs", "put", local, "/home/alice/mine")

	fi, err := c.client(t, c.token).Stat(ctx, "/home/bob/secret")
	if err != nil || len(fi.GetFileBlockInfos()) == 0 || len(fi.GetFileBlockInfos()[0].GetBlockInfo().GetLocations()) == 0 {
		t.Fatalf("bob's file is not cached: %v %v", fi, err)
	}
	block := fi.GetFileBlockInfos()[0].GetBlockInfo()
	addr := block.GetLocations()[0].GetAddress()
	worker := fmt.Sprintf("%s:%d", addr.GetHost(), addr.GetRpcPort())
	mine, err := c.client(t, c.token).Stat(ctx, "/home/alice/mine")
	if err != nil {
		t.Fatal(err)
	}
	myBlock := mine.GetFileBlockInfos()[0].GetBlockInfo().GetBlockId()

	asAlice := blockClient(t, worker, aliceToken)
	asBob := blockClient(t, worker, bobToken)
	src := &api.UfsBlockSource{MountId: fi.GetMountId(), UfsPath: fi.GetUfsPath(), Length: block.GetLength()}

	// Reads: by block id, short-circuit, and a read-through naming bob's
	// UFS path under alice's own (readable) block id.
	if _, err := testutil.ReadBlock(ctx, asAlice, &api.ReadBlockRequest{BlockId: block.GetBlockId(), Length: -1}); !isCode(err, codes.PermissionDenied) {
		t.Errorf("alice reads bob's block %d by id: %v, want PermissionDenied", block.GetBlockId(), err)
	}
	if _, err := asAlice.OpenLocalBlock(ctx, &api.OpenLocalBlockRequest{BlockId: block.GetBlockId()}); !isCode(err, codes.PermissionDenied) {
		t.Errorf("alice opens bob's block locally: %v, want PermissionDenied", err)
	}
	if _, err := testutil.ReadBlock(ctx, asAlice, &api.ReadBlockRequest{BlockId: myBlock | 7, Length: -1, Ufs: src, ReadType: api.ReadType_NO_CACHE}); !isCode(err, codes.PermissionDenied) {
		t.Errorf("alice reads bob's UFS file under her own block id: %v, want PermissionDenied", err)
	}
	// Writes: a block of bob's file, its removal, its UFS file, a fill.
	// A complete file's blocks can no longer be written by anyone; a file
	// bob is still writing takes blocks from bob only.
	if err := writeBlock(ctx, asAlice, api.BlockID(fi.GetFileId(), 9), []byte("forged")); !isCode(err, codes.FailedPrecondition) {
		t.Errorf("alice writes a block of bob's complete file: %v, want FailedPrecondition", err)
	}
	w, err := c.client(t, bobToken).Create(ctx, "/home/bob/open", sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	open, err := c.client(t, c.token).Stat(ctx, "/home/bob/open")
	if err != nil || open.GetCompleted() {
		t.Fatalf("bob's file being written: %v %v", open, err)
	}
	forged := api.BlockID(open.GetFileId(), 0)
	if err := writeBlock(ctx, asAlice, forged, []byte("forged")); !isCode(err, codes.PermissionDenied) {
		t.Errorf("alice writes a block of bob's file being written: %v, want PermissionDenied", err)
	}
	if _, err := testutil.ReadBlock(ctx, asBob, &api.ReadBlockRequest{BlockId: forged, Length: -1}); !isCode(err, codes.NotFound) {
		t.Errorf("bob reads the block alice tried to forge: %v, want NotFound (nothing stored)", err)
	}
	if err := writeBlock(ctx, asBob, forged, []byte("bob's own")); err != nil {
		t.Errorf("bob writes a block of his own file being written: %v", err)
	}
	if _, err := asAlice.RemoveBlock(ctx, &api.RemoveBlockRequest{BlockId: block.GetBlockId()}); !isCode(err, codes.PermissionDenied) && !isCode(err, codes.FailedPrecondition) {
		t.Errorf("alice removes bob's block: %v, want refused", err)
	}
	for _, hdr := range []*api.WriteUfsFileHeader{
		{MountId: fi.GetMountId(), UfsPath: fi.GetUfsPath(), Overwrite: true},
		{MountId: fi.GetMountId(), UfsPath: fi.GetUfsPath(), Overwrite: true, FileId: fi.GetFileId()},
		{MountId: fi.GetMountId(), UfsPath: fi.GetUfsPath(), Overwrite: true, FileId: mine.GetFileId()},
	} {
		if err := writeUFS(ctx, asAlice, hdr, []byte("forged")); !isCode(err, codes.PermissionDenied) && !isCode(err, codes.FailedPrecondition) {
			t.Errorf("alice writes bob's UFS file (file id %d): %v, want refused", hdr.GetFileId(), err)
		}
	}
	if _, err := asAlice.CacheBlock(ctx, &api.CacheBlockRequest{BlockId: block.GetBlockId(), Source: src}); !isCode(err, codes.PermissionDenied) {
		t.Errorf("alice asks the worker to fill bob's block: %v, want PermissionDenied", err)
	}
	// Nor through the SDK or the REST proxy (which act as alice).
	if r, err := c.client(t, aliceToken).Open(ctx, "/home/bob/secret", sdk.OpenOptions{}); err == nil {
		_, err = io.ReadAll(r)
		r.Close()
		if !isCode(err, codes.PermissionDenied) {
			t.Errorf("alice reads bob's 0600 file with the SDK: %v, want PermissionDenied", err)
		}
	} else if !isCode(err, codes.PermissionDenied) {
		t.Errorf("alice opens bob's 0600 file: %v", err)
	}
	download := fmt.Sprintf("http://127.0.0.1:%d/api/v1/paths/home/bob/secret/download-file", c.base+6)
	if code, _ := restGet(t, download, aliceToken); code != http.StatusForbidden {
		t.Errorf("REST download of bob's 0600 file as alice: %d, want 403", code)
	}

	// Nothing changed: bob's bytes in the cache and in the UFS.
	if got, err := testutil.ReadBlock(ctx, asBob, &api.ReadBlockRequest{BlockId: block.GetBlockId(), Length: -1}); err != nil || !bytes.Equal(got, secret[:len(got)]) || int64(len(got)) != block.GetLength() {
		t.Fatalf("bob reads his own block: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(filepath.Join(c.ufs, "home/bob/secret")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("bob's UFS file changed: %d bytes, %v", len(got), err)
	}
	if out := c.must(t, bobToken, "fs", "cat", "/home/bob/secret"); out != string(secret) {
		t.Fatalf("bob's file reads %d bytes, want %d", len(out), len(secret))
	}

	// bob opens it up; within the worker's cache time alice reads it.
	c.must(t, bobToken, "fs", "chmod", "644", "/home/bob/secret")
	testutil.Eventually(t, 10*time.Second, func() error {
		got, err := testutil.ReadBlock(ctx, asAlice, &api.ReadBlockRequest{BlockId: block.GetBlockId(), Length: -1})
		if err != nil {
			return err
		}
		if !bytes.Equal(got, secret[:len(got)]) {
			return fmt.Errorf("wrong bytes")
		}
		return nil
	})
	if code, body := restGet(t, download, aliceToken); code != http.StatusOK || !bytes.Equal(body, secret) {
		t.Errorf("REST download after chmod 644: %d, %d bytes", code, len(body))
	}
}

func blockClient(t *testing.T, addr, token string) api.BlockWorkerClient {
	t.Helper()
	cc, err := rpc.Dial(addr, rpc.ClientOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewBlockWorkerClient(cc)
}

func writeBlock(ctx context.Context, bw api.BlockWorkerClient, id int64, data []byte) error {
	st, err := bw.WriteBlock(ctx)
	if err != nil {
		return err
	}
	_ = st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Header{Header: &api.WriteBlockHeader{BlockId: id}}})
	_ = st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Chunk{Chunk: data}})
	_, err = st.CloseAndRecv()
	return err
}

func writeUFS(ctx context.Context, bw api.BlockWorkerClient, hdr *api.WriteUfsFileHeader, data []byte) error {
	st, err := bw.WriteUfsFile(ctx)
	if err != nil {
		return err
	}
	_ = st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Header{Header: hdr}})
	_ = st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Chunk{Chunk: data}})
	_, err = st.CloseAndRecv()
	return err
}

func restGet(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}
