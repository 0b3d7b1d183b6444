package scale

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tree is the UFS tree the scale run lists, loads and restarts with:
// a tenth of the files in wide directories (up to 100,000 files each), a
// tenth in deep chains (32 levels of 16 files), the rest in a three-level
// tree of directories of about 1,000 files. Every smallEvery-th file holds
// a few bytes (one block), the others are empty.
type Tree struct {
	Files      int `json:"files"`
	SmallEvery int `json:"smallEvery"` // 1: every file has bytes
	Version    int `json:"version"`
}

const TreeVersion = 1

// group is one directory's files.
type group struct {
	dir   string // relative to the tree root
	files int
}

// groups lays the spec out as directories and file counts, exactly
// spec.Files files in all.
func (s Tree) groups() []group {
	var out []group
	left := s.Files
	take := func(dir string, n int) {
		n = min(n, left)
		if n > 0 {
			out = append(out, group{dir, n})
			left -= n
		}
	}
	wide := s.Files / 10
	for i := 0; wide > 0; i++ {
		n := min(wide, 100000)
		take(fmt.Sprintf("wide/w%02d", i), n)
		wide -= n
	}
	deep := s.Files / 10
	for c := 0; deep > 0; c++ {
		p := fmt.Sprintf("deep/c%04d", c)
		for l := 0; l < 32 && deep > 0; l++ {
			p += fmt.Sprintf("/l%02d", l)
			n := min(deep, 16)
			take(p, n)
			deep -= n
		}
	}
	// The rest: fanout f at three levels, about 1,000 files a leaf.
	rest := left
	f := 1
	for f*f*f*1000 < rest {
		f++
	}
	per := (rest + f*f*f - 1) / (f * f * f)
	for a := 0; a < f && left > 0; a++ {
		for b := 0; b < f && left > 0; b++ {
			for c := 0; c < f && left > 0; c++ {
				take(fmt.Sprintf("tree/a%02d/b%02d/c%02d", a, b, c), per)
			}
		}
	}
	return out
}

// dirCount is the number of directories the tree has below its root.
func (s Tree) Dirs() int {
	seen := map[string]bool{}
	for _, g := range s.groups() {
		for d := g.dir; d != "." && !seen[d]; d = filepath.Dir(d) {
			seen[d] = true
		}
	}
	return len(seen)
}

// build writes the tree under root (which must exist and be empty or hold
// a partial build), several directories at once.
func (s Tree) Build(root string) error {
	groups := s.groups()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	var fileNo atomic.Int64
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(groups) {
					return
				}
				base := int(fileNo.Add(int64(groups[i].files))) - groups[i].files
				if err := s.writeGroup(root, groups[i], base); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (s Tree) writeGroup(root string, g group, base int) error {
	dir := filepath.Join(root, g.dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	data := []byte("0123456789abcdef")
	for k := range g.files {
		name := fmt.Sprintf("f%07d", k)
		f, err := unix.Openat(fd, name, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("create %s/%s: %w", dir, name, err)
		}
		if s.SmallEvery > 0 && (base+k)%s.SmallEvery == 0 {
			n := 1 + (base+k)%len(data)
			if _, err := unix.Write(f, data[:n]); err != nil {
				unix.Close(f)
				return fmt.Errorf("write %s/%s: %w", dir, name, err)
			}
		}
		if err := unix.Close(f); err != nil {
			return err
		}
	}
	return nil
}

// cachedFiles is how many files of the tree hold bytes (one block each).
func (s Tree) CachedFiles() int {
	if s.SmallEvery <= 0 {
		return 0
	}
	return (s.Files + s.SmallEvery - 1) / s.SmallEvery
}

// ufsTree returns the root of a built tree of spec: in a temp dir for a
// small run; for a big one (bench) in dir (kept between runs, the
// completion marker beside it saying which spec it holds), on a
// loop-mounted ext4 image with inodes enough and inline data (tiny files
// take no data blocks), so that millions of files neither exhaust the
// shared disk's inodes nor cost gigabytes.
func ufsTree(tb testing.TB, spec Tree, dir string) string {
	tb.Helper()
	if dir == "" {
		// tmpfs when there is one: a hundred thousand files are written in
		// seconds there, minutes on a busy disk.
		base := tb.TempDir()
		if shm, err := os.MkdirTemp("/dev/shm", "alluvium-scale-"); err == nil {
			base = shm
			tb.Cleanup(func() { _ = os.RemoveAll(shm) })
		}
		root := filepath.Join(base, "ufs")
		if err := os.Mkdir(root, 0o755); err != nil {
			tb.Fatal(err)
		}
		t0 := time.Now()
		if err := spec.Build(root); err != nil {
			tb.Fatal(err)
		}
		tb.Logf("built a UFS tree of %d files in %s", spec.Files, time.Since(t0).Round(time.Millisecond))
		return root
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	mnt := filepath.Join(dir, fmt.Sprintf("mnt-%d", spec.Files))
	img := filepath.Join(dir, fmt.Sprintf("ufs-%d.img", spec.Files))
	mounted := loopMount(tb, img, mnt, spec.Files)
	base := dir
	if mounted {
		base = mnt
	}
	root := filepath.Join(base, "tree")
	marker := filepath.Join(base, "tree.done")
	want, _ := json.Marshal(spec)
	if got, err := os.ReadFile(marker); err == nil && string(got) == string(want) {
		tb.Logf("reusing the UFS tree of %d files at %s", spec.Files, root)
		return root
	}
	if !mounted {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil && st.Ffree < uint64(2*spec.Files) {
			tb.Skipf("no loop mount, and %s has %d free inodes for a tree of %d files", dir, st.Ffree, spec.Files)
		}
	}
	_ = os.RemoveAll(root)
	_ = os.Remove(marker)
	if err := os.Mkdir(root, 0o755); err != nil {
		tb.Fatal(err)
	}
	t0 := time.Now()
	if err := spec.Build(root); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(marker, want, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("built a UFS tree of %d files at %s in %s", spec.Files, root, time.Since(t0).Round(time.Second))
	return root
}

// loopMount mounts img (made when missing: sparse, ext4 with inodes for
// files and inline data) at mnt, and unmounts it when the test ends. It
// reports false when the machine cannot (not root, no loop devices).
func loopMount(tb testing.TB, img, mnt string, files int) bool {
	tb.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(img); err != nil {
		// 4 KiB of image per file leaves room for the inode tables (256 B
		// each), the directories and the few data blocks; sparse until used.
		size := int64(files)*4096 + 1<<30
		if err := sh("truncate", "-s", fmt.Sprint(size), img); err != nil {
			tb.Logf("loop image: %v", err)
			return false
		}
		if err := sh("mkfs.ext4", "-q", "-F", "-N", fmt.Sprint(files+files/8+100000), "-I", "256", "-O", "inline_data",
			"-E", "lazy_itable_init=1,nodiscard", img); err != nil {
			_ = os.Remove(img)
			tb.Logf("loop image: %v", err)
			return false
		}
	}
	if isMountPoint(mnt) {
		_ = sh("umount", mnt)
	}
	// noinit_itable: the kernel does not zero the inode tables behind the
	// benchmark's back.
	if err := sh("mount", "-o", "loop,noatime,noinit_itable", img, mnt); err != nil {
		tb.Logf("loop mount: %v", err)
		return false
	}
	tb.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if sh("umount", mnt) == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		_ = sh("umount", "-l", mnt)
	})
	return true
}

func isMountPoint(p string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == p {
			return true
		}
	}
	return false
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// DropInodeCache writes back dirty data and drops the kernel's dentry and
// inode caches (drop_caches 2; the page cache stays), so a walk that stats
// every file finds the inodes cold, as a tree freshly mounted or long
// unvisited would be. It needs root; a caller without it reports no cold
// figure rather than a warm one under a cold name.
func DropInodeCache() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		return fmt.Errorf("drop the inode cache: %w", err)
	}
	return nil
}

// FindStatFlags make find the stat-ing reference walk: it prints each
// entry's size, so it stats every file as a learning FS master must
// (plain find reads only directories: d_type says what each entry is).
func FindStatFlags() []string { return []string{"-printf", "%s\n"} }
