package s3

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alluvium/alluvium/internal/testutil"
)

func s3cmdConfig(t *testing.T, c *cluster, secret string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "s3cfg")
	body := fmt.Sprintf(`[default]
access_key = tester
secret_key = %s
host_base = %s
host_bucket = %s
use_https = False
signature_v2 = False
bucket_location = us-east-1
check_ssl_certificate = False
guess_mime_type = True
progress_meter = False
`, secret, c.s3Host, c.s3Host)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestS3cmd drives the gateway with s3cmd (SigV4, path-style, its own
// MD5 checks of what it sends and receives).
func TestS3cmd(t *testing.T) {
	tool := clientTool(t, "s3cmd")[0]
	c := startLocal(t)
	env := baseEnv(t)
	cfg := s3cmdConfig(t, c, token)
	s3cmd := func(args ...string) string {
		t.Helper()
		return mustRun(t, env, tool, append([]string{"-c", cfg}, args...)...)
	}
	const bucket = "s3cmd-bucket"
	s3cmd("mb", "s3://"+bucket)
	if out := s3cmd("ls"); !strings.Contains(out, "s3://"+bucket) {
		t.Fatalf("s3cmd ls = %q", out)
	}
	local := t.TempDir()
	small := randomFile(t, filepath.Join(local, "small.txt"), 4321)
	big := randomFile(t, filepath.Join(local, "big.bin"), 12<<20+9) // multipart in 5 MiB chunks
	s3cmd("put", filepath.Join(local, "small.txt"), "s3://"+bucket+"/dir/small.txt")
	s3cmd("put", "--multipart-chunk-size-mb=5", filepath.Join(local, "big.bin"), "s3://"+bucket+"/dir/big.bin")
	out := s3cmd("ls", "--recursive", "s3://"+bucket)
	for _, want := range []string{fmt.Sprintf("%d   s3://%s/dir/small.txt", len(small), bucket), fmt.Sprintf("%d   s3://%s/dir/big.bin", len(big), bucket)} {
		if !strings.Contains(strings.Join(strings.Fields(out), "   "), strings.Join(strings.Fields(want), "   ")) {
			t.Fatalf("s3cmd ls --recursive lacks %q:\n%s", want, out)
		}
	}
	down := t.TempDir()
	for name, b := range map[string][]byte{"small.txt": small, "big.bin": big} {
		dst := filepath.Join(down, name)
		s3cmd("get", "s3://"+bucket+"/dir/"+name, dst)
		if got := fileSHA(t, dst); got != testutil.SHA256(b) {
			t.Fatalf("s3cmd get %s: sha256 %s, want %s", name, got, testutil.SHA256(b))
		}
		if got := fileSHA(t, filepath.Join(c.ufs, bucket, "dir", name)); got != testutil.SHA256(b) {
			t.Fatalf("%s in the UFS: sha256 %s, want %s", name, got, testutil.SHA256(b))
		}
	}
	// info reads the headers back: the MD5 of a single PUT.
	sum := md5.Sum(small)
	if info := s3cmd("info", "s3://"+bucket+"/dir/small.txt"); !strings.Contains(info, hex.EncodeToString(sum[:])) {
		t.Fatalf("s3cmd info = %s", info)
	}

	// sync a tree up, change nothing, sync again: nothing to send.
	tree := t.TempDir()
	for _, rel := range []string{"x.txt", "sub/y.bin", "sub/deeper/z.bin"} {
		randomFile(t, filepath.Join(tree, rel), 1000+len(rel))
	}
	s3cmd("sync", tree+"/", "s3://"+bucket+"/tree/")
	if out := s3cmd("sync", tree+"/", "s3://"+bucket+"/tree/"); strings.Contains(out, "upload:") {
		t.Fatalf("a second sync uploaded again:\n%s", out)
	}
	back := t.TempDir()
	s3cmd("sync", "s3://"+bucket+"/tree/", back+"/")
	for _, rel := range []string{"x.txt", "sub/y.bin", "sub/deeper/z.bin"} {
		if fileSHA(t, filepath.Join(tree, rel)) != fileSHA(t, filepath.Join(back, rel)) {
			t.Fatalf("sync down %s differs", rel)
		}
	}

	// del one and recursively.
	s3cmd("del", "s3://"+bucket+"/dir/small.txt")
	s3cmd("del", "--recursive", "--force", "s3://"+bucket+"/tree/")
	out = s3cmd("ls", "--recursive", "s3://"+bucket)
	if strings.Contains(out, "small.txt") || strings.Contains(out, "/tree/") || !strings.Contains(out, "big.bin") {
		t.Fatalf("after del:\n%s", out)
	}

	// A wrong secret is refused.
	bad := s3cmdConfig(t, c, "wrong-secret")
	if out, errOut, code := run(t, env, tool, "-c", bad, "ls", "s3://"+bucket); code == 0 || !strings.Contains(out+errOut, "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := run(t, env, tool, "-c", bad, "put", filepath.Join(local, "small.txt"), "s3://"+bucket+"/evil.txt"); code == 0 {
		t.Fatal("put with a wrong secret succeeded")
	}
	if _, err := os.Stat(filepath.Join(c.ufs, bucket, "evil.txt")); !os.IsNotExist(err) {
		t.Fatal("a refused put left a file")
	}
	s3cmd("del", "s3://"+bucket+"/dir/big.bin")
	s3cmd("rb", "s3://"+bucket)
	if _, err := os.Stat(filepath.Join(c.ufs, bucket)); !os.IsNotExist(err) {
		t.Fatalf("bucket dir after rb: %v", err)
	}
}
