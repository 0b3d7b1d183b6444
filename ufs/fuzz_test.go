package ufs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// FuzzLocalConfinement: UFS paths come from clients (through the FS
// master and workers). Whatever two paths a caller gives, every operation
// of a Local stays inside its directory: a file beside the directory and
// the directory's parent are never changed, even through a symlink that
// points out of it.
func FuzzLocalConfinement(f *testing.F) {
	base := f.TempDir()
	root := filepath.Join(base, "root")
	secret := filepath.Join(base, "secret.txt")
	if err := os.WriteFile(secret, []byte("outside"), 0o644); err != nil {
		f.Fatal(err)
	}
	l, err := NewLocal(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	for _, s := range [][2]string{
		{"/a/b", "/c"}, {"../secret.txt", "/x"}, {"/../../secret.txt", "../x"}, {"escape/secret.txt", "/y"},
		{"/escape", "/escape/new"}, {"", "/"}, {"/.", ".."}, {"a\x00b", "/z"}, {"//a//../b/", "/c/../../d"},
		{"escape/../escape/secret.txt", "/e"},
	} {
		f.Add(s[0], s[1], []byte("data"))
	}
	ctx := context.Background()
	outside := func() string {
		des, err := os.ReadDir(base)
		if err != nil {
			return err.Error()
		}
		var names []string
		for _, d := range des {
			names = append(names, d.Name())
		}
		sort.Strings(names)
		b, _ := os.ReadFile(secret)
		return strings.Join(names, ",") + "|" + string(b)
	}
	want := "root,secret.txt|outside"
	f.Fuzz(func(t *testing.T, p, q string, data []byte) {
		// A symlink inside pointing at the parent: following it would
		// escape.
		_ = os.Remove(filepath.Join(root, "escape"))
		if err := os.Symlink("..", filepath.Join(root, "escape")); err != nil {
			t.Fatal(err)
		}
		_, _ = l.Stat(ctx, p)
		_ = l.List(ctx, p, func(FileStatus) error { return nil })
		if rc, err := l.Open(ctx, p, 0, -1); err == nil {
			_, _ = io.Copy(io.Discard, rc)
			rc.Close()
		}
		_ = l.Mkdirs(ctx, p)
		if w, err := l.Create(ctx, q, CreateOptions{Overwrite: true, CreateParent: true}); err == nil {
			if _, err := w.Write(data); err == nil {
				_, _ = w.Commit()
			} else {
				_ = w.Abort()
			}
		}
		_ = l.Rename(ctx, q, p)
		_ = l.Rename(ctx, p, q)
		if rc, err := l.Open(ctx, q, 0, -1); err == nil {
			got, _ := io.ReadAll(rc)
			rc.Close()
			if bytes.Equal(got, []byte("outside")) && !bytes.Equal(data, got) {
				t.Fatalf("read the outside file through %q", q)
			}
		}
		_ = l.Delete(ctx, p)
		_ = l.DeleteAll(ctx, q)
		if got := outside(); got != want {
			t.Fatalf("paths %q, %q changed what is outside the UFS directory: %s", p, q, got)
		}
	})
}

// FuzzParseS3Options: mount options come from clients. Parsing never
// panics, and accepted options are usable: an endpoint without a scheme,
// a part size S3 accepts, a positive connect timeout, retries >= 0.
func FuzzParseS3Options(f *testing.F) {
	f.Add("http://127.0.0.1:9000", "true", "5s", "5242880", "3")
	f.Add("https://s3.example.com", "false", "0s", "1", "-1")
	f.Add("ftp://x", "maybe", "abc", "x", "y")
	f.Add("://", "", "", "", "")
	f.Add("http://", "1", "1ns", "18446744073709551615", "99999999999999999999")
	f.Fuzz(func(t *testing.T, endpoint, secure, timeout, part, retries string) {
		o, err := ParseS3Options(map[string]string{
			S3Endpoint: endpoint, S3Secure: secure, S3PathStyle: secure, S3ConnectTimeout: timeout,
			S3PartSize: part, S3MaxRetries: retries, S3AccessKey: "k", S3SecretKey: "s", S3Region: "r",
		})
		if err != nil {
			return
		}
		if o.Endpoint == "" || strings.Contains(o.Endpoint, "://") || o.ConnectTimeout <= 0 || o.PartSize < 5<<20 || o.MaxRetries < 0 {
			t.Fatalf("accepted unusable options %+v from %q %q %q %q %q", o, endpoint, secure, timeout, part, retries)
		}
	})
}
