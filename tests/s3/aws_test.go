package s3

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

type fileJSON struct {
	Path          string `json:"path"`
	Length        int64  `json:"length"`
	Persisted     bool   `json:"persisted"`
	CachedPercent int    `json:"cachedPercent"`
}

type jobJSON struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
}

func awsEnv(t *testing.T, c *cluster, secret string) []string {
	env := baseEnv(t)
	dir := t.TempDir()
	return append(env,
		"AWS_ACCESS_KEY_ID=tester", "AWS_SECRET_ACCESS_KEY="+secret, "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=", "AWS_CLI_AUTO_PROMPT=off", "AWS_MAX_ATTEMPTS=1")
}

// TestAWSCLI drives the gateway with every AWS CLI on the machine
// (Debian's, and a newer one on $PATH whose botocore sends aws-chunked
// bodies with CRC checksums by default).
func TestAWSCLI(t *testing.T) {
	tools := clientTool(t, "aws")
	c := startLocal(t)
	for i, aws := range tools {
		t.Run(fmt.Sprintf("aws%d", i), func(t *testing.T) {
			env := awsEnv(t, c, token)
			// An aws that is installed but does not run is a broken
			// machine, not a reason to test less: fail, naming it.
			if out, errOut, code := run(t, env, aws, "--version"); code != 0 {
				t.Fatalf("%s is installed but does not run (exit %d): %s%s", aws, code, out, errOut)
			} else {
				t.Logf("%s: %s", aws, strings.TrimSpace(out+errOut))
			}
			// The first (Debian's) runs everything; others the uploads and
			// downloads their newer encodings change.
			testAWS(t, c, aws, env, fmt.Sprintf("awsbucket-%d", i), i == 0)
		})
	}
}

func testAWS(t *testing.T, c *cluster, aws string, env []string, bucket string, full bool) {
	s3 := func(args ...string) string {
		t.Helper()
		return mustRun(t, env, aws, append([]string{"--endpoint-url", c.s3}, args...)...)
	}
	s3("s3", "mb", "s3://"+bucket)

	// cp up: a small file, one below the multipart threshold, one above
	// (8 MiB parts), and odd names.
	local := t.TempDir()
	files := map[string][]byte{
		"small.txt":           randomFile(t, filepath.Join(local, "small.txt"), 1000),
		"mid.bin":             randomFile(t, filepath.Join(local, "mid.bin"), 3<<20+17),
		"big.bin":             randomFile(t, filepath.Join(local, "big.bin"), 20<<20+5),
		"name with space.txt": randomFile(t, filepath.Join(local, "name with space.txt"), 33),
		"ünïcødé+plus.txt":    randomFile(t, filepath.Join(local, "ünïcødé+plus.txt"), 44),
	}
	// One recursive cp (the CLI's own parallel uploads, multipart for big.bin).
	s3("s3", "cp", "--only-show-errors", "--recursive", local, "s3://"+bucket+"/up/")
	ls := s3("s3", "ls", "s3://"+bucket+"/up/")
	for name, b := range files {
		if !strings.Contains(ls, fmt.Sprintf("%d %s", len(b), name)) {
			t.Fatalf("aws s3 ls lacks %q (%d bytes):\n%s", name, len(b), ls)
		}
	}
	if top := s3("s3", "ls", "s3://"+bucket); !strings.Contains(top, "PRE up/") {
		t.Fatalf("aws s3 ls s3://%s = %q, want PRE up/", bucket, top)
	}
	// cp down, byte-exact; and each object is a file of the namespace
	// (written through to the UFS).
	down := t.TempDir()
	s3("s3", "cp", "--only-show-errors", "--recursive", "s3://"+bucket+"/up/", down)
	s3("s3", "cp", "--only-show-errors", "s3://"+bucket+"/up/big.bin", filepath.Join(down, "big-again.bin"))
	if fileSHA(t, filepath.Join(down, "big-again.bin")) != testutil.SHA256(files["big.bin"]) {
		t.Fatal("a single-object download of big.bin differs")
	}
	for name, b := range files {
		if got := fileSHA(t, filepath.Join(down, name)); got != testutil.SHA256(b) {
			t.Fatalf("%s: downloaded sha256 %s, uploaded %s", name, got, testutil.SHA256(b))
		}
		if got := fileSHA(t, filepath.Join(c.ufs, bucket, "up", name)); got != testutil.SHA256(b) {
			t.Fatalf("%s: the UFS file's sha256 %s, uploaded %s", name, got, testutil.SHA256(b))
		}
	}
	var st fileJSON
	if err := json.Unmarshal([]byte(c.alluvium(t, "fs", "stat", "/"+bucket+"/up/big.bin", "--output", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Length != int64(len(files["big.bin"])) || !st.Persisted {
		t.Fatalf("fs stat big.bin = %+v", st)
	}
	if !full {
		bad := awsEnv(t, c, "not-the-token")
		if _, errOut, code := run(t, bad, aws, "--endpoint-url", c.s3, "s3", "ls", "s3://"+bucket); code == 0 || !strings.Contains(errOut, "SignatureDoesNotMatch") {
			t.Fatalf("wrong secret: exit %d, %s", code, errOut)
		}
		return
	}

	// Files are objects too: one written with the CLI, one put straight
	// into the UFS.
	scratch := t.TempDir()
	viaCLI := randomFile(t, filepath.Join(scratch, "cli.bin"), 54321)
	c.alluvium(t, "fs", "put", filepath.Join(scratch, "cli.bin"), "/"+bucket+"/cli/cli.bin")
	fromUFS := randomFile(t, filepath.Join(c.ufs, bucket, "ufs", "seeded.bin"), 12345)
	other := t.TempDir()
	s3("s3", "cp", "--only-show-errors", "s3://"+bucket+"/cli/cli.bin", filepath.Join(other, "cli.bin"))
	s3("s3", "cp", "--only-show-errors", "s3://"+bucket+"/ufs/seeded.bin", filepath.Join(other, "seeded.bin"))
	for name, want := range map[string][]byte{"cli.bin": viaCLI, "seeded.bin": fromUFS} {
		if fileSHA(t, filepath.Join(other, name)) != testutil.SHA256(want) {
			t.Fatalf("object %s differs from the file", name)
		}
	}
	if out := s3("s3", "ls", "--recursive", "s3://"+bucket+"/"); !strings.Contains(out, "cli/cli.bin") || !strings.Contains(out, "ufs/seeded.bin") {
		t.Fatalf("ls --recursive lacks the files:\n%s", out)
	}

	// Objects written through S3 can be freed and cached again by a load job.
	c.alluvium(t, "fs", "free", "-r", "/"+bucket+"/up")
	testutil.Eventually(t, 20*time.Second, func() error {
		var st fileJSON
		if err := json.Unmarshal([]byte(c.alluvium(t, "fs", "stat", "/"+bucket+"/up/big.bin", "--output", "json")), &st); err != nil {
			return err
		}
		if st.CachedPercent != 0 {
			return fmt.Errorf("big.bin is %d%% cached after free", st.CachedPercent)
		}
		return nil
	})
	// A free reaches the worker on its next heartbeat; a load that ran
	// before that would find the block still there and the late free would
	// then drop it. So wait for the worker to have dropped them.
	c.waitWorkerSettled(t)
	var job jobJSON
	if err := json.Unmarshal([]byte(c.alluvium(t, "job", "submit", "load", "/"+bucket+"/up", "--wait", "--output", "json")), &job); err != nil {
		t.Fatal(err)
	}
	if job.Status != "COMPLETED" {
		t.Fatalf("load job %+v", job)
	}
	var loaded fileJSON
	if err := json.Unmarshal([]byte(c.alluvium(t, "fs", "stat", "/"+bucket+"/up/big.bin", "--output", "json")), &loaded); err != nil {
		t.Fatal(err)
	}
	if loaded.CachedPercent != 100 {
		t.Fatalf("after the load job big.bin is %d%% cached", loaded.CachedPercent)
	}

	// sync up and down; a second sync has nothing to do.
	tree := t.TempDir()
	treeFiles := map[string][]byte{}
	for _, rel := range []string{"a.txt", "d1/b.bin", "d1/d2/c.bin", "d3/e.txt"} {
		treeFiles[rel] = randomFile(t, filepath.Join(tree, rel), 2000+len(rel))
	}
	s3("s3", "sync", "--only-show-errors", tree, "s3://"+bucket+"/sync/")
	if out := s3("s3", "sync", tree, "s3://"+bucket+"/sync/"); strings.Contains(out, "upload:") {
		t.Fatalf("a second sync uploaded again:\n%s", out)
	}
	back := t.TempDir()
	s3("s3", "sync", "--only-show-errors", "s3://"+bucket+"/sync/", back)
	for rel, b := range treeFiles {
		if got := fileSHA(t, filepath.Join(back, rel)); got != testutil.SHA256(b) {
			t.Fatalf("sync down %s: sha256 %s, want %s", rel, got, testutil.SHA256(b))
		}
	}
	rec := s3("s3", "ls", "--recursive", "s3://"+bucket+"/sync/")
	if n := strings.Count(strings.TrimSpace(rec), "\n") + 1; n != len(treeFiles) {
		t.Fatalf("ls --recursive lists %d keys, want %d:\n%s", n, len(treeFiles), rec)
	}

	// rm, one key and recursively; the files leave the namespace and UFS.
	s3("s3", "rm", "--only-show-errors", "s3://"+bucket+"/up/small.txt")
	s3("s3", "rm", "--only-show-errors", "--recursive", "s3://"+bucket+"/sync/")
	if out := s3("s3", "ls", "--recursive", "s3://"+bucket+"/"); strings.Contains(out, "small.txt") || strings.Contains(out, "sync/") {
		t.Fatalf("after rm:\n%s", out)
	}
	for _, p := range []string{filepath.Join(c.ufs, bucket, "up", "small.txt"), filepath.Join(c.ufs, bucket, "sync")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s after rm: %v", p, err)
		}
	}

	// s3api multipart by hand: parts are invisible until complete; a
	// range get returns exactly the range.
	partA := randomFile(t, filepath.Join(scratch, "partA"), 5<<20)
	partB := randomFile(t, filepath.Join(scratch, "partB"), 1<<20+3)
	var created struct{ UploadId string }
	if err := json.Unmarshal([]byte(s3("s3api", "create-multipart-upload", "--bucket", bucket, "--key", "mp/obj.bin")), &created); err != nil || created.UploadId == "" {
		t.Fatalf("create-multipart-upload: %v %+v", err, created)
	}
	var etags []string
	for i, p := range []string{"partA", "partB"} {
		var up struct{ ETag string }
		out := s3("s3api", "upload-part", "--bucket", bucket, "--key", "mp/obj.bin", "--upload-id", created.UploadId,
			"--part-number", fmt.Sprint(i+1), "--body", filepath.Join(scratch, p))
		if err := json.Unmarshal([]byte(out), &up); err != nil || up.ETag == "" {
			t.Fatalf("upload-part %d: %v %s", i+1, err, out)
		}
		etags = append(etags, up.ETag)
	}
	var parts struct {
		Parts []struct{ PartNumber, Size int64 }
	}
	if err := json.Unmarshal([]byte(s3("s3api", "list-parts", "--bucket", bucket, "--key", "mp/obj.bin", "--upload-id", created.UploadId)), &parts); err != nil {
		t.Fatal(err)
	}
	if len(parts.Parts) != 2 || parts.Parts[0].Size != int64(len(partA)) || parts.Parts[1].Size != int64(len(partB)) {
		t.Fatalf("list-parts = %+v", parts)
	}
	// The parts may already be in place in the upload's hidden temporary
	// file in mp/ (a local UFS), but no object is there under its name.
	if _, err := os.Stat(filepath.Join(c.ufs, bucket, "mp", "obj.bin")); !os.IsNotExist(err) {
		t.Fatalf("an uncompleted multipart object is in the UFS: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(c.ufs, bucket, "mp")); len(ents) > 1 {
		t.Fatalf("an uncompleted multipart upload left %d files in the UFS, want at most its temporary one", len(ents))
	}
	var uploads struct {
		Uploads []struct{ UploadId, Key string }
	}
	if err := json.Unmarshal([]byte(s3("s3api", "list-multipart-uploads", "--bucket", bucket)), &uploads); err != nil {
		t.Fatal(err)
	}
	if len(uploads.Uploads) != 1 || uploads.Uploads[0].UploadId != created.UploadId {
		t.Fatalf("list-multipart-uploads = %+v", uploads)
	}
	mpu := fmt.Sprintf(`{"Parts":[{"PartNumber":1,"ETag":%q},{"PartNumber":2,"ETag":%q}]}`, etags[0], etags[1])
	var done struct{ ETag string }
	if err := json.Unmarshal([]byte(s3("s3api", "complete-multipart-upload", "--bucket", bucket, "--key", "mp/obj.bin",
		"--upload-id", created.UploadId, "--multipart-upload", mpu)), &done); err != nil || !strings.HasSuffix(strings.Trim(done.ETag, `"`), "-2") {
		t.Fatalf("complete-multipart-upload: %v, ETag %q", err, done.ETag)
	}
	whole := append(append([]byte{}, partA...), partB...)
	if got := fileSHA(t, filepath.Join(c.ufs, bucket, "mp", "obj.bin")); got != testutil.SHA256(whole) {
		t.Fatal("the completed multipart object's UFS file differs from its parts")
	}
	rng := filepath.Join(down, "range")
	s3("s3api", "get-object", "--bucket", bucket, "--key", "mp/obj.bin", "--range", "bytes=5242000-5243999", rng)
	if got := fileSHA(t, rng); got != testutil.SHA256(whole[5242000:5244000]) {
		t.Fatal("range get across the part boundary differs")
	}
	s3("s3api", "get-object", "--bucket", bucket, "--key", "mp/obj.bin", "--range", "bytes=-100", rng)
	if got := fileSHA(t, rng); got != testutil.SHA256(whole[len(whole)-100:]) {
		t.Fatal("suffix range get differs")
	}
	// An aborted upload leaves nothing.
	if err := json.Unmarshal([]byte(s3("s3api", "create-multipart-upload", "--bucket", bucket, "--key", "mp/aborted")), &created); err != nil {
		t.Fatal(err)
	}
	s3("s3api", "upload-part", "--bucket", bucket, "--key", "mp/aborted", "--upload-id", created.UploadId, "--part-number", "1", "--body", filepath.Join(scratch, "partB"))
	s3("s3api", "abort-multipart-upload", "--bucket", bucket, "--key", "mp/aborted", "--upload-id", created.UploadId)
	if out := s3("s3api", "list-multipart-uploads", "--bucket", bucket); strings.Contains(out, created.UploadId) {
		t.Fatalf("aborted upload still listed: %s", out)
	}
	if _, err := os.Stat(filepath.Join(c.ufs, bucket, "mp", "aborted")); !os.IsNotExist(err) {
		t.Fatalf("an aborted upload left a file: %v", err)
	}
	if ents, err := os.ReadDir(filepath.Join(c.ufs, bucket, "mp")); err != nil || len(ents) != 1 || ents[0].Name() != "obj.bin" {
		t.Fatalf("after the abort mp/ holds %v (%v), want obj.bin alone (no temporary file left)", ents, err)
	}

	// The wrong secret is refused.
	bad := awsEnv(t, c, "not-the-token")
	out, errOut, code := run(t, bad, aws, "--endpoint-url", c.s3, "s3", "ls", "s3://"+bucket)
	if code == 0 || !strings.Contains(errOut, "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret: exit %d, stdout %q, stderr %q; want SignatureDoesNotMatch", code, out, errOut)
	}
	if _, errOut, code := run(t, bad, aws, "--endpoint-url", c.s3, "s3", "cp", filepath.Join(local, "small.txt"), "s3://"+bucket+"/evil.txt"); code == 0 {
		t.Fatalf("upload with a wrong secret succeeded: %s", errOut)
	}
	if _, err := os.Stat(filepath.Join(c.ufs, bucket, "evil.txt")); !os.IsNotExist(err) {
		t.Fatal("a refused upload left a file")
	}

	// A non-empty bucket cannot be removed; rb --force empties it first.
	if _, errOut, code := run(t, env, aws, "--endpoint-url", c.s3, "s3", "rb", "s3://"+bucket); code == 0 || !strings.Contains(errOut, "BucketNotEmpty") {
		t.Fatalf("rb of a non-empty bucket: exit %d, %s", code, errOut)
	}
	s3("s3", "rb", "--force", "s3://"+bucket)
	if _, err := os.Stat(filepath.Join(c.ufs, bucket)); !os.IsNotExist(err) {
		t.Fatalf("bucket dir after rb --force: %v", err)
	}
}
